"""The pgbench workloads: the options pgbench runs with, how many clients,
the pool and pooling mode both poolers are given, and the targets each one
runs against, and the command line that selects them. docs/PERFORMANCE.md
describes them."""

import argparse
from dataclasses import dataclass

import report
from cluster import SCRAM_USER, SUPERUSER
from poolers import Profile


@dataclass(frozen=True)
class Workload:
    name: str
    options: tuple            # pgbench options besides duration, host, port, user, logs
    clients: int
    pool: int
    description: str
    user: str = SUPERUSER
    auth: str = "trust"
    transaction: bool = False  # needs transaction pooling
    duration: int = None       # seconds per run when --duration is not given (None: its default)
    smoke: bool = True         # part of the smoke run's default selection
    targets: tuple = report.TARGETS
    metrics: bool = False      # pgagroal's metrics port on, scraped every second during the run
    prepared_statements: int = 0  # both poolers' max_prepared_statements (0: not written)

    def profile(self):
        return Profile(pool=self.pool, mode="transaction" if self.transaction else "session",
                       auth=self.auth, max_clients=self.clients + 64, user=self.user,
                       metrics=self.metrics, prepared_statements=self.prepared_statements)

    def fds_needed(self):
        """Open files a pooler (PgBouncer: one process) and pgbench need:
        one per client and per server connection, and some to spare."""
        return self.clients + self.pool + 64


WORKLOADS = (
    Workload("select-8", ("-S", "-c", "8", "-j", "2"), 8, 8,
             "built-in select-only script, simple protocol"),
    # select-8 again with pgagroal's metrics port on and scraped every
    # second: the cost of recording metrics (report.metrics_overhead).
    Workload("select-8-metrics", ("-S", "-c", "8", "-j", "2"), 8, 8,
             "select-8 with pgagroal's metrics on, scraped every second",
             metrics=True, targets=("pgagroal",)),
    Workload("tpcb-8", ("-c", "8", "-j", "2"), 8, 8,
             "built-in TPC-B-like script"),
    Workload("extended-8", ("-S", "-M", "extended", "-c", "8", "-j", "2"), 8, 8,
             "select-only, extended query protocol"),
    Workload("churn-trust", ("-S", "-C", "-c", "8", "-j", "2"), 8, 8,
             "select-only, a new connection per transaction, trust"),
    Workload("churn-scram", ("-S", "-C", "-c", "8", "-j", "2"), 8, 8,
             "select-only, a new connection per transaction, scram-sha-256",
             user=SCRAM_USER, auth="scram-sha-256"),
    Workload("many-clients", ("-S", "-c", "256", "-j", "2"), 256, 16,
             "select-only, 256 clients on a pool of 16 (transaction pooling)",
             transaction=True),
    # Direct would be 1,000 backends on the machine's cores: that measures
    # PostgreSQL, not the poolers.
    Workload("many-clients-1000", ("-S", "-c", "1000", "-j", "2"), 1000, 16,
             "select-only, 1,000 clients on a pool of 16 (transaction pooling), 30 s",
             transaction=True, duration=30, smoke=False, targets=("pgbouncer", "pgagroal")),
    # Named prepared statements (pgbench prepares each statement once per
    # client, then only binds and executes it) while every transaction may
    # get another server connection: the pooler must make sure the
    # statement exists on whichever connection runs it.
    Workload("prepared-tx", ("-S", "-M", "prepared", "-c", "64", "-j", "2"), 64, 16,
             "select-only, named prepared statements, 64 clients on a pool of 16 "
             "(transaction pooling, max_prepared_statements = 200)",
             transaction=True, prepared_statements=200, targets=("pgbouncer", "pgagroal")),
)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="bench/run", description="pgagroal vs PgBouncer vs direct PostgreSQL (pgbench).")
    parser.add_argument("--smoke", action="store_true",
                        help="test the harness: 1 round x 2 s, 50 idle clients; "
                             "exit non-zero on any failure")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; smoke 1)")
    parser.add_argument("--duration", type=int,
                        help="seconds per run (default 10, many-clients-1000 30; smoke 2); "
                             "given, it applies to every workload")
    parser.add_argument("--memory-clients", type=int,
                        help="idle clients for the memory check (default 1000; smoke 50)")
    parser.add_argument("--skip-memory", action="store_true", help="no memory check")
    parser.add_argument("--workloads", help="comma-separated subset of: " +
                        ", ".join(w.name for w in WORKLOADS) +
                        " (default all; with --smoke all but " +
                        ", ".join(w.name for w in WORKLOADS if not w.smoke) + ")")
    parser.add_argument("--results-dir",
                        help="where results go (default bench/results/<timestamp>)")
    args = parser.parse_args(argv)
    args.duration_given = args.duration is not None
    args.rounds = args.rounds or (1 if args.smoke else 3)
    args.duration = args.duration or (2 if args.smoke else 10)
    args.memory_clients = args.memory_clients or (50 if args.smoke else 1000)
    if args.rounds < 1 or args.duration < 1 or args.memory_clients < 1:
        parser.error("--rounds, --duration and --memory-clients must be positive")
    names = [w.name for w in WORKLOADS]
    args.selected = [w.name for w in WORKLOADS if w.smoke or not args.smoke]
    if args.workloads:
        args.selected = [n.strip() for n in args.workloads.split(",") if n.strip()]
        unknown = set(args.selected) - set(names)
        if unknown:
            parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    return args
