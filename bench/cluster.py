"""The benchmark's own PostgreSQL: initdb into the harness's temporary
directory, settings tuned to measure pooler overhead rather than the disk,
the pgbench tables at scale 10 and a SCRAM user for the churn-scram workload."""

import os
import signal
import time

import processes

DATABASE = "bench"
SUPERUSER = "postgres"          # trust
SCRAM_USER = "bench_scram"      # password stored as SCRAM, scram-sha-256 in pg_hba
SCALE = 10

# Appended to postgresql.conf. fsync and synchronous_commit are off: the
# benchmark measures what a pooler adds, not how fast the disk syncs.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "1200",
    "shared_buffers": "128MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "password_encryption": "'scram-sha-256'",
}

HBA = f"""\
# TYPE  DATABASE  USER          ADDRESS        METHOD
local   all       {SCRAM_USER}                 scram-sha-256
host    all       {SCRAM_USER}  127.0.0.1/32   scram-sha-256
local   all       all                          trust
host    all       all           127.0.0.1/32   trust
"""


class Cluster:
    def __init__(self, bindir, workdir, run_user, log):
        self.bindir = bindir
        self.datadir = os.path.join(workdir, "pgdata")
        self.sockdir = os.path.join(workdir, "pgsock")
        self.logfile = os.path.join(workdir, "postgresql.log")
        self.run_user = run_user
        self.port = processes.free_port()
        self.started = False
        self.log = log          # records every command run, for the JSON

    def bin(self, name):
        return os.path.join(self.bindir, name)

    def _as_server(self, cmd, timeout=600):
        self.log(cmd)
        return processes.run(cmd, as_user=self.run_user, cwd=os.path.dirname(self.datadir),
                             timeout=timeout)

    def version(self):
        return processes.run([self.bin("postgres"), "--version"])[1].strip()

    def init(self):
        for path in (self.datadir, self.sockdir):
            os.makedirs(path, mode=0o700)
            if self.run_user:
                self.run_user.give(path)
        self._as_server([self.bin("initdb"), "-D", self.datadir, "-A", "trust",
                         "-U", SUPERUSER, "-E", "UTF8", "--no-sync"])
        settings = dict(SETTINGS, port=str(self.port),
                        unix_socket_directories=f"'{self.sockdir}'")
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# pgagroal benchmark harness\n")
            for key, value in settings.items():
                f.write(f"{key} = {value}\n")
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write(HBA)
        return settings

    def start(self):
        if self.run_user:
            # The log file lives next to the data directory, owned by the server.
            open(self.logfile, "a").close()
            self.run_user.give(self.logfile)
        self._as_server([self.bin("pg_ctl"), "-D", self.datadir, "-l", self.logfile,
                         "-w", "-t", "120", "start"], timeout=180)
        self.started = True

    def stop(self):
        """Fast shutdown; if that fails, SIGQUIT then SIGKILL the postmaster."""
        if not self.started:
            return
        self.started = False
        try:
            processes.run([self.bin("pg_ctl"), "-D", self.datadir, "-m", "fast", "-w",
                           "-t", "60", "stop"], as_user=self.run_user,
                          cwd=os.path.dirname(self.datadir), timeout=90)
            return
        except Exception:
            pass
        pid = self._postmaster_pid()
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            if pid is None:
                return
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            processes.wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 10)

    def _postmaster_pid(self):
        """The pid in postmaster.pid, if that process still serves our data
        directory (and is not a later process that got the same pid)."""
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                pid = int(f.readline())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if self.datadir.encode() in f.read():
                    return pid
        except (OSError, ValueError):
            pass
        return None

    def psql(self, *statements, database=DATABASE, record=True, secret=None):
        """Each statement is its own -c (VACUUM cannot share a query string)."""
        cmd = [self.bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database]
        for sql in statements:
            cmd += ["-c", sql]
        if record:
            self.log([c.replace(secret, "...") if secret else c for c in cmd])
        return processes.run(cmd, timeout=300)[1]

    def prepare(self, scram_password):
        """Database, pgbench tables at scale 10, and the SCRAM user."""
        self.psql(f"CREATE DATABASE {DATABASE}", database="postgres")
        cmd = [self.bin("pgbench"), "-i", "-s", str(SCALE), "-h", "127.0.0.1",
               "-p", str(self.port), "-U", SUPERUSER, DATABASE]
        self.log(cmd)
        started = time.monotonic()
        processes.run(cmd, timeout=900)
        self.psql(f"CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{scram_password}'",
                  f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {SCRAM_USER}",
                  secret=scram_password)
        stored = self.psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{SCRAM_USER}'",
                           record=False)
        if not stored.startswith("SCRAM-SHA-256$"):
            raise RuntimeError(f"{SCRAM_USER}'s password is not stored as SCRAM")
        return time.monotonic() - started

    def server_sessions(self, settle=0.5, timeout=10.0):
        """pg_stat_database.sessions of the benchmark database: every
        connection ever made to it. Read from the 'postgres' database (so that
        reading does not count), once no backend is connected to the
        benchmark database any more, and settle seconds later, since a
        backend adds its counts to the shared statistics as it exits."""
        def connected():
            return int(self.psql("SELECT count(*) FROM pg_stat_activity "
                                 f"WHERE datname = '{DATABASE}' AND backend_type = 'client backend'",
                                 database="postgres", record=False).strip())
        processes.wait_until(lambda: connected() == 0, timeout, interval=0.1)
        time.sleep(settle)
        return int(self.psql(f"SELECT sessions FROM pg_stat_database WHERE datname = '{DATABASE}'",
                             database="postgres", record=False).strip())

    def reset_tables(self, record=False):
        """What pgbench does before a run unless -n, done here directly on
        PostgreSQL so that it does not go through (and cost) a pooler."""
        self.psql("VACUUM pgbench_branches", "VACUUM pgbench_tellers",
                  "TRUNCATE pgbench_history", record=record)
