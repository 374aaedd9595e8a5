"""The harness's helpers: a mid-run memory sample, the per-run line, facts
about the machine and the checkout, the file-descriptor limit, signals, and
writing the results."""

import datetime
import json
import os
import resource
import shutil
import signal
import subprocess
import threading

import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FD_LIMIT = 65536


class MidRunSample:
    """A pooler's memory halfway through a run, taken from another thread:
    PSS summed over its processes, how many there are, and the machine's
    MemAvailable."""

    def __init__(self, daemon, delay):
        self.daemon = daemon
        self.value = None
        self.timer = threading.Timer(delay, self._sample)
        self.timer.daemon = True
        self.timer.start()

    def _sample(self):
        try:
            pss, count = self.daemon.pss_kib()
            self.value = {"pss_kib": pss, "processes": count,
                          "mem_available_kib": read_meminfo("MemAvailable")}
        except Exception as e:  # recorded, not fatal
            self.value = {"error": f"{type(e).__name__}: {e}"}

    def cancel(self):
        self.timer.cancel()
        self.timer.join(timeout=60)

    def result(self):
        """The sample, or None if the run ended before it was due."""
        self.cancel()
        return self.value


def now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def print_run(record, where):
    def f(key, spec):
        value = record.get(key)
        return "n/a" if value is None else format(value, spec)
    status = "ok" if record["ok"] else "FAILED"
    print(f"  {where:<47} tps {f('tps', '.1f'):>9}  p50 {f('p50_ms', '.3f'):>7} ms  "
          f"p99 {f('p99_ms', '.3f'):>7} ms  cpu {f('cpu_s_per_1k_tx', '.4f'):>7} s/1k tx  "
          f"server conns {f('server_sessions', 'd'):>6}  fairness {f('fairness_jain', '.3f')}  "
          f"failed {f('failed_tx', 'd')}  aborted {f('clients_aborted', 'd')}  {status}",
          flush=True)


def find_pg_bindir():
    candidates = sorted((d for d in os.listdir("/usr/lib/postgresql")
                         if os.path.exists(f"/usr/lib/postgresql/{d}/bin/initdb")),
                        key=lambda v: [int(x) for x in v.split(".") if x.isdigit()],
                        reverse=True) if os.path.isdir("/usr/lib/postgresql") else []
    if candidates:
        return f"/usr/lib/postgresql/{candidates[0]}/bin"
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise RuntimeError("PostgreSQL server binaries not found (set PG_BINDIR)")


def git_info():
    def git(*args):
        try:
            out = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True,
                                 timeout=30)
            return out.stdout.strip() if out.returncode == 0 else None
        except OSError:
            return None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"pgagroal_commit": commit,
            "pgagroal_tree_dirty": None if status is None else bool(status)}


def read_cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def read_meminfo(key):
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def read_loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def raise_fd_limit():
    """Children inherit it: PgBouncer and the pooler each need an fd per
    client and per server connection in the memory check."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= FD_LIMIT:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, max(hard, FD_LIMIT)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def interrupt_on_signals():
    """SIGTERM and SIGHUP unwind like Ctrl-C, through the finally blocks."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def ignore_signals():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def results_dir(args):
    path = args.results_dir or os.path.join(
        REPO, "bench", "results", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(path, exist_ok=True)
    return path


def recording_cost(bin_dir):
    """What recording metrics costs one transaction, measured directly by
    the recording_cost example built beside the binaries (bench/run builds
    it); None when it is not there or fails."""
    path = os.path.join(bin_dir, "examples", "recording_cost")
    if not os.access(path, os.X_OK):
        return None
    try:
        out = subprocess.run([path], capture_output=True, text=True, timeout=120, check=True).stdout
        return json.loads(out)
    except (subprocess.SubprocessError, OSError, ValueError):
        return None


def write_outputs(results, out_dir):
    """summary.txt, results.json and chart.png; returns the printed report."""
    report.summarize(results)
    text = report.render(results)
    with open(os.path.join(out_dir, "summary.txt"), "w") as f:
        f.write(text + "\n")
    report.write_json(results, os.path.join(out_dir, "results.json"))
    if results["workloads"]:
        try:
            report.draw_chart(results, os.path.join(out_dir, "chart.png"))
        except Exception as e:  # a missing chart is a failure, not a crash
            results["failures"].append(f"chart: {type(e).__name__}: {e}")
            report.write_json(results, os.path.join(out_dir, "results.json"))
            text = report.render(results)
    return text
