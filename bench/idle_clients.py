"""Holds many idle client connections open, speaking the PostgreSQL v3
protocol directly: each client sends a StartupMessage (user, database),
reads until ReadyForQuery, runs "SELECT 1" once (so a session pooler assigns
it a server connection), and then stays idle until released.

Used by the harness to measure a pooler's memory with N clients; it can also
be run by hand:

    python3 bench/idle_clients.py --port 6432 --clients 1000 --seconds 60
"""

import argparse
import asyncio
import resource
import struct
import sys
import time

PROTOCOL_V3 = 196608
TERMINATE = b"X" + struct.pack("!i", 4)


class ClientError(Exception):
    pass


def startup_message(user, database):
    body = struct.pack("!i", PROTOCOL_V3)
    for key, value in (("user", user), ("database", database)):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def query_message(sql):
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!i", len(body) + 4) + body


def error_text(body):
    """'SEVERITY CODE: message' from an ErrorResponse body."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return f"{fields.get('S', 'ERROR')} {fields.get('C', '')}: {fields.get('M', '')}".strip()


async def read_message(reader):
    header = await reader.readexactly(5)
    kind, length = header[:1], struct.unpack("!i", header[1:])[0]
    return kind, await reader.readexactly(length - 4)


async def read_until_ready(reader):
    """Reads messages until ReadyForQuery; an error or a password request
    (these clients log in with trust) raises ClientError."""
    while True:
        kind, body = await read_message(reader)
        if kind == b"E":
            raise ClientError(error_text(body))
        if kind == b"R":
            code = struct.unpack("!i", body[:4])[0]
            if code != 0:
                raise ClientError(f"server asked for authentication (request {code}); "
                                  "idle clients log in with trust only")
        if kind == b"Z":
            return


async def open_client(host, port, user, database):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(startup_message(user, database))
        await writer.drain()
        await read_until_ready(reader)
        writer.write(query_message("SELECT 1"))
        await writer.drain()
        await read_until_ready(reader)
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def close_client(writer):
    try:
        writer.write(TERMINATE)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    except (OSError, ConnectionError):
        pass


async def hold(host, port, user, database, count, while_held, concurrency=32, timeout=120.0):
    """Opens count clients (at most concurrency log-ins at a time), calls
    while_held() while they are all idle, then closes them. Returns
    (opened, errors, value returned by while_held or None)."""
    gate = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + timeout

    async def one():
        async with gate:
            left = max(0.1, deadline - time.monotonic())
            return await asyncio.wait_for(open_client(host, port, user, database), left)

    outcomes = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    writers = [o[1] for o in outcomes if isinstance(o, tuple)]
    errors = [describe(o) for o in outcomes if not isinstance(o, tuple)]
    try:
        value = while_held() if not errors else None
    finally:
        await asyncio.gather(*(close_client(w) for w in writers))
    return len(writers), errors, value


def describe(exc):
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out logging in"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed by the server"
    return f"{type(exc).__name__}: {exc}"


def hold_clients(host, port, user, database, count, while_held, **kwargs):
    """Synchronous wrapper of hold()."""
    return asyncio.run(hold(host, port, user, database, count, while_held, **kwargs))


def raise_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--database", default="postgres")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to hold them")
    args = parser.parse_args()
    raise_fd_limit(args.clients + 256)
    opened, errors, _ = hold_clients(args.host, args.port, args.user, args.database,
                                     args.clients, lambda: time.sleep(args.seconds))
    print(f"{opened} of {args.clients} clients logged in and ran SELECT 1")
    for message in sorted(set(errors))[:5]:
        print(f"  error ({errors.count(message)}x): {message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
