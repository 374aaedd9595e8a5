"""One timed pgbench run: the command, its summary (tps, transactions,
failed transactions) and p50/p99 latency from its per-transaction logs."""

import glob
import math
import os
import re
import shlex
import subprocess
import time

import processes

TPS_RE = re.compile(r"^tps = ([0-9.]+)", re.M)
PROCESSED_RE = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
FAILED_RE = re.compile(r"^number of failed transactions: (\d+)", re.M)


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(len(sorted_values) * fraction))
    return sorted_values[rank - 1]


def read_latencies_us(prefix):
    """Latencies (3rd column, microseconds) from every log file of a run; one
    file per pgbench thread. Failed or skipped transactions are not numbers
    there and are left out."""
    values = []
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    values.append(int(fields[2]))
    values.sort()
    return values


def parse_summary(text):
    def first(regex, cast):
        m = regex.search(text)
        return cast(m.group(1)) if m else None
    return {
        "tps": first(TPS_RE, float),
        "transactions": first(PROCESSED_RE, int),
        "failed_tx": first(FAILED_RE, int),
    }


def run_pgbench(pgbench, options, *, port, user, duration, logdir, tag, password=None):
    """Runs pgbench for duration seconds against 127.0.0.1:port; returns a
    dict of the results and the exact command line."""
    prefix = os.path.join(logdir, tag)
    cmd = [pgbench, *options, "-n", "-T", str(duration), "-h", "127.0.0.1",
           "-p", str(port), "-U", user, "--log", f"--log-prefix={prefix}", "bench"]
    env = processes.client_env({"PGPASSWORD": password} if password else None)
    started = time.monotonic()
    proc = processes.spawn(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=duration + 120)
        processes.forget(proc)
    except subprocess.TimeoutExpired:
        processes.terminate(proc)
        out, err = b"", b"pgbench did not finish in time and was killed"
    out, err = out.decode(errors="replace"), err.decode(errors="replace")
    result = parse_summary(out)
    latencies = read_latencies_us(prefix)
    for path in glob.glob(prefix + ".*"):
        os.remove(path)
    result.update(
        command=("PGPASSWORD=... " if password else "") + shlex.join(cmd),
        exit_code=proc.returncode,
        elapsed_s=round(time.monotonic() - started, 3),
        latency_samples=len(latencies),
        p50_ms=_ms(percentile(latencies, 0.50)),
        p99_ms=_ms(percentile(latencies, 0.99)),
        stderr_tail="\n".join(err.strip().splitlines()[-5:]),
    )
    return result


def _ms(us):
    return None if us is None else us / 1000.0
