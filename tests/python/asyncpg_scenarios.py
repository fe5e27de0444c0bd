"""asyncpg conformance scenarios: each `scenario_NAME(dsn)` is a coroutine returning a JSON-able
result. asyncpg speaks only the extended protocol with binary formats, prepares every statement
by name, pipelines `executemany` and reads cursors with row-limited Execute (PortalSuspended).

The tables (`conf_items`, `conf_log`, `conf_counters`) and the `conf_notice` function are
created fresh by the Rust side before every run (tests/tests/conformance/support.rs).
"""

import asyncio
import datetime
import decimal
import io
import time

import asyncpg

from conformance import digest, error

ITEMS = (
    "SELECT id, name, price, tags, data, created, flag, blob, ratio, NULL::text AS nothing"
    " FROM conf_items WHERE id <= $1 OR id % 50 = 0 ORDER BY id"
)


def execute(run, dsn):
    return asyncio.run(asyncio.wait_for(run(dsn), 120))


async def connect(dsn):
    return await asyncpg.connect(dsn, timeout=10)


def shape(stmt):
    return [[a.name, a.type.oid, a.type.name] for a in stmt.get_attributes()]


async def scenario_types(dsn):
    conn = await connect(dsn)
    try:
        stmt = await conn.prepare(ITEMS)
        out = {"items": await stmt.fetch(6), "shape": shape(stmt)}
        out["params"] = await conn.fetchrow(
            "SELECT $1::int + 1, $2::text || 'x', $3::numeric * 2, $4::jsonb, $5::date, $6::bytea,"
            " $7::int[], $8::text",
            41, "é ü", decimal.Decimal("12.50"), '{"k": [1, 2]}',
            datetime.date(2024, 2, 29), b"\x00\xff", [1, None, 3], None,
        )
        out["fetchval"] = await conn.fetchval("SELECT sum(price) FROM conf_items")
        out["status"] = await conn.execute("UPDATE conf_items SET flag = NOT flag WHERE id < $1", 10)
        out["many"] = digest(repr(await conn.fetch("SELECT generate_series(1, 3000), repeat('x', 100)")).encode())
        out["script"] = await conn.execute("SELECT 1; SELECT 2; UPDATE conf_counters SET n = n + 1")
        return out
    finally:
        await conn.close()


async def scenario_prepared(dsn):
    conn = await connect(dsn)
    try:
        out = {}
        stmt = await conn.prepare("SELECT id, name FROM conf_items WHERE id = ANY($1::int[]) ORDER BY id")
        out["a"] = await stmt.fetch([1, 2, 3])
        out["b"] = await stmt.fetch([150, 7])
        out["row"] = await stmt.fetchrow([42])
        out["explicit_shape"] = shape(stmt)
        await conn.executemany(
            "INSERT INTO conf_log (note) VALUES ($1)", [(f"many {i}",) for i in range(300)]
        )
        try:
            await conn.executemany(
                "INSERT INTO conf_items (id, name) VALUES ($1, $2)",
                [(1000 + i, "ok") for i in range(5)] + [(1, "duplicate")] + [(2000, "after")],
            )
        except asyncpg.PostgresError as exc:
            out["executemany_error"] = error(exc)
        out["counts"] = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM conf_log), (SELECT count(*) FROM conf_items)"
        )
        return out
    finally:
        await conn.close()


async def scenario_cursor(dsn):
    conn = await connect(dsn)
    try:
        out = {}
        async with conn.transaction():
            cur = await conn.cursor("SELECT id, name FROM conf_items WHERE id > $1 ORDER BY id", 100)
            out["first"] = await cur.fetch(5)
            out["forward"] = await cur.forward(10)
            out["row"] = await cur.fetchrow()
            out["iterated"] = [r["id"] async for r in conn.cursor(ITEMS, 200, prefetch=7)]
            out["wide"] = digest(repr([r async for r in conn.cursor(
                "SELECT i, repeat('y', 300) FROM generate_series(1, 5000) i", prefetch=333
            )]).encode())
        try:
            async with conn.transaction():
                cur = await conn.cursor("SELECT 10 / (id - 5) FROM conf_items ORDER BY id")
                out["before_error"] = await cur.fetch(3)
                await cur.fetch(5)
        except asyncpg.PostgresError as exc:
            out["error"] = error(exc)
        out["after"] = await conn.fetchval("SELECT count(*) FROM conf_items")
        return out
    finally:
        await conn.close()


async def scenario_copy_in(dsn):
    conn = await connect(dsn)
    try:
        out = {}
        out["records"] = await conn.copy_records_to_table(
            "conf_log", records=[(f"record {i}",) for i in range(20000)], columns=["note"]
        )
        source = io.BytesIO("".join(f"text {i}\n" for i in range(5000)).encode())
        out["text"] = await conn.copy_to_table("conf_log", source=source, columns=["note"])
        try:
            await conn.copy_records_to_table("conf_items", records=[(1, "duplicate")], columns=["id", "name"])
        except asyncpg.PostgresError as exc:
            out["duplicate"] = error(exc)
        try:
            bad = io.BytesIO(b"not a number\tname\n")
            await conn.copy_to_table("conf_items", source=bad, columns=["id", "name"])
        except asyncpg.PostgresError as exc:
            out["bad_data"] = error(exc)
        out["notes"] = await conn.fetchrow(
            "SELECT count(*), md5(string_agg(note, '|' ORDER BY id)) FROM conf_log"
        )
        return out
    finally:
        await conn.close()


async def scenario_copy_out(dsn):
    conn = await connect(dsn)
    try:
        out = {}
        sink = io.BytesIO()
        out["query_status"] = await conn.copy_from_query(
            "SELECT * FROM conf_items WHERE id > $1 ORDER BY id", 10, output=sink, format="csv"
        )
        out["query"] = digest(sink.getvalue())
        sink = io.BytesIO()
        out["table_status"] = await conn.copy_from_table("conf_items", output=sink, format="binary")
        out["table"] = digest(sink.getvalue())
        chunks = []

        async def collect(chunk):
            chunks.append(bytes(chunk))

        await conn.copy_from_query("SELECT i, repeat('w', 200) FROM generate_series(1, 50000) i", output=collect)
        out["large"] = digest(b"".join(chunks))
        return out
    finally:
        await conn.close()


async def scenario_listen_notify(dsn):
    listener = await connect(dsn)
    notifier = await connect(dsn)
    try:
        got = []
        arrived = asyncio.Event()
        notifier_pid = notifier.get_server_pid()

        def on_notify(_conn, pid, channel, payload):
            got.append([channel, payload, pid == notifier_pid])
            if len(got) >= 4:
                arrived.set()

        logs = []
        listener.add_log_listener(lambda _conn, msg: logs.append([msg.severity, msg.message]))
        await listener.add_listener("conf_chan", on_notify)
        await listener.add_listener("Conf Other", on_notify)
        await notifier.execute("NOTIFY conf_chan, 'hello'")
        await notifier.execute("SELECT pg_notify('Conf Other', $1)", "ünïcode payload")
        async with notifier.transaction():
            await notifier.execute("NOTIFY conf_chan, 'in tx'")
            await notifier.execute("NOTIFY conf_chan, 'in tx'")
        await notifier.execute("SELECT pg_notify('conf_chan', repeat('z', 7000))")
        await asyncio.wait_for(arrived.wait(), 10)
        out = {"notifications": got}
        out["notice_result"] = await listener.fetchval("SELECT conf_notice('from listener')")
        out["logs"] = logs
        out["distinct_backends"] = listener.get_server_pid() != notifier_pid
        return out
    finally:
        await listener.close()
        await notifier.close()


async def scenario_cancel(dsn):
    conn = await connect(dsn)
    try:
        out = {}
        started = time.monotonic()
        try:
            await asyncio.wait_for(conn.fetchval("SELECT pg_sleep(30)"), 0.5)
            out["wait_for"] = "not cancelled"
        except asyncio.TimeoutError:
            out["wait_for"] = "TimeoutError"
        out["wait_for_after"] = await conn.fetchval("SELECT 'still usable'")
        try:
            await conn.execute("SELECT pg_sleep(30)", timeout=0.5)
            out["timeout"] = "not cancelled"
        except asyncio.TimeoutError:
            out["timeout"] = "TimeoutError"
        out["timeout_after"] = await conn.fetchval("SELECT count(*) FROM conf_items")
        out["quick"] = time.monotonic() - started < 15
        async with conn.transaction():
            try:
                await conn.fetch("SELECT pg_sleep(30)", timeout=0.5)
            except asyncio.TimeoutError:
                out["in_tx"] = "TimeoutError"
        out["in_tx_after"] = await conn.fetchval("SELECT 'after tx'")
        return out
    finally:
        await conn.close()


async def scenario_errors(dsn):
    conn = await connect(dsn)
    try:
        out = {}
        for name, sql in [
            ("division", "SELECT 1 / 0"),
            ("undefined_table", "SELECT * FROM no_such_table"),
            ("unique", "INSERT INTO conf_items (id, name) VALUES (1, 'dup')"),
            ("cast", "SELECT 'abc'::int"),
        ]:
            try:
                await conn.fetch(sql)
                out[name] = "no error"
            except asyncpg.PostgresError as exc:
                out[name] = error(exc)
                out[name + "_fields"] = [exc.as_dict().get(k) for k in ("detail", "constraint_name", "table_name")]
        async with conn.transaction():
            await conn.execute("INSERT INTO conf_log (note) VALUES ('kept')")
            try:
                async with conn.transaction():
                    await conn.execute("INSERT INTO conf_log (note) VALUES ('rolled back')")
                    await conn.execute("SELECT 1 / 0")
            except asyncpg.PostgresError as exc:
                out["savepoint"] = error(exc)
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO conf_log (note) VALUES ('outer rolled back')")
                await conn.execute("SELECT * FROM no_such_table")
        except asyncpg.PostgresError as exc:
            out["outer"] = error(exc)
        out["notes"] = await conn.fetch("SELECT note FROM conf_log ORDER BY id")
        out["in_transaction"] = conn.is_in_transaction()
        return out
    finally:
        await conn.close()
