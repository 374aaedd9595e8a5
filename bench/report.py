"""Medians, ratios, the printed tables, the JSON file and the PNG chart."""

import json
import math
import statistics

TARGETS = ("direct", "pgbouncer", "pgagroal")
LABELS = {"direct": "PostgreSQL (direct)", "pgbouncer": "PgBouncer", "pgagroal": "pgagroal"}
COLORS = {"direct": "#7f7f7f", "pgbouncer": "#1f77b4", "pgagroal": "#d62728"}
METRICS = ("tps", "p50_ms", "p99_ms", "cpu_s_per_1k_tx", "server_sessions", "fairness_jain")


# --- medians and ratios -----------------------------------------------------

def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def summarize_target(runs):
    """Medians over the rounds that ran cleanly; failed transactions and
    aborted clients summed over all rounds."""
    ok = [r for r in runs if r.get("ok")]
    summary = {m: _median(r.get(m) for r in ok) for m in METRICS}
    summary["failed_tx"] = sum(r.get("failed_tx") or 0 for r in runs) if runs else None
    summary["clients_aborted"] = sum(r.get("clients_aborted") or 0 for r in runs) if runs else None
    summary["rounds_ok"] = len(ok)
    summary["rounds"] = len(runs)
    for m in ("tps", "p99_ms"):
        vals = [r[m] for r in ok if r.get(m) is not None]
        summary[m + "_min"] = min(vals) if vals else None
        summary[m + "_max"] = max(vals) if vals else None
    return summary


def summarize(results):
    for wl in results["workloads"]:
        if wl["status"] != "ran":
            wl["median"] = {t: None for t in TARGETS}
            wl["ratios"] = {"tps_pgagroal_vs_direct": None, "tps_pgagroal_vs_pgbouncer": None,
                            "cpu_pgagroal_vs_pgbouncer": None}
            continue
        med = {t: summarize_target(wl["runs"][t]) for t in TARGETS}
        wl["median"] = med
        wl["ratios"] = {
            "tps_pgagroal_vs_direct": _ratio(med["pgagroal"]["tps"], med["direct"]["tps"]),
            "tps_pgagroal_vs_pgbouncer": _ratio(med["pgagroal"]["tps"], med["pgbouncer"]["tps"]),
            "cpu_pgagroal_vs_pgbouncer": _ratio(med["pgagroal"]["cpu_s_per_1k_tx"],
                                                med["pgbouncer"]["cpu_s_per_1k_tx"]),
        }
    results["metrics_overhead"] = metrics_overhead(results)
    return results


def metrics_overhead(results):
    """pgagroal's select-8 with the metrics port on and scraped, against
    select-8 with it off, from the same run. The runs of one round are
    neighbours in time, so each round gives a ratio (on / off) that the
    machine's drift between rounds mostly cancels out of; the figures are
    the medians of those ratios (and the ratio of the two medians, for
    comparison), and whether both are within 2 %."""
    by_name = {wl["name"]: wl for wl in results["workloads"] if wl["status"] == "ran"}
    on, off = by_name.get("select-8-metrics"), by_name.get("select-8")
    if not on or not off:
        return None
    pairs = [(a, b) for a in on["runs"]["pgagroal"] for b in off["runs"]["pgagroal"]
             if a.get("round") == b.get("round") and a.get("ok") and b.get("ok")]

    def paired(metric):
        return _median(_ratio(a.get(metric), b.get(metric)) for a, b in pairs)

    tps, cpu = paired("tps"), paired("cpu_s_per_1k_tx")
    on_med, off_med = on["median"]["pgagroal"], off["median"]["pgagroal"]
    within = tps is not None and cpu is not None and tps >= 0.98 and cpu <= 1.02
    # The direct measurement: nanoseconds the recording calls take per
    # transaction, against pgagroal's CPU per transaction with metrics off.
    ns = (results.get("recording_cost") or {}).get("ns_per_transaction")
    cpu_off = off_med.get("cpu_s_per_1k_tx")
    share = ns / (cpu_off * 1e6) if ns and cpu_off else None
    return {"recording_ns_per_tx": ns, "recording_share_of_cpu": share,
            "tps_on_vs_off": tps, "cpu_per_tx_on_vs_off": cpu, "rounds_paired": len(pairs),
            "tps_ratio_of_medians": _ratio(on_med["tps"], off_med["tps"]),
            "cpu_ratio_of_medians": _ratio(on_med["cpu_s_per_1k_tx"], off_med["cpu_s_per_1k_tx"]),
            "within_2_percent": within}


def metrics_overhead_line(results):
    o = results.get("metrics_overhead")
    if not o:
        return "metrics overhead: n/a (select-8 and select-8-metrics did not both run)"
    return (f"metrics overhead (select-8, pgagroal, metrics on / off, median of {o['rounds_paired']} "
            f"rounds' ratios): TPS {_fmt(o['tps_on_vs_off'], '.3f')}x, "
            f"CPU per transaction {_fmt(o['cpu_per_tx_on_vs_off'], '.3f')}x "
            f"({'within' if o['within_2_percent'] else 'NOT within'} 2 %); ratio of the medians: "
            f"TPS {_fmt(o['tps_ratio_of_medians'], '.3f')}x, CPU {_fmt(o['cpu_ratio_of_medians'], '.3f')}x; "
            f"measured directly: {_fmt(o.get('recording_ns_per_tx'), '.0f')} ns per transaction = "
            f"{_fmt(o.get('recording_share_of_cpu') and 100 * o['recording_share_of_cpu'], '.2f')} % "
            f"of pgagroal's CPU per transaction")


# --- tables -----------------------------------------------------------------

def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def _table(header, rows, left=2):
    """Left-aligns the first `left` columns, right-aligns the rest."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate([header] + rows):
        cells = [str(c).ljust(w) if i < left else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def workload_table(results):
    header = ["workload", "target", "TPS", "p50 ms", "p99 ms", "CPU s/1k tx", "server conns",
              "fairness", "failed tx", "aborted"]
    rows = []
    for wl in results["workloads"]:
        for n, target in enumerate(TARGETS):
            m = wl["median"][target]
            name = wl["name"] if n == 0 else ""
            if m is None:
                rows.append([name, target] + ["n/a"] * (len(header) - 2))
                continue
            tps = "failed" if m["rounds"] and not m["rounds_ok"] else _fmt(m["tps"], ".1f")
            rows.append([name, target, tps, _fmt(m["p50_ms"], ".3f"),
                         _fmt(m["p99_ms"], ".3f"), _fmt(m["cpu_s_per_1k_tx"], ".4f"),
                         _fmt(m["server_sessions"], ".0f"), _fmt(m["fairness_jain"], ".3f"),
                         _fmt(m["failed_tx"], "d"), _fmt(m["clients_aborted"], "d")])
    return _table(header, rows)


def ratio_table(results):
    header = ["workload", "TPS pgagroal/direct", "TPS pgagroal/PgBouncer",
              "CPU pgagroal/PgBouncer"]
    rows = []
    for wl in results["workloads"]:
        r = wl["ratios"]
        rows.append([wl["name"], _fmt(r["tps_pgagroal_vs_direct"], ".2f"),
                     _fmt(r["tps_pgagroal_vs_pgbouncer"], ".2f"),
                     _fmt(r["cpu_pgagroal_vs_pgbouncer"], ".2f")])
    return _table(header, rows, left=1)


def memory_table(results):
    mem = results.get("memory") or {}
    header = ["target", "processes", "PSS before", "PSS with clients", "PSS per client"]
    rows = []
    for target in ("pgbouncer", "pgagroal"):
        m = (mem.get("targets") or {}).get(target)
        if not m or m.get("error"):
            rows.append([target, "n/a", "n/a", "n/a", "n/a"])
            continue
        rows.append([target, f"{m['processes_before']} -> {m['processes_with_clients']}",
                     f"{m['pss_before_kib'] / 1024:.1f} MiB",
                     f"{m['pss_with_clients_kib'] / 1024:.1f} MiB",
                     f"{m['pss_per_client_kib']:.1f} KiB"])
    return _table(header, rows, left=1)


def render(results):
    """The whole human-readable report."""
    out = []
    out.append(f"Median of {results['rounds']} round(s) x {durations_text(results)} per "
               f"workload and target (interleaved: direct, pgbouncer, pgagroal).")
    out.append("TPS of the churn workloads = connections per second (-C). "
               "CPU = the pooler's own CPU seconds per 1,000 transactions.")
    out.append("Server conns = connections made to PostgreSQL's benchmark database during the "
               "run (pg_stat_database.sessions).")
    out.append("Fairness = Jain's index over the clients' completed transactions, "
               "(sum x)^2 / (n * sum x^2): 1 when all clients completed as many.")
    out.append("Failed tx and aborted (clients pgbench reports as aborted) are summed over "
               "all rounds; the other columns are medians of the clean rounds.")
    machine = results.get("machine") or {}
    if machine:
        out.append(f"Versions: {machine.get('postgresql')}; {machine.get('pgbouncer')}; "
                   f"{machine.get('pgagroal')}.")
    out.append("")
    out.append(workload_table(results))
    notes = [f"  {wl['name']}: n/a, {wl['reason']}" for wl in results["workloads"]
             if wl["status"] != "ran"]
    if notes:
        out.append("")
        out.extend(notes)
    out.append("")
    out.append("Ratios (of the medians)")
    out.append(ratio_table(results))
    out.append("")
    out.append(metrics_overhead_line(results))
    mem = results.get("memory")
    if mem:
        out.append("")
        out.append(f"Memory: {mem['clients']} idle clients (each logged in and ran SELECT 1), "
                   f"pool of {mem['clients']}; PSS summed over all of the pooler's processes")
        out.append(memory_table(results))
        for target, m in (mem.get("targets") or {}).items():
            if m.get("error"):
                out.append(f"  {target}: {m['error']}")
        ratio = mem.get("per_client_pgagroal_vs_pgbouncer")
        if ratio is not None:
            out.append(f"  PSS per client pgagroal/PgBouncer: {ratio:.1f}")
    if results.get("failures"):
        out.append("")
        out.append(f"FAILURES ({len(results['failures'])}):")
        out.extend("  - " + f.replace("\n", "\n    ") for f in results["failures"])
    return "\n".join(out)


# --- files ------------------------------------------------------------------

def write_json(results, path):
    with open(path, "w") as f:
        json.dump(results, f, indent=2, sort_keys=False)
        f.write("\n")


def durations_text(results):
    """"10 s", or "10 s (many-clients-1000 30 s)" when a workload has its own."""
    own = [f"{wl['name']} {wl['duration_s']} s" for wl in results["workloads"]
           if wl.get("duration_s") not in (None, results["duration_s"])]
    return f"{results['duration_s']} s" + (f" ({', '.join(own)})" if own else "")


def chart_title(results):
    machine = results.get("machine", {})
    source = f"checkout {str(machine.get('pgagroal_commit'))[:12]}"
    if machine.get("pgagroal_tree_dirty"):
        source += " with changes"
    if not machine.get("binaries_built_by_harness"):
        source += ", prebuilt binaries"
    return (f"pgagroal vs PgBouncer vs direct PostgreSQL: {results['rounds']} round(s) x "
            f"{durations_text(results)}, {machine.get('nproc', '?')} CPUs\n{source}")


def draw_chart(results, path):
    """Two panels, median TPS and median p99 latency, one group of bars per
    workload and one bar per target; error bars span the rounds' min..max."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    workloads = results["workloads"]
    names = [wl["name"] for wl in workloads]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.7 * len(names) + 2), 9))
    width = 0.8 / len(TARGETS)
    panels = (("tps", "median TPS", "{:.0f}"), ("p99_ms", "median p99 latency, ms", "{:.2f}"))
    for ax, (metric, title, label_fmt) in zip(axes, panels):
        values = [(wl["median"][t] or {}).get(metric) for wl in workloads for t in TARGETS]
        values = [v for v in values if v]
        tops = values + [(wl["median"][t] or {}).get(metric + "_max") or 0
                         for wl in workloads for t in TARGETS]
        # A log scale only when the values span more than ~1.5 decades; its
        # bars then start at a whole decade.
        log = bool(values) and max(values) / min(values) > 30
        ax.set_title(title + (" (log scale)" if log else ""), fontsize=11)
        if log:
            ax.set_yscale("log")
        na_at = blended_transform_factory(ax.transData, ax.transAxes)
        for x, wl in enumerate(workloads):
            if wl["status"] != "ran":
                ax.text(x, 0.03, "n/a:\nnot run", transform=na_at,
                        ha="center", va="bottom", fontsize=8, color="#555555")
                continue
            for i, target in enumerate(TARGETS):
                pos = x + (i - (len(TARGETS) - 1) / 2) * width
                m = wl["median"][target]
                value = m.get(metric)
                if value is None:
                    ax.text(pos, 0.03, "failed" if m["rounds"] else "n/a", transform=na_at,
                            ha="center", va="bottom", rotation=90, fontsize=8,
                            color=COLORS[target])
                    continue
                err, top = None, value
                if m.get(metric + "_min") is not None and results["rounds"] > 1:
                    err = [[value - m[metric + "_min"]], [m[metric + "_max"] - value]]
                    top = m[metric + "_max"]
                ax.bar(pos, value, width, color=COLORS[target], yerr=err, capsize=2,
                       error_kw={"ecolor": "#333333", "elinewidth": 0.8})
                # The label sits above the error bar.
                ax.text(pos, top * 1.1 if log else top + 0.02 * max(values),
                        label_fmt.format(value), ha="center", va="bottom", fontsize=7,
                        rotation=90)
        # Always one legend entry per target, even if its first workload is n/a.
        handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[t]) for t in TARGETS]
        ax.legend(handles, [LABELS[t] for t in TARGETS], fontsize=8, loc="upper right")
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        if log:
            bottom = 10 ** math.floor(math.log10(min(values)))
            ax.set_ylim(bottom, max(tops) * 8)    # room for the value labels
        elif values:
            ax.set_ylim(0, max(tops) * 1.35)
        ax.grid(axis="y", which="major", alpha=0.3)
    fig.suptitle(chart_title(results), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
