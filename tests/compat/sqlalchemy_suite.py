"""SQLAlchemy 2 (ORM and Core) on psycopg 3 through the pooler.

Usage: sqlalchemy_suite.py PREPARE_THRESHOLD
PREPARE_THRESHOLD is psycopg's (a number, or "none" for no automatic
preparation). Connection settings come from the PG* variables. Prints one
JSON object of what was read back.
"""

import json
import os
import sys
import threading

from sqlalchemy import String, create_engine, func, insert, select, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

TAG = os.environ.get("COMPAT_TAG", "x")
THRESHOLD = None if sys.argv[1] == "none" else int(sys.argv[1])


class Base(DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = f"sa_person_{TAG}"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    team: Mapped[str] = mapped_column(String(50))
    score: Mapped[int]


class Event(Base):
    __tablename__ = f"sa_event_{TAG}"
    id: Mapped[int] = mapped_column(primary_key=True)
    who: Mapped[str] = mapped_column(String(20))


def main():
    url = URL.create(
        "postgresql+psycopg",
        username=os.environ["PGUSER"],
        password=os.environ["PGPASSWORD"],
        host=os.environ["PGHOST"],
        port=int(os.environ["PGPORT"]),
        database=os.environ["PGDATABASE"],
    )
    engine = create_engine(
        url,
        pool_size=4,
        max_overflow=0,
        connect_args={"prepare_threshold": THRESHOLD, "sslmode": "disable", "connect_timeout": 20},
    )
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    result = {"driver": engine.dialect.driver}

    # ORM inserts in one transaction.
    with Session(engine) as session, session.begin():
        session.add_all(
            [
                Person(name="ada", team="languages", score=100),
                Person(name="grace", team="compilers", score=100),
                Person(name="alan", team="languages", score=100),
                Person(name="edsger", team="compilers", score=100),
            ]
        )

    # A transaction that fails after a flush leaves nothing behind.
    try:
        with Session(engine) as session, session.begin():
            session.add(Person(name="ghost", team="none", score=1))
            session.flush()
            raise RuntimeError("roll back")
    except RuntimeError:
        pass

    # A Core update in a transaction.
    with engine.begin() as conn:
        updated = conn.execute(
            update(Person).where(Person.team == "compilers").values(score=Person.score + 10)
        ).rowcount

    # Read back with the ORM.
    with Session(engine) as session:
        result["names"] = list(session.scalars(select(Person.name).order_by(Person.name)))
        result["rolled_back"] = session.scalar(select(func.count()).where(Person.name == "ghost"))
        result["total"] = session.scalar(select(func.sum(Person.score)))
        rows = session.execute(select(Person.team, func.count()).group_by(Person.team).order_by(Person.team))
        result["by_team"] = [list(row) for row in rows]
    result["updated"] = updated

    # Four threads on the engine's pool, ten Core inserts each, each in
    # its own transaction.
    errors = []

    def worker(n):
        try:
            for _ in range(10):
                with engine.begin() as conn:
                    conn.execute(insert(Event).values(who=f"worker {n}"))
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"worker failed: {errors[0]}")
    with engine.connect() as conn:
        result["concurrent"] = conn.scalar(select(func.count()).select_from(Event))
    engine.dispose()
    print(json.dumps(result))


main()
