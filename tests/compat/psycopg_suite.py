"""psycopg 3 through the pooler.

Usage: psycopg_suite.py PREPARE_THRESHOLD CHECK...
PREPARE_THRESHOLD is a number or "none" (psycopg's automatic preparation
off). Connection settings come from the PG* variables. Prints one JSON
object: for each check, what it read back.
"""

import json
import os
import sys
import threading
import time
import uuid

import psycopg
from psycopg import errors

THRESHOLD = None if sys.argv[1] == "none" else int(sys.argv[1])


def connect():
    return psycopg.connect(
        host=os.environ["PGHOST"],
        port=os.environ["PGPORT"],
        user=os.environ["PGUSER"],
        password=os.environ["PGPASSWORD"],
        dbname=os.environ["PGDATABASE"],
        sslmode="disable",
        connect_timeout=20,
        autocommit=True,
        prepare_threshold=THRESHOLD,
    )


def table(conn, name, columns):
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} ({columns})")


def check_prepared(conn, tag):
    """Two connections run different statements, interleaved; with a
    threshold of 0 both are prepared on first use (under the same names,
    _pg3_0, ...)."""
    other = connect()
    doubled, plus = [], []
    for i in range(12):
        doubled.append(conn.execute("SELECT %s::int * 2", (i,)).fetchone()[0])
        plus.append(other.execute("SELECT %s::int + 1000", (i,)).fetchone()[0])
    with conn.transaction():
        inside = [conn.execute("SELECT %s::int * 2", (i,)).fetchone()[0] for i in range(3)]
    server = conn.execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int * 2'"
    ).fetchone()[0]
    other.close()
    return {"doubled": doubled, "plus": plus, "inside": inside, "server_prepared": server}


def check_evicted(conn, tag):
    """psycopg's own cache kept at two statements: it drops the least
    recently used one (DEALLOCATE, or Close with a newer libpq) while five
    distinct statements take turns; every result is read back."""
    conn.prepared_max = 2
    results = []
    for round in range(3):
        for k in range(5):
            results.append(conn.execute(f"SELECT %s::int + {k}", (round * 10,)).fetchone()[0])
    return results


def check_copy(conn, tag):
    name = f"psycopg_copy_{tag}"
    table(conn, name, "id int PRIMARY KEY, name text")
    with conn.cursor() as cur:
        with cur.copy(f"COPY {name} (id, name) FROM STDIN") as copy:
            for i in range(1, 1001):
                copy.write_row((i, f"row {i}"))
        count, total = cur.execute(f"SELECT count(*), sum(id) FROM {name}").fetchone()
        out = []
        with cur.copy(f"COPY (SELECT id, name FROM {name} WHERE id % 250 = 0 ORDER BY id) TO STDOUT") as copy:
            for row in copy.rows():
                out.append(list(row))
    return {"count": count, "sum": total, "out": out}


def check_notice(conn, tag):
    notices = []
    conn.add_notice_handler(lambda d: notices.append([d.severity_nonlocalized, d.message_primary]))
    conn.execute("DO $$ BEGIN RAISE NOTICE 'compat notice %', 6 * 7; RAISE WARNING 'compat warning'; END $$")
    return notices


def check_error(conn, tag):
    name = f"psycopg_error_{tag}"
    table(conn, name, "id int PRIMARY KEY")
    conn.execute(f"INSERT INTO {name} VALUES (1)")
    result = {}
    try:
        conn.execute("SELECT 1 / 0")
    except errors.DivisionByZero as e:
        result["division"] = [e.sqlstate, e.diag.message_primary]
    try:
        with conn.transaction():
            conn.execute(f"INSERT INTO {name} VALUES (2)")
            conn.execute(f"INSERT INTO {name} VALUES (1)")
    except errors.UniqueViolation as e:
        result["duplicate"] = e.sqlstate
    with conn.transaction():
        try:
            conn.execute("SELECT no_such_column FROM pg_class")
        except errors.UndefinedColumn as e:
            result["undefined"] = e.sqlstate
        try:
            conn.execute("SELECT 1")
        except errors.InFailedSqlTransaction as e:
            result["aborted"] = e.sqlstate
        raise psycopg.Rollback()
    result["rows"] = conn.execute(f"SELECT array_agg(id ORDER BY id) FROM {name}").fetchone()[0]
    return result


def running(watcher, marker):
    """Active backends whose query text holds `marker`."""
    return watcher.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        "AND position(%s in query) > 0 AND pid <> pg_backend_pid()",
        (marker,),
    ).fetchone()[0]


def check_cancel(conn, tag):
    """conn.cancel() from another thread once the sleep is seen running."""
    marker = "compat_cancel_" + uuid.uuid4().hex
    watcher = connect()
    seen = []

    def cancel_when_running():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if running(watcher, marker):
                seen.append(True)
                conn.cancel()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=cancel_when_running)
    started = time.monotonic()
    thread.start()
    try:
        conn.execute(f"SELECT pg_sleep(60) /* {marker} */")
        outcome = "finished"
    except errors.QueryCanceled as e:
        outcome = e.sqlstate
    thread.join()
    elapsed = time.monotonic() - started
    after = conn.execute("SELECT 'alive'").fetchone()[0]
    still = running(watcher, marker)
    watcher.close()
    return {"seen": seen == [True], "outcome": outcome, "quick": elapsed < 30, "after": after, "still_running": still}


def main():
    tag = os.environ.get("COMPAT_TAG", "x")
    result = {}
    for check in sys.argv[2:]:
        with connect() as conn:
            result[check] = globals()["check_" + check](conn, tag)
    print(json.dumps(result))


main()
