"""One timed pgbench run: the command, its summary (tps, transactions,
failed transactions), p50/p99 latency and the fairness between clients from
its per-transaction logs."""

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
# "pgbench: error: client 713 script 0 aborted in command 1 query 0: ..."
ABORTED_RE = re.compile(r"\bclient (\d+) (?:script \d+ )?aborted\b")


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(len(sorted_values) * fraction))
    return sorted_values[rank - 1]


def read_logs(prefix):
    """From every log file of a run (one per pgbench thread): the latencies
    (3rd column, microseconds), sorted, and the completed transactions of
    each client (1st column, the client's number across all threads).
    Failed or skipped transactions are not numbers in the 3rd column and are
    left out of both."""
    values = []
    per_client = {}
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    values.append(int(fields[2]))
                    client = int(fields[0])
                    per_client[client] = per_client.get(client, 0) + 1
    values.sort()
    return values, per_client


def jain_index(counts):
    """Jain's fairness index (sum x)^2 / (n * sum x^2): 1 when every client
    completed as many transactions as every other, 1/n when one did all."""
    total = sum(counts)
    squares = sum(x * x for x in counts)
    return total * total / (len(counts) * squares) if squares else None


def fairness(per_client, clients):
    """Jain's index over all `clients` (one that completed nothing counts as
    0), with the fewest and most transactions of a client."""
    counts = [per_client.get(c, 0) for c in range(clients)]
    return {
        "fairness_jain": jain_index(counts),
        "client_tx_min": min(counts) if counts else None,
        "client_tx_max": max(counts) if counts else None,
        "clients_with_no_tx": sum(1 for x in counts if x == 0),
    }


def parse_summary(text):
    def first(regex, cast):
        m = regex.search(text)
        return cast(m.group(1)) if m else None
    return {
        "tps": first(TPS_RE, float),
        "transactions": first(PROCESSED_RE, int),
        "failed_tx": first(FAILED_RE, int),
    }


def run_pgbench(pgbench, options, *, port, user, duration, logdir, tag, clients, password=None):
    """Runs pgbench (with `clients` clients) for duration seconds against
    127.0.0.1:port; returns a dict of the results and the exact command
    line."""
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
    latencies, per_client = read_logs(prefix)
    for path in glob.glob(prefix + ".*"):
        os.remove(path)
    result.update(
        command=("PGPASSWORD=... " if password else "") + shlex.join(cmd),
        exit_code=proc.returncode,
        elapsed_s=round(time.monotonic() - started, 3),
        latency_samples=len(latencies),
        p50_ms=_ms(percentile(latencies, 0.50)),
        p99_ms=_ms(percentile(latencies, 0.99)),
        stderr_head="\n".join(err.strip().splitlines()[:5]),
        stderr_tail="\n".join(err.strip().splitlines()[-5:]),
        stderr_lines=len(err.strip().splitlines()),
        clients_aborted=len(set(ABORTED_RE.findall(err))),
        **fairness(per_client, clients),
    )
    return result


def _ms(us):
    return None if us is None else us / 1000.0
