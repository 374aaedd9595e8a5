"""Processes the harness owns: starting them (as an unprivileged account when
the harness runs as root), stopping them on every path out, and reading their
CPU time and memory from /proc."""

import ctypes
import os
import pwd
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36

# Every process started through spawn(), so that cleanup() can end them.
_owned = []


class RunUser:
    """The account servers run as: PostgreSQL and PgBouncer refuse root, and
    the pooler runs as the same account for symmetry."""

    def __init__(self, name):
        entry = pwd.getpwnam(name)
        self.name = name
        self.uid = entry.pw_uid
        self.gid = entry.pw_gid

    @classmethod
    def pick(cls):
        """None when not root (everything runs as the current user)."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                return cls(name)
            except KeyError:
                continue
        raise RuntimeError("running as root but neither 'postgres' nor 'nobody' exists")

    def give(self, path):
        """Hand a file or directory over to this account."""
        os.chown(path, self.uid, self.gid)


def become_subreaper():
    """Orphaned descendants (a worker whose parent died) are re-parented to
    the harness, so the final sweep in cleanup() still finds them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except OSError:
        pass


def client_env(extra=None):
    """Environment for client programs: no inherited PG* settings, no SSL or
    GSS negotiation (the same plain TCP start-up for every target)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGSSLMODE"] = "disable"
    env["PGGSSENCMODE"] = "disable"
    if extra:
        env.update(extra)
    return env


def spawn(cmd, *, as_user=None, cwd=None, env=None, stdout=None, stderr=None):
    """Start cmd in a session of its own (a terminal's Ctrl-C reaches only the
    harness, which then stops everything in order) and remember it."""
    kwargs = dict(
        cwd=cwd,
        env=env if env is not None else client_env(),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    if as_user is not None:
        kwargs.update(user=as_user.uid, group=as_user.gid, extra_groups=[])
    proc = subprocess.Popen([str(c) for c in cmd], **kwargs)
    _owned.append(proc)
    return proc


def run(cmd, *, as_user=None, cwd=None, env=None, timeout=600, check=True):
    """Run cmd to completion; returns (exit code, stdout, stderr)."""
    proc = spawn(cmd, as_user=as_user, cwd=cwd, env=env,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        terminate(proc)
        raise RuntimeError(f"timed out after {timeout} s: {' '.join(map(str, cmd))}")
    forget(proc)
    out, err = out.decode(errors="replace"), err.decode(errors="replace")
    if check and proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(map(str, cmd))}\n{err.strip()}")
    return proc.returncode, out, err


def terminate(proc, grace=10.0, sig=signal.SIGTERM):
    """Sends sig (SIGTERM); after grace seconds SIGKILLs its process group.
    The group is only signalled while its leader is still unreaped, so that
    its id cannot have been reused by someone else's processes."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            wait_with_usage(proc, grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    forget(proc)


def wait_with_usage(proc, timeout):
    """proc.wait(timeout), reaping with wait4 so that the resource usage of
    the process and of every descendant it reaped is kept in proc.rusage
    (None if the process was reaped elsewhere)."""
    deadline = time.monotonic() + timeout
    while proc.returncode is None:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            proc.poll()
            break
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            proc.rusage = usage
            break
        if time.monotonic() >= deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.02)
    return proc.returncode


def forget(proc):
    if proc.returncode is not None and proc in _owned:
        _owned.remove(proc)


def kill_if_same(pid, start):
    """SIGKILLs pid only if it is still the process that started at start
    (clock ticks since boot), not a later one that got the same pid."""
    fields = _read_stat(pid)
    if fields is not None and int(fields[19]) == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cleanup():
    """Ends everything spawn() started, then any orphan re-parented to us."""
    for proc in list(reversed(_owned)):
        terminate(proc, grace=5.0)
    _owned.clear()
    me = os.getpid()
    for pid, info in process_table().items():
        if info["ppid"] == me:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # Reap what was re-parented to us.
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break


# --- /proc ------------------------------------------------------------------

def _read_stat(pid):
    """Fields of /proc/<pid>/stat after the command name, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: split at the last ')'.
    return data[data.rindex(")") + 2:].split()


def process_table():
    """pid -> {ppid, utime, stime, cutime, cstime, start} for every process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _read_stat(name)
        if fields is None:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12)
        # cutime(13) cstime(14) ... starttime(19)
        table[int(name)] = {
            "ppid": int(fields[1]),
            "utime": int(fields[11]),
            "stime": int(fields[12]),
            "cutime": int(fields[13]),
            "cstime": int(fields[14]),
            "start": int(fields[19]),
        }
    return table


def descendants(root, table=None):
    """Pids of every live descendant of root."""
    table = table if table is not None else process_table()
    children = {}
    for pid, info in table.items():
        children.setdefault(info["ppid"], []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_ticks(root, include_children, attempts=5):
    """CPU clock ticks of root (user + system). With include_children, also
    the ticks of its reaped children (cutime + cstime) and the user + system
    ticks (and reaped children's) of every live descendant, a zombie
    included. None when root is gone.

    The table is read one /proc entry at a time: a child reaped during the
    scan would be counted twice (read live, then in root's cutime) or not at
    all (gone before it was read, yet missing from a cutime read earlier).
    root's stat is read before and after the scan, and the scan is repeated
    until no child was reaped meanwhile (root's cutime + cstime unchanged)."""
    def own(fields):
        return int(fields[11]) + int(fields[12])

    def reaped(fields):
        return int(fields[13]) + int(fields[14])

    ticks = None
    for _ in range(attempts):
        before = _read_stat(root)
        if before is None:
            return None
        if not include_children:
            return own(before)
        table = process_table()
        after = _read_stat(root)
        if after is None:
            return None
        ticks = own(after) + reaped(after)
        for pid in descendants(root, table):
            child = table[pid]
            ticks += child["utime"] + child["stime"] + child["cutime"] + child["cstime"]
        if reaped(before) == reaped(after):
            return ticks
    return ticks


def pss_kib(pid):
    """Proportional set size of one process in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout, interval=0.05):
    """Polls predicate until it is true or timeout seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
