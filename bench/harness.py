#!/usr/bin/env python3
"""Side-by-side benchmark of pgagroal, PgBouncer and direct PostgreSQL.

Starts its own PostgreSQL, runs each pgbench workload against its targets
interleaved (direct, pgbouncer, pgagroal; round after round), measures
the poolers' CPU and memory from /proc, prints medians and ratios, and writes
results.json, summary.txt and chart.png into the results folder. Everything it
started is stopped on the way out, also on Ctrl-C or an error.

Normally started through bench/run, which installs what is missing and builds
the binaries; see docs/PERFORMANCE.md.
"""

import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import sys
import tempfile
import time

import idle_clients
import processes
import report
from cluster import DATABASE, SUPERUSER, Cluster
from pgbench_run import run_pgbench
from poolers import PgBouncer, Pgagroal, Profile, TargetError, build_info, find_pgbouncer, version_of
from scraper import Scraper
from workloads import WORKLOADS, parse_args

from runtime import (REPO, MidRunSample, find_pg_bindir, recording_cost, git_info, ignore_signals, interrupt_on_signals, now,
                     print_run, raise_fd_limit, read_cpu_model, read_loadavg, read_meminfo, results_dir,
                     write_outputs)


TARGETS = report.TARGETS


class Harness:
    def __init__(self, args):
        self.args = args
        self.bin_dir = os.environ.get("PGAGROAL_BIN_DIR") or os.path.join(REPO, "target", "release")
        self.source_bin_dir = self.bin_dir
        self.pgbouncer = self.source_pgbouncer = None
        self.pg_bindir = os.environ.get("PG_BINDIR") or find_pg_bindir()
        self.run_user = processes.RunUser.pick()
        self.scram_password = secrets.token_hex(12)
        self.workdir = None
        self.cluster = None
        self.daemon_count = 0
        self.transaction_mode = False
        self.results = {
            "mode": "smoke" if args.smoke else "full",
            "rounds": args.rounds,
            "duration_s": args.duration,
            "started": now(),
            "status": "running",
            "machine": {},
            "postgresql_settings": {},
            "transaction_mode": {},
            "workloads": [],
            "memory": None,
            "commands": [],
            "configs": {},
            "failures": [],
            "warnings": [],
        }

    # --- bookkeeping --------------------------------------------------------

    def log_command(self, cmd):
        if not isinstance(cmd, str):
            cmd = shlex.join(str(c) for c in cmd)
        self.results["commands"].append(cmd)

    def fail(self, message):
        self.results["failures"].append(message)
        print("  FAILED: " + message.replace("\n", "\n    "), flush=True)

    def warn(self, message):
        self.results["warnings"].append(message)
        print(f"  note: {message}", flush=True)

    # --- setup --------------------------------------------------------------

    def setup(self):
        self.workdir = tempfile.mkdtemp(prefix="pgagroal-bench-")
        os.chmod(self.workdir, 0o755)
        needed = ["pgagroal", "pgagroal-cli"]
        if any(w.auth != "trust" or w.transaction
               for w in WORKLOADS if w.name in self.args.selected):
            needed.append("pgagroal-admin")     # the users vault: scram-sha-256, transaction mode
        for name in needed:
            if not os.access(os.path.join(self.bin_dir, name), os.X_OK):
                raise RuntimeError(f"{name} not found in {self.bin_dir} "
                                   "(set PGAGROAL_BIN_DIR or run through bench/run)")
        self.pgbouncer = self.source_pgbouncer = find_pgbouncer()
        if os.environ.get("PGBOUNCER_NOTE"):
            self.warn(os.environ["PGBOUNCER_NOTE"])
        self.stage_binaries()
        print(f"PgBouncer: {version_of(self.pgbouncer, '--version')} ({self.source_pgbouncer})",
              flush=True)
        self.cluster = Cluster(self.pg_bindir, self.workdir, self.run_user, self.log_command)
        print(f"PostgreSQL: initdb and start on 127.0.0.1:{self.cluster.port} "
              f"(as {self.run_user.name if self.run_user else 'the current user'})", flush=True)
        self.results["postgresql_settings"] = self.cluster.init()
        self.cluster.start()
        print("PostgreSQL: pgbench -i -s 10 ...", flush=True)
        took = self.cluster.prepare(self.scram_password)
        self.log_command("# before every run, directly on PostgreSQL:")
        self.cluster.reset_tables(record=True)
        print(f"PostgreSQL: ready ({took:.1f} s)", flush=True)
        self.results["machine"] = self.machine_info()
        self.detect_transaction_mode()

    def stage_binaries(self):
        """The poolers run as the unprivileged account, which may not be able
        to enter the checkout (root's own 0700 home, where PgBouncer is built
        too): run copies of the binaries from the harness's work directory
        instead."""
        if not self.run_user:
            return
        staged = os.path.join(self.workdir, "bin")
        os.makedirs(staged, mode=0o755)
        for name in ("pgagroal", "pgagroal-cli", "pgagroal-admin"):
            source = os.path.join(self.bin_dir, name)
            if os.path.exists(source):
                shutil.copy2(source, os.path.join(staged, name))
                os.chmod(os.path.join(staged, name), 0o755)
        self.results["pgagroal_binaries_staged_in"] = staged
        self.source_bin_dir, self.bin_dir = self.bin_dir, staged
        self.pgbouncer = os.path.join(staged, "pgbouncer")
        shutil.copy2(self.source_pgbouncer, self.pgbouncer)
        os.chmod(self.pgbouncer, 0o755)

    def machine_info(self):
        uname = os.uname()
        info = {
            "nproc": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "kernel": f"{uname.sysname} {uname.release}",
            "arch": uname.machine,
            "cpu_model": read_cpu_model(),
            "mem_total_kib": read_meminfo("MemTotal"),
            "loadavg_at_start": read_loadavg(),
            "python": platform.python_version(),
            "postgresql": self.cluster.version(),
            "pgbouncer": version_of(self.pgbouncer, "--version"),
            "pgbouncer_binary": self.source_pgbouncer,
            "pgbouncer_build": build_info(self.source_pgbouncer),
            "pgagroal": version_of(os.path.join(self.bin_dir, "pgagroal"), "--version"),
            "pgagroal_binaries": self.source_bin_dir,
            "binaries_built_by_harness": os.environ.get("PGAGROAL_BUILT") == "1",
            "run_user": self.run_user.name if self.run_user else None,
            "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        }
        info.update(git_info())
        return info

    def make_daemon(self, target, profile, tag):
        self.daemon_count += 1
        workdir = os.path.join(self.workdir, f"{self.daemon_count:03d}-{target}-{tag}")
        args = (workdir, self.run_user, self.cluster.port, profile, self.scram_password)
        if target == "pgagroal":
            return Pgagroal(self.bin_dir, *args)
        return PgBouncer(self.pgbouncer, *args)

    def record_config(self, target, daemon):
        key = f"{target}: {daemon.profile.label()}"
        if key in self.results["configs"]:
            return
        files = {name: text.replace(self.scram_password, "<password>")
                 .replace(daemon.dir, "<dir>")
                 for name, text in daemon.configs.items()}
        files["command"] = daemon.command_line().replace(daemon.dir, "<dir>")
        self.results["configs"][key] = files

    def detect_transaction_mode(self):
        """Starts pgagroal once with the configuration of the first selected
        transaction workload (pipeline = transaction, allow_unknown_users =
        off, the workload's user in a users vault, its pool and hba method)
        and runs SELECT 1 through it as that user. If it does not start or
        the query fails, the transaction workloads are not run, and that is
        a failure of the run, with the pooler's own words."""
        wanted = [w for w in WORKLOADS if w.transaction and w.name in self.args.selected]
        if not wanted:
            self.results["transaction_mode"] = {"available": None,
                                                "detail": "not probed: no transaction workload"}
            return
        wl = wanted[0]
        daemon = self.make_daemon("pgagroal", wl.profile(), "probe")
        detail = None
        try:
            daemon.start(timeout=10)
            self.record_config("pgagroal", daemon)
            cmd = [os.path.join(self.pg_bindir, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                   "-h", "127.0.0.1", "-p", str(daemon.port), "-U", wl.user, "-d", DATABASE,
                   "-c", "SELECT 1"]
            env = processes.client_env(
                {"PGPASSWORD": self.scram_password} if wl.auth != "trust" else None)
            code, out, err = processes.run(cmd, env=env, timeout=30, check=False)
            if code != 0 or out.strip() != "1":
                detail = (f"SELECT 1 as {wl.user} through pgagroal (pipeline = transaction) "
                          f"failed (psql exit {code}): {(err or out).strip()}\n"
                          f"pgagroal's output: {daemon.diagnostics()}")
        except (TargetError, RuntimeError) as e:
            detail = str(e)
        finally:
            code = daemon.stop()
            if detail is None and code != 0:
                detail = (f"pgagroal (pipeline = transaction) did not stop cleanly (exit {code}): "
                          f"{daemon.diagnostics()}")
        probe = {"profile": vars(wl.profile()), "config_of": wl.name}
        if detail is not None:
            probe.update(available=False, detail=detail)
            self.results["transaction_mode"] = probe
            self.fail("pgagroal with pipeline = transaction (probe with the configuration of "
                      f"{wl.name}): {detail}")
            return
        self.transaction_mode = True
        probe.update(available=True, detail=f"started; SELECT 1 as {wl.user} answered")
        self.results["transaction_mode"] = probe
        print(f"pgagroal: transaction pooling works (probe with the configuration of {wl.name})",
              flush=True)

    # --- workloads ----------------------------------------------------------

    def run_workloads(self):
        selected = [w for w in WORKLOADS if w.name in self.args.selected]
        entries = {}
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        for wl in selected:
            entry = {"name": wl.name, "description": wl.description,
                     "pgbench_options": " ".join(wl.options), "clients": wl.clients,
                     "duration_s": self.duration(wl), "targets": list(wl.targets),
                     "user": wl.user, "profile": vars(wl.profile()), "status": "ran",
                     "reason": None, "runs": {t: [] for t in TARGETS}}
            if wl.transaction and not self.transaction_mode:
                entry["status"] = "n/a"
                entry["reason"] = ("needs transaction pooling, and pgagroal with pipeline = "
                                   "transaction failed its probe (see the failures); not run "
                                   "for any target")
            elif fd_limit < wl.fds_needed():
                entry["status"] = "n/a"
                entry["reason"] = (f"needs {wl.fds_needed()} open files, the limit is {fd_limit} "
                                   "(raise ulimit -n); not run for any target")
                self.fail(f"{wl.name}: {entry['reason']}")
            if wl.prepared_statements and "pgbouncer" in wl.targets and not self.pgbouncer_prepares():
                # Debian's PgBouncer (the fallback) predates max_prepared_statements.
                entry["targets"] = [t for t in wl.targets if t != "pgbouncer"]
                self.warn(f"{wl.name}: {version_of(self.pgbouncer, '--version')} has no "
                          "max_prepared_statements (1.21 and later); run for pgagroal only")
            entries[wl.name] = entry
            self.results["workloads"].append(entry)
        for round_no in range(1, self.args.rounds + 1):
            for wl in selected:
                if entries[wl.name]["status"] != "ran":
                    continue
                for target in entries[wl.name]["targets"]:
                    record = self.run_one(wl, target, round_no)
                    entries[wl.name]["runs"][target].append(record)

    def pgbouncer_prepares(self):
        """Whether the PgBouncer in use knows max_prepared_statements (1.21+)."""
        found = re.search(r"(\d+)\.(\d+)", version_of(self.pgbouncer, "--version") or "")
        return bool(found) and (int(found.group(1)), int(found.group(2))) >= (1, 21)

    def duration(self, wl):
        """--duration if given, else the workload's own, else the default."""
        if self.args.duration_given or wl.duration is None:
            return self.args.duration
        return wl.duration

    def run_one(self, wl, target, round_no):
        """One pgbench run of one workload against one target; for a pooler,
        started for this run only and stopped right after."""
        record = {"round": round_no, "target": target, "ok": False, "cpu_s": None,
                  "cpu_s_per_1k_tx": None, "server_sessions": None}
        where = f"{wl.name} / {target} / round {round_no}"
        daemon = None
        sampler = None
        scraper = None
        duration = self.duration(wl)
        sessions_before = self.server_sessions(where)
        try:
            self.cluster.reset_tables()
            port = self.cluster.port
            if target != "direct":
                daemon = self.make_daemon(target, wl.profile(), f"{wl.name}-r{round_no}")
                daemon.start()
                self.record_config(target, daemon)
                record["daemon_command"] = daemon.command_line()
                port = daemon.port
                children_before = daemon.children()
                ticks_before = daemon.cpu_ticks()
                sampler = MidRunSample(daemon, duration / 2)
                if getattr(daemon, "metrics_port", 0):
                    scraper = Scraper(daemon.metrics_port)
            record.update(run_pgbench(
                os.path.join(self.pg_bindir, "pgbench"), wl.options, port=port, user=wl.user,
                duration=duration, logdir=self.workdir,
                tag=f"{wl.name}-{target}-r{round_no}", clients=wl.clients,
                password=self.scram_password if wl.auth != "trust" else None))
            if sampler is not None:
                record["mid_run"] = sampler.result()
            if scraper is not None:
                record["scrapes"] = scraper.finish()
                if record["scrapes"]["failed"]:
                    record["error"] = f"{record['scrapes']['failed']} metrics scrapes failed"
                scraper = None
            if daemon is not None:
                daemon.settle(children_before)
                record["cpu_s"] = (daemon.cpu_ticks() - ticks_before) / processes.CLK_TCK
                if record.get("transactions"):
                    record["cpu_s_per_1k_tx"] = record["cpu_s"] * 1000 / record["transactions"]
        except TargetError as e:
            record["error"] = str(e)
        finally:
            if sampler is not None:
                sampler.cancel()
            if scraper is not None:
                scraper.finish()
            if daemon is not None:
                record["stop_exit_code"] = daemon.stop()
                record["cpu_s_lifetime"] = daemon.lifetime_cpu_s
                record["pooler_log_problems"] = daemon.log_problems()
                if record["stop_exit_code"] != 0 and "error" not in record:
                    record["error"] = (f"{target} did not stop cleanly "
                                       f"(exit {record['stop_exit_code']}): "
                                       f"{daemon.diagnostics()}")
        sessions_after = self.server_sessions(where)
        if sessions_before is not None and sessions_after is not None:
            # reset_tables() made one of them.
            record["server_sessions"] = sessions_after - sessions_before - 1
        self.judge(record, where)
        print_run(record, where)
        return record

    def server_sessions(self, where):
        """Connections made to the benchmark database so far (None, with a
        note, if that cannot be read)."""
        try:
            return self.cluster.server_sessions()
        except (RuntimeError, ValueError) as e:
            self.warn(f"{where}: pg_stat_database.sessions not read: {e}")
            return None

    def judge(self, record, where):
        """Marks the run ok or not and records why."""
        if record.get("error"):
            self.fail(f"{where}: {record['error']}")
        elif record.get("exit_code") != 0:
            aborted = record.get("clients_aborted")
            self.fail(f"{where}: pgbench exited {record.get('exit_code')}"
                      + (f" ({aborted} clients aborted)" if aborted else "")
                      + f": {record.get('stderr_tail')}")
        elif record.get("tps") is None:
            self.fail(f"{where}: no 'tps =' line in pgbench's output")
        else:
            record["ok"] = True
        failed = record.get("failed_tx") or 0
        if failed > 0:
            message = f"{where}: {failed} failed transactions"
            if self.args.smoke:
                self.fail(message)
            else:
                self.warn(message)

    # --- memory -------------------------------------------------------------

    def run_memory(self):
        clients = self.args.memory_clients
        profile = Profile(pool=clients, mode="session", auth="trust", max_clients=clients + 100)
        memory = {"clients": clients, "profile": vars(profile), "targets": {}}
        self.results["memory"] = memory
        for target in ("pgbouncer", "pgagroal"):
            print(f"memory: {clients} idle clients through {target} ...", flush=True)
            memory["targets"][target] = self.measure_memory(target, profile, clients)
        a, b = (memory["targets"][t].get("pss_per_client_kib") for t in ("pgagroal", "pgbouncer"))
        memory["per_client_pgagroal_vs_pgbouncer"] = a / b if a is not None and b else None

    def measure_memory(self, target, profile, clients):
        daemon = self.make_daemon(target, profile, "memory")
        result = {}
        try:
            daemon.start(timeout=60)
            self.record_config(target, daemon)
            time.sleep(1.0)
            before, procs_before = daemon.pss_kib()

            def while_held():
                time.sleep(1.0)
                return daemon.pss_kib()

            opened, errors, held = idle_clients.hold_clients(
                "127.0.0.1", daemon.port, SUPERUSER, DATABASE, clients, while_held,
                timeout=300.0)
            if errors:
                kinds = sorted(set(errors))
                raise TargetError(f"{len(errors)} of {clients} clients failed to log in and "
                                  f"run SELECT 1 through {target}: " + "; ".join(kinds[:3]))
            with_clients, procs_with = held
            result = {
                "pss_before_kib": before, "processes_before": procs_before,
                "pss_with_clients_kib": with_clients, "processes_with_clients": procs_with,
                "pss_per_client_kib": (with_clients - before) / clients,
            }
            print(f"  {target}: PSS {before / 1024:.1f} MiB -> {with_clients / 1024:.1f} MiB "
                  f"({procs_with} processes), {result['pss_per_client_kib']:.1f} KiB per client",
                  flush=True)
        except TargetError as e:
            result = {"error": str(e)}
            self.fail(f"memory / {target}: {e}")
        finally:
            code = daemon.stop()
            if code != 0 and "error" not in result:
                result["error"] = f"did not stop cleanly (exit {code})"
                self.fail(f"memory / {target}: {result['error']}: {daemon.diagnostics()}")
        return result

    # --- teardown -----------------------------------------------------------

    def teardown(self):
        try:
            if self.cluster is not None:
                self.cluster.stop()
        finally:
            processes.cleanup()
            if self.workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)


def main(argv):
    args = parse_args(argv)
    interrupt_on_signals()
    raise_fd_limit()
    processes.become_subreaper()
    out_dir = results_dir(args)
    harness = Harness(args)
    print(f"{harness.results['mode']} mode: {args.rounds} round(s) x {args.duration} s, "
          f"workloads {', '.join(args.selected)}; results in {out_dir}", flush=True)
    code = 0
    try:
        harness.setup()
        harness.run_workloads()
        if "select-8-metrics" in args.selected:
            harness.results["recording_cost"] = recording_cost(harness.source_bin_dir)
        if not args.skip_memory:
            harness.run_memory()
        harness.results["status"] = "done"
    except KeyboardInterrupt as e:
        harness.results["status"] = "interrupted"
        harness.results["failures"].append(f"interrupted ({str(e) or 'Ctrl-C'})")
        code = 130
    except Exception as e:
        harness.results["status"] = "error"
        harness.results["failures"].append(f"{type(e).__name__}: {e}")
        print(f"ERROR: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        code = 2
    finally:
        ignore_signals()
        print("stopping everything the harness started ...", flush=True)
        harness.teardown()
    harness.results["finished"] = now()
    harness.results["machine"]["loadavg_at_end"] = read_loadavg()
    text = write_outputs(harness.results, out_dir)
    print()
    print(text)
    print()
    print(f"results: {out_dir}/results.json, summary.txt, chart.png")
    if code == 0 and harness.results["failures"]:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
