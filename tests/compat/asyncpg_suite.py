"""asyncpg through the pooler.

Usage: asyncpg_suite.py STATEMENT_CACHE_SIZE CHECK...
Connection settings come from the PG* variables. Prints one JSON object:
for each check, what it read back.
"""

import asyncio
import json
import os
import sys
import uuid
from decimal import Decimal

import asyncpg

CACHE = int(sys.argv[1])
TAG = os.environ.get("COMPAT_TAG", "x")


def settings():
    return dict(
        host=os.environ["PGHOST"],
        port=int(os.environ["PGPORT"]),
        user=os.environ["PGUSER"],
        password=os.environ["PGPASSWORD"],
        database=os.environ["PGDATABASE"],
        ssl=False,
        timeout=20,
        statement_cache_size=CACHE,
    )


async def check_prepare(conn):
    """Two prepared statements used alternately, then again after a
    transaction."""
    doubled = await conn.prepare("SELECT $1::int * 2 AS doubled, $2::text AS tag")
    summed = await conn.prepare("SELECT coalesce(sum(n), 0)::int FROM generate_series(1, $1::int) AS n")
    rows, sums = [], []
    for i in range(10):
        row = await doubled.fetchrow(i, f"t{i}")
        rows.append([row["doubled"], row["tag"]])
        sums.append(await summed.fetchval(i))
    async with conn.transaction():
        inside = await doubled.fetchval(21, "x")
    again = [await summed.fetchval(100), await doubled.fetchval(50, "y")]
    server = await conn.fetchval("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '__asyncpg_stmt_%'")
    return {"rows": rows, "sums": sums, "inside": inside, "again": again, "server_prepared": server}


async def check_copy(conn):
    name = f"asyncpg_copy_{TAG}"
    await conn.execute(f"DROP TABLE IF EXISTS {name}")
    await conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name text, amount numeric)")
    records = [(i, f"row {i}", Decimal(i) / 4) for i in range(1, 1001)]
    status = await conn.copy_records_to_table(name, records=records, columns=["id", "name", "amount"])
    count, total, amount, last = await conn.fetchrow(
        f"SELECT count(*), sum(id), sum(amount)::text, max(name) FROM {name}"
    )
    return {"status": status, "count": count, "sum": total, "amount": amount, "max": last}


async def check_pool(conn):
    """A pool of 10 connections and 100 concurrent queries, each checking
    its own answer."""
    pool = await asyncpg.create_pool(min_size=10, max_size=10, **settings())
    try:

        async def one(i):
            value, pid = await pool.fetchrow("SELECT $1::int * 2, pg_backend_pid()", i)
            return value == i * 2, pid

        answers = await asyncio.gather(*(one(i) for i in range(100)))
        size = pool.get_size()
    finally:
        await pool.close()
    return {
        "right": sum(1 for ok, _ in answers if ok),
        "backends": len({pid for _, pid in answers}),
        "size": size,
    }


async def running(watcher, marker):
    """Active backends whose query text holds `marker` (a plain hex word)."""
    return await watcher.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        f"AND position('{marker}' in query) > 0 AND pid <> pg_backend_pid()"
    )


async def check_cancel(conn):
    """A task running pg_sleep is cancelled once the sleep is seen on the
    server; asyncpg sends a CancelRequest."""
    marker = "compat_cancel_" + uuid.uuid4().hex
    watcher = await asyncpg.connect(**settings())
    task = asyncio.ensure_future(conn.fetchval(f"SELECT pg_sleep(60) /* {marker} */"))
    seen = False
    for _ in range(1500):
        if await running(watcher, marker):
            seen = True
            break
        await asyncio.sleep(0.02)
    started = asyncio.get_running_loop().time()
    task.cancel()
    try:
        await task
        outcome = "finished"
    except asyncio.CancelledError:
        outcome = "cancelled"
    after = await conn.fetchval("SELECT 'alive'")
    elapsed = asyncio.get_running_loop().time() - started
    still = await running(watcher, marker)
    await watcher.close()
    return {"seen": seen, "outcome": outcome, "quick": elapsed < 30, "after": after, "still_running": still}


async def main():
    result = {}
    for check in sys.argv[2:]:
        conn = await asyncpg.connect(**settings())
        try:
            result[check] = await globals()["check_" + check](conn)
        finally:
            await conn.close()
    print(json.dumps(result))


asyncio.run(main())
