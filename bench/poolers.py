"""The two poolers under test, configured alike: same pool size, same pooling
mode, same authentication method between client and pooler, the same reset
query (DISCARD ALL), no per-connection logging, both in front of the same
PostgreSQL over TCP on 127.0.0.1, both run as the same unprivileged user.

With scram-sha-256 both poolers hold the SCRAM user's password themselves:
PgBouncer in its auth_file, pgagroal in a users vault (pgagroal_users.conf,
encrypted with a master key under the daemon's HOME). Each checks the
client's password with its own SCRAM exchange and logs in to PostgreSQL with
the stored password, so both can hand a server connection to the next
client.

In transaction mode pgagroal must log in to PostgreSQL by itself for every
user (its transaction pipeline refuses pass-through users), so it gets
allow_unknown_users = off and a users vault holding the workload's user even
with trust; PgBouncer has that user in its auth_file either way. PostgreSQL
trusts the trust user, so the password stored for it is never asked for."""

import os
import secrets
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass

import processes
from cluster import DATABASE, SCRAM_USER, SUPERUSER


class TargetError(Exception):
    """A pooler did not start (or the measurement of it failed)."""


@dataclass(frozen=True)
class Profile:
    """What both poolers are given for one workload."""
    pool: int                  # server connections
    mode: str = "session"      # "session" or "transaction"
    auth: str = "trust"        # client <-> pooler: "trust" or "scram-sha-256"
    max_clients: int = 100     # PgBouncer's max_client_conn
    user: str = SUPERUSER      # the user pgbench logs in as (in pgagroal's vault if one is made)
    metrics: bool = False      # pgagroal only: the metrics port on (and scraped by the harness)
    prepared_statements: int = 0  # max_prepared_statements of both (0: left at their default)

    def label(self):
        metrics = ", metrics on" if self.metrics else ""
        prepared = (f", max_prepared_statements {self.prepared_statements}"
                    if self.prepared_statements else "")
        return (f"pool {self.pool}, {self.mode}, {self.auth}, up to {self.max_clients} clients"
                f"{metrics}{prepared}")

    def prepared_line(self):
        """The max_prepared_statements line of either pooler's configuration
        (the key has the same name in both), or nothing."""
        n = self.prepared_statements
        return f"max_prepared_statements = {n}\n" if n else ""


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""


class Daemon:
    """A pooler process started in a directory of its own for one run."""

    name = "daemon"
    include_children = False    # CPU of reaped and live children counts too
    stop_signal = signal.SIGTERM

    def __init__(self, workdir, run_user, pg_port, profile, scram_password):
        self.dir = workdir
        self.run_user = run_user
        self.pg_port = pg_port
        self.profile = profile
        self.scram_password = scram_password
        self.port = processes.free_port()
        self.proc = None
        self.lifetime_cpu_s = None
        self.stderr_path = os.path.join(workdir, "stderr.log")
        os.makedirs(workdir, mode=0o755)
        if run_user:
            run_user.give(workdir)

    # Subclasses: write_config() returns {file name: text}; command(); log_path.
    def write_config(self):
        raise NotImplementedError

    def command(self):
        raise NotImplementedError

    log_path = ""

    def _write_files(self):
        files = self.write_config()
        for name, text in files.items():
            path = os.path.join(self.dir, name)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o600)
            if self.run_user:
                self.run_user.give(path)
        return files

    def prepare(self):
        """Anything besides the configuration files, before the start; may add
        entries to self.configs (recorded in the results)."""

    def environment(self):
        """Variables set for the daemon on top of processes.client_env()."""
        return {}

    def command_line(self):
        """The command as a shell line, its environment variables first."""
        assignments = [f"{k}={shlex.quote(v)}" for k, v in self.environment().items()]
        return " ".join(assignments + [shlex.join(str(c) for c in self.command())])

    def start(self, timeout=20.0):
        """Starts and waits until the port accepts connections."""
        self.configs = self._write_files()
        self.prepare()
        with open(self.stderr_path, "wb") as err:
            self.proc = processes.spawn(self.command(), as_user=self.run_user, cwd=self.dir,
                                        env=processes.client_env(self.environment()),
                                        stdout=err, stderr=subprocess.STDOUT)
        ready = processes.wait_until(
            lambda: self.proc.poll() is not None or processes.port_open(self.port), timeout)
        if self.proc.poll() is not None or not ready:
            code = self.proc.poll()
            self.stop()
            raise TargetError(f"{self.name} did not start (exit {code}): {self.diagnostics()}")

    def diagnostics(self):
        """The end of its standard error and of its log file (once if equal)."""
        parts = []
        for text in (tail(self.stderr_path), tail(self.log_path)):
            if text and text not in parts:
                parts.append(text)
        return "\n".join(parts) or "no output"

    def log_problems(self, keep=5):
        """Lines of its log and standard error that carry a warning or an
        error, or say that a client gave up waiting for a server connection
        (pgagroal logs "connection pool is full" at info level): how many,
        and the first few."""
        words = ("WARN", "ERROR", "FATAL", "PANIC", "connection pool is full", "query_wait_timeout")
        found = []
        for path in (self.log_path, self.stderr_path):
            try:
                with open(path, errors="replace") as f:
                    found += [line.rstrip() for line in f if any(w in line for w in words)]
            except OSError:
                pass
        return {"count": len(found), "first": found[:keep]} if found else None

    def stop(self):
        """stop_signal, wait; leftovers (workers included) are killed. Returns
        the exit code (negative if it had to be killed)."""
        if self.proc is None:
            return None
        table = processes.process_table()
        members = [(pid, table[pid]["start"])
                   for pid in processes.descendants(self.proc.pid, table)]
        processes.terminate(self.proc, sig=self.stop_signal)
        for pid, start in members:
            processes.kill_if_same(pid, start)
        # CPU over its whole life, start and shutdown included: its own and
        # that of every child it reaped (wait4). A cross-check of the
        # per-run figure, which cannot be larger.
        usage = getattr(self.proc, "rusage", None)
        self.lifetime_cpu_s = usage.ru_utime + usage.ru_stime if usage else None
        code, self.proc = self.proc.returncode, None
        return code

    # --- measurements -------------------------------------------------------

    def cpu_ticks(self):
        ticks = processes.cpu_ticks(self.proc.pid, self.include_children)
        if ticks is None:
            raise TargetError(f"{self.name} is gone: {self.diagnostics()}")
        return ticks

    def pids(self):
        return [self.proc.pid] + processes.descendants(self.proc.pid)

    def pss_kib(self):
        pids = self.pids()
        return sum(processes.pss_kib(pid) for pid in pids), len(pids)

    def settle(self, children_before, timeout=2.0):
        """After a run, waits (up to timeout) until the workers of the clients
        that left have exited, so their CPU time is in the parent's counters."""
        processes.wait_until(
            lambda: len(processes.descendants(self.proc.pid)) <= children_before, timeout)


class Pgagroal(Daemon):
    name = "pgagroal"
    include_children = True

    def __init__(self, bin_dir, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.binary = os.path.join(bin_dir, "pgagroal")
        self.admin = os.path.join(bin_dir, "pgagroal-admin")
        self.log_path = os.path.join(self.dir, "pgagroal.log")
        # With scram-sha-256, and in transaction mode, the workload's user is
        # in a users vault: its master key in <home>/.pgagroal/master.key,
        # HOME=<home> for the daemon.
        self.vault = self.profile.auth != "trust" or self.profile.mode == "transaction"
        self.home = os.path.join(self.dir, "home")
        self.users_path = os.path.join(self.dir, "pgagroal_users.conf")
        self.metrics_port = processes.free_port() if self.profile.metrics else 0

    def write_config(self):
        p = self.profile
        # The transaction pipeline refuses pass-through users. blocking_timeout
        # (how long a client waits for a server connection; in transaction
        # mode at every transaction) stays 30 s, as PgBouncer's
        # query_wait_timeout (120 s) lets its clients wait. pgagroal warns
        # about any value above 0 in transaction mode, but 0 means "do not
        # wait": a transaction would be refused whenever the pool is busy.
        unknown_users = "allow_unknown_users = off\n" if p.mode == "transaction" else ""
        conf = f"""\
[pgagroal]
host = 127.0.0.1
port = {self.port}
unix_socket_dir = {self.dir}
max_connections = {p.pool}
pipeline = {p.mode}
{unknown_users}{p.prepared_line()}log_type = file
log_path = {self.log_path}
log_level = info
log_connections = off
log_disconnections = off
blocking_timeout = 30
server_reset_query = DISCARD ALL
metrics = {self.metrics_port}

[primary]
host = 127.0.0.1
port = {self.pg_port}
"""
        hba = f"host all all all {p.auth}\n"
        return {"pgagroal.conf": conf, "pgagroal_hba.conf": hba}

    def prepare(self):
        """Creates the users vault with pgagroal-admin, run as the daemon's
        account with the daemon's HOME: a master key with a random
        passphrase, then the workload's user with the benchmark's password
        (the SCRAM user's real one; for the trust user PostgreSQL asks for
        none). The secrets go through PGAGROAL_PASSWORD, not the command
        line."""
        if not self.vault:
            return
        if not os.access(self.admin, os.X_OK):
            raise TargetError(f"pgagroal-admin not found next to pgagroal ({self.admin}); "
                              "it is needed for the users vault (scram-sha-256, transaction "
                              "mode)")
        os.makedirs(self.home, mode=0o700)
        os.chmod(self.home, 0o700)
        if self.run_user:
            self.run_user.give(self.home)
        steps = [
            ([self.admin, "master-key"], secrets.token_hex(16)),
            ([self.admin, "-f", self.users_path, "-U", self.profile.user, "user", "add"],
             self.scram_password),
        ]
        recorded = []
        for cmd, secret in steps:
            env = processes.client_env({"HOME": self.home, "PGAGROAL_PASSWORD": secret})
            recorded.append(f"HOME={shlex.quote(self.home)} PGAGROAL_PASSWORD=... "
                            + shlex.join(cmd))
            code, out, err = processes.run(cmd, as_user=self.run_user, cwd=self.dir, env=env,
                                           timeout=60, check=False)
            if code != 0:
                raise TargetError(f"{shlex.join(cmd)} exited {code}: "
                                  f"{(err or out).strip()[-500:]}")
        self.configs["vault"] = "\n".join(recorded) + "\n"

    def environment(self):
        return {"HOME": self.home} if self.vault else {}

    def command(self):
        cmd = [self.binary, "-c", os.path.join(self.dir, "pgagroal.conf"),
               "-a", os.path.join(self.dir, "pgagroal_hba.conf")]
        if self.vault:
            cmd += ["-u", self.users_path]
        return cmd

    def children(self):
        return len(processes.descendants(self.proc.pid))


class PgBouncer(Daemon):
    name = "pgbouncer"
    # SIGINT is PgBouncer's clean shutdown (exit 0); SIGTERM is its "fast
    # exit", which ends with status 1.
    stop_signal = signal.SIGINT

    def __init__(self, binary, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.binary = binary
        self.log_path = os.path.join(self.dir, "pgbouncer.log")

    def write_config(self):
        p = self.profile
        ini = f"""\
[databases]
{DATABASE} = host=127.0.0.1 port={self.pg_port} dbname={DATABASE}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir = {self.dir}
pidfile = {os.path.join(self.dir, "pgbouncer.pid")}
logfile = {self.log_path}
auth_type = {p.auth}
auth_file = {os.path.join(self.dir, "userlist.txt")}
pool_mode = {p.mode}
default_pool_size = {p.pool}
min_pool_size = 0
reserve_pool_size = 0
max_db_connections = 0
max_client_conn = {p.max_clients}
server_reset_query = DISCARD ALL
{p.prepared_line()}log_connections = 0
log_disconnections = 0
"""
        # With scram-sha-256 PgBouncer checks the client's password itself and
        # logs into PostgreSQL with the same (plain text) password.
        users = f'"{SUPERUSER}" ""\n"{SCRAM_USER}" "{self.scram_password}"\n'
        return {"pgbouncer.ini": ini, "userlist.txt": users}

    def command(self):
        return [self.binary, os.path.join(self.dir, "pgbouncer.ini")]

    def children(self):
        return 0


def find_pgbouncer():
    """The binary PGBOUNCER names (bench/run sets it to the one it built),
    else the first pgbouncer on the PATH or in sbin."""
    named = os.environ.get("PGBOUNCER")
    if named:
        if not os.access(named, os.X_OK):
            raise TargetError(f"PGBOUNCER={named} is not an executable file")
        return named
    found = shutil.which("pgbouncer") or shutil.which(
        "pgbouncer", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if not found:
        raise TargetError("pgbouncer not found (bench/run builds it; or set PGBOUNCER)")
    return found


def build_info(binary):
    """What bench/build-pgbouncer wrote beside the binary it built (source
    tarball, its sha256, when, how many seconds), or None for any other
    binary."""
    path = os.path.join(os.path.dirname(os.path.dirname(binary)), "bench-build.txt")
    try:
        with open(path) as f:
            return dict(line.rstrip("\n").split(": ", 1) for line in f if ": " in line)
    except OSError:
        return None


def version_of(binary, flag):
    try:
        out = processes.run([binary, flag], timeout=30, check=False)
        return (out[1] or out[2]).strip().splitlines()[0]
    except Exception as e:  # recorded, not fatal
        return f"unknown ({e})"
