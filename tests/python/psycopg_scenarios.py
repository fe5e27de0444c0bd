"""psycopg 3 conformance scenarios: each `scenario_NAME(dsn)` returns a JSON-able result.

The tables (`conf_items`, `conf_log`, `conf_counters`) and the `conf_notice` function are
created fresh by the Rust side before every run (tests/tests/conformance/support.rs).
"""

import threading
import time

import psycopg
from psycopg import errors

from conformance import digest, error

ITEMS = (
    "SELECT id, name, price, tags, data, created, flag, blob, ratio, NULL::text AS nothing"
    " FROM conf_items WHERE id <= %s OR id %% 50 = 0 ORDER BY id"
)
PARAMS = (
    "SELECT %s::int + 1 AS a, %s::text || 'x' AS b, %s::numeric * 2 AS c, %s::jsonb AS d,"
    " %s::date AS e, %s::bytea AS f, %s::int[] AS g, %s::text AS h"
)
PARAM_VALUES = (41, "é ü", "12.50", '{"k": [1, 2]}', "2024-02-29", b"\x00\xff", [1, None, 3], None)


def execute(run, dsn):
    return run(dsn)


def connect(dsn, **kwargs):
    return psycopg.connect(dsn, connect_timeout=10, **kwargs)


def described(cur):
    return [[c.name, c.type_code] for c in cur.description or []]


def scenario_types(dsn):
    with connect(dsn) as conn:
        cur = conn.execute(ITEMS, (6,))
        out = {"items": cur.fetchall(), "items_shape": described(cur)}
        cur = conn.execute(PARAMS, PARAM_VALUES)
        out["params"] = cur.fetchall()
        out["params_shape"] = described(cur)
        cur = conn.execute("SELECT count(*), sum(price), min(created) FROM conf_items")
        out["aggregate"] = cur.fetchone()
        out["rowcount"] = conn.execute("UPDATE conf_items SET flag = NOT flag WHERE id < 10").rowcount
        out["empty"] = conn.execute("SELECT * FROM conf_items WHERE false").fetchall()
        return out


def scenario_binary(dsn):
    with connect(dsn) as conn:
        cur = conn.cursor(binary=True)
        cur.execute(ITEMS, (6,))
        out = {"items": cur.fetchall(), "items_shape": described(cur)}
        cur.execute(PARAMS, PARAM_VALUES, binary=True)
        out["params"] = cur.fetchall()
        cur.execute("SELECT generate_series(1, 3000) AS n, repeat('x', 100) AS pad")
        out["many"] = digest(repr(cur.fetchall()).encode())
        return out


def scenario_pipeline(dsn):
    out = {}
    with connect(dsn, autocommit=True) as conn:
        curs = [conn.cursor() for _ in range(4)]
        # psycopg raises a pipeline's error at whichever call finds the results in: a sync()
        # or the end of the block. That point (and so what later cursors hold) is timing, not
        # protocol, so the comparison covers the results before the failing Sync, the error,
        # and what the server did: the statement after the error must not have run.
        try:
            with conn.pipeline() as pipeline:
                curs[0].execute("SELECT count(*) FROM conf_items")
                curs[1].execute("INSERT INTO conf_log (note) VALUES (%s) RETURNING id", ("p1",))
                pipeline.sync()
                curs[2].execute("SELECT 1 / (%s::int - 1)", (1,))
                curs[3].execute("INSERT INTO conf_log (note) VALUES ('after error')")
                pipeline.sync()
        except errors.Error as exc:
            out["pipeline_error"] = error(exc)
        for i in (0, 1):
            try:
                out[f"cursor{i}"] = curs[i].fetchall()
            except errors.Error as exc:
                out[f"cursor{i}"] = error(exc)
        with conn.cursor() as cur:
            cur.execute("SELECT note FROM conf_log ORDER BY id")
            out["notes_after_pipeline"] = cur.fetchall()
        with conn.pipeline():
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO conf_log (note) VALUES (%s) RETURNING id",
                    [(f"many {i}",) for i in range(50)],
                    returning=True,
                )
                ids = []
                while True:
                    ids.extend(row[0] for row in cur.fetchall())
                    if not cur.nextset():
                        break
        out["executemany_ids"] = ids
    with connect(dsn) as conn:
        try:
            with conn.pipeline():
                conn.execute("INSERT INTO conf_log (note) VALUES ('in tx')")
                conn.execute("SELECT * FROM no_such_table")
                conn.execute("INSERT INTO conf_log (note) VALUES ('never')")
        except errors.Error as exc:
            out["tx_error"] = error(exc)
        out["tx_status"] = conn.info.transaction_status.name
        conn.rollback()
        out["notes"] = conn.execute("SELECT note, count(*) FROM conf_log GROUP BY 1 ORDER BY 1").fetchall()
    return out


def scenario_copy_in(dsn):
    out = {}
    with connect(dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY conf_log (note) FROM STDIN") as copy:
                for i in range(20000):
                    copy.write_row((f"text row {i} \t tab",))
            out["text_rows"] = cur.rowcount
            with cur.copy("COPY conf_log (note) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text"])
                for i in range(5000):
                    copy.write_row((f"binary row {i}",))
            out["binary_rows"] = cur.rowcount
            with cur.copy("COPY conf_log (note) FROM STDIN (FORMAT csv)") as copy:
                copy.write(b'"a,b"\n"multi\nline"\n')
            out["csv_rows"] = cur.rowcount
        conn.commit()
        try:
            with conn.cursor() as cur:
                with cur.copy("COPY conf_log (note) FROM STDIN") as copy:
                    copy.write_row(("will be discarded",))
                    raise RuntimeError("client gave up")
        except Exception as exc:  # noqa: BLE001 - the client's own exception is the result
            out["copy_fail"] = type(exc).__name__
        out["after_fail_status"] = conn.info.transaction_status.name
        conn.rollback()
        try:
            with conn.cursor() as cur:
                with cur.copy("COPY conf_items (id, name) FROM STDIN") as copy:
                    copy.write_row((1, "duplicate key"))
        except errors.Error as exc:
            out["copy_error"] = error(exc)
        conn.rollback()
        out["notes"] = conn.execute(
            "SELECT count(*), count(DISTINCT note), md5(string_agg(note, '|' ORDER BY id)) FROM conf_log"
        ).fetchone()
    return out


def scenario_copy_out(dsn):
    out = {}
    with connect(dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT * FROM conf_items ORDER BY id) TO STDOUT") as copy:
                out["text"] = digest(b"".join(bytes(b) for b in copy))
            with cur.copy("COPY conf_items TO STDOUT (FORMAT BINARY)") as copy:
                out["binary"] = digest(b"".join(bytes(b) for b in copy))
            with cur.copy("COPY (SELECT id, name, price FROM conf_items WHERE id < 4 ORDER BY id) TO STDOUT") as copy:
                copy.set_types(["int4", "text", "numeric"])
                out["rows"] = list(copy.rows())
            with cur.copy("COPY (SELECT i, repeat('w', 200) FROM generate_series(1, 50000) i) TO STDOUT (FORMAT csv)") as copy:
                out["large"] = digest(b"".join(bytes(b) for b in copy))
    return out


def scenario_server_cursor(dsn):
    out = {}
    with connect(dsn) as conn:
        with conn.cursor(name="conf_named") as cur:
            cur.itersize = 7
            cur.execute("SELECT id, name FROM conf_items WHERE id > %s ORDER BY id", (150,))
            out["first"] = cur.fetchmany(3)
            out["one"] = cur.fetchone()
            out["rest"] = [row for row in cur]
        with conn.cursor(name="conf_scroll", scrollable=True) as cur:
            cur.execute("SELECT id FROM conf_items ORDER BY id")
            cur.scroll(100)
            out["scrolled"] = cur.fetchone()
            cur.scroll(-10)
            out["back"] = cur.fetchmany(2)
            cur.scroll(0, mode="absolute")
            out["absolute"] = cur.fetchone()
        conn.commit()
        with conn.cursor(name="conf_hold", withhold=True, binary=True) as cur:
            cur.execute("SELECT id, blob, data FROM conf_items WHERE id < 20 ORDER BY id")
            conn.commit()
            out["withhold"] = cur.fetchall()
        try:
            with conn.cursor(name="conf_bad") as cur:
                cur.execute("SELECT 1 / 0")
                cur.fetchall()
        except errors.Error as exc:
            out["error"] = error(exc)
        out["status"] = conn.info.transaction_status.name
    return out


def scenario_listen_notify(dsn):
    out = {}
    notices = []
    with connect(dsn, autocommit=True) as listener, connect(dsn, autocommit=True) as notifier:
        listener.add_notice_handler(lambda d: notices.append([d.severity_nonlocalized, d.message_primary]))
        listener.execute("LISTEN conf_chan")
        listener.execute('LISTEN "Conf Other"')
        notifier.execute("NOTIFY conf_chan, 'hello'")
        notifier.execute("SELECT pg_notify('Conf Other', %s)", ("ünïcode payload",))
        with notifier.transaction():
            for _ in range(3):
                notifier.execute("NOTIFY conf_chan, 'same'")
            notifier.execute("NOTIFY conf_chan")
        notifier.execute("SELECT pg_notify('conf_chan', repeat('z', 7000))")
        listener.execute("NOTIFY conf_chan, 'self'")
        got = []
        for n in listener.notifies(timeout=10, stop_after=6):
            got.append([n.channel, n.payload, n.pid == notifier.info.backend_pid])
        out["notifications"] = got
        out["notice_result"] = listener.execute("SELECT conf_notice('from listener')").fetchone()
        listener.execute("UNLISTEN *")
        notifier.execute("NOTIFY conf_chan, 'unheard'")
        out["after_unlisten"] = [n.payload for n in listener.notifies(timeout=0.5)]
    out["notices"] = notices
    return out


def scenario_cancel(dsn):
    out = {}
    with connect(dsn, autocommit=True) as conn:
        for how in ("cancel", "cancel_safe"):
            timer = threading.Timer(0.5, getattr(conn, how))
            timer.start()
            started = time.monotonic()
            try:
                conn.execute("SELECT pg_sleep(30)")
                out[how] = "not cancelled"
            except errors.Error as exc:
                out[how] = error(exc)
            finally:
                timer.cancel()
            out[how + "_quick"] = time.monotonic() - started < 10
            out[how + "_after"] = conn.execute("SELECT 'still usable'").fetchone()
    with connect(dsn) as conn:
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        try:
            conn.execute("SELECT count(*) FROM conf_items, pg_sleep(30)")
        except errors.Error as exc:
            out["in_tx"] = error(exc)
        timer.cancel()
        out["in_tx_status"] = conn.info.transaction_status.name
        conn.rollback()
        out["in_tx_after"] = conn.execute("SELECT count(*) FROM conf_items").fetchone()
    return out


def scenario_errors(dsn):
    out = {}
    with connect(dsn) as conn:
        for name, sql in [
            ("division", "SELECT 1 / 0"),
            ("undefined_table", "SELECT * FROM no_such_table"),
            ("undefined_column", "SELECT no_such_column FROM conf_items"),
            ("unique", "INSERT INTO conf_items (id, name) VALUES (1, 'dup')"),
            ("not_null", "INSERT INTO conf_items (id) VALUES (1000)"),
            ("cast", "SELECT 'abc'::int"),
        ]:
            try:
                conn.execute(sql)
                out[name] = "no error"
            except errors.Error as exc:
                out[name] = error(exc)
                out[name + "_detail"] = [exc.diag.message_detail, exc.diag.constraint_name, exc.diag.table_name]
                out[name + "_status"] = conn.info.transaction_status.name
                try:
                    conn.execute("SELECT 1")
                except errors.Error as aborted:
                    out[name + "_aborted"] = error(aborted)
                conn.rollback()
        with conn.transaction():
            conn.execute("INSERT INTO conf_log (note) VALUES ('kept')")
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO conf_log (note) VALUES ('rolled back')")
                    conn.execute("SELECT 1 / 0")
            except errors.Error as exc:
                out["savepoint"] = error(exc)
        out["notes"] = conn.execute("SELECT note FROM conf_log ORDER BY id").fetchall()
        conn.prepare_threshold = 0
        for i in range(5):
            out[f"prepared{i}"] = conn.execute("SELECT name FROM conf_items WHERE id = %s", (i + 1,)).fetchone()
        out["prepared_count"] = conn.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql"
        ).fetchone()
        out["empty_query"] = conn.execute("").statusmessage
        conn.rollback()
    return out
