"""Runs the masking corpus (masking_corpus.json) with one client and prints what it received.

Usage: python masking_corpus.py CLIENT CORPUS HOST PORT DB USER

CLIENT is `psql`, `psycopg_text`, `psycopg_binary` (`cursor(binary=True)`) or `asyncpg`
(binary results). Every entry runs on a fresh connection (no password: the job runs inside the
runner cgroup with its token, the agent connects upstream). One JSON object per entry is
printed on its own line:

    {"id": ..., "steps": [{"sql": ..., "rows": [[cell, ...]], "status": ..., "error": {...},
     "copy": ..., "stdout": ..., "stderr": ...}],
     "notices": [{...}], "notifications": [{"channel": ..., "payload": ...}],
     "parameters": {"application_name": ...}, "client_error": ...}

Everything the driver exposes is kept: every field of an ErrorResponse or NoticeResponse, each
cell as text (text format) or as the repr of the decoded value (binary format), COPY data
decoded as UTF-8 with replacement, notification payloads and the reported parameters. The Rust
side (tests/tests/end_to_end/masking_corpus.rs) looks for protected values in all of it.
"""

import asyncio
import io
import json
import subprocess
import sys
import time

import asyncpg
import psycopg

PORTAL_ROWS = 2


def statements(entry):
    """The entry's statements, in order."""
    sql = entry.get("sql")
    if sql is None:
        return []
    return sql if isinstance(sql, list) else [sql]


def copy_statement(entry):
    """`COPY (query) TO STDOUT (FORMAT f)` or `COPY table TO STDOUT (FORMAT f)`."""
    copy = entry["copy"]
    source = f"({copy['query']})" if "query" in copy else copy["table"]
    return f"COPY {source} TO STDOUT (FORMAT {copy['format']})"


def cell(value, binary):
    if value is None:
        return None
    if isinstance(value, str) and not binary:
        return value
    return repr(value)


def decoded(data):
    return bytes(data).decode("utf-8", "replace")


def new_result(entry):
    return {"id": entry["id"], "steps": [], "notices": [], "notifications": [],
            "parameters": {}, "client_error": None}


# psql ------------------------------------------------------------------------------------------

def psql_script(entry):
    lines = ["\\set VERBOSITY verbose", "\\set SHOW_CONTEXT always"]
    if "listen" in entry:
        lines.append(f"LISTEN {entry['listen']};")
    via = entry.get("via", "query")
    if via == "copy":
        lines.append(copy_statement(entry) + ";")
    elif via == "portal":
        # psql reads a SELECT through a cursor, FETCH_COUNT rows at a time.
        lines.append(f"\\set FETCH_COUNT {PORTAL_ROWS}")
        lines += [s + ";" for s in statements(entry)]
    elif via == "simple":
        # `\;` keeps psql from splitting: the statements go in one Query message.
        lines.append(" \\; ".join(statements(entry)) + ";")
    elif via == "prepared_twice":
        lines.append(f"PREPARE corpus_twice AS {statements(entry)[0]};")
        lines += ["EXECUTE corpus_twice;", "EXECUTE corpus_twice;"]
    else:
        lines += [s + ";" for s in statements(entry)]
    if "parameter" in entry:
        # psql has no way to show a ParameterStatus; ask the server.
        lines.append(f"SHOW {entry['parameter']};")
    return "\n".join(lines) + "\n"


def psql_errors(stderr):
    """ERROR lines of verbose psql output: `psql:<stdin>:N: ERROR:  SQLSTATE: message`."""
    errors = []
    for line in stderr.splitlines():
        _, marker, rest = line.partition("ERROR:  ")
        if not marker:
            continue
        code, _, message = rest.partition(": ")
        if len(code) == 5:
            errors.append({"sqlstate": code, "message": message})
        else:
            errors.append({"sqlstate": None, "message": rest})
    return errors


def run_psql(entry, host, port, db, user):
    result = new_result(entry)
    script = psql_script(entry)
    command = ["psql", "-X", "-w", "-q", "-A", "-t", "-h", host, "-p", port, "-d", db, "-U", user,
               "-f", "-"]
    try:
        done = subprocess.run(command, input=script.encode(), capture_output=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        result["client_error"] = f"psql timed out: {exc}"
        return result
    stdout, stderr = decoded(done.stdout), decoded(done.stderr)
    errors = psql_errors(stderr)
    notification = "Asynchronous notification"
    # stdout is the rows (or the COPY data) and the notifications psql prints.
    data = "".join(line for line in stdout.splitlines(keepends=True) if not line.startswith(notification))
    step = {"sql": script, "rows": None, "stderr": stderr, "error": errors[0] if errors else None,
            "errors": errors, "status": f"exit {done.returncode}"}
    if entry.get("via") == "copy":
        step["copy"] = data
    else:
        step["rows"] = [line.split("|") for line in data.splitlines() if line]
    result["steps"].append(step)
    result["notices"] = [{"line": line} for line in stderr.splitlines()
                         if any(f"{level}:  " in line for level in ("NOTICE", "WARNING", "INFO"))]
    result["notifications"] = [{"line": line} for line in stdout.splitlines() if line.startswith(notification)]
    if done.returncode not in (0, 1, 3):
        result["client_error"] = f"psql exited {done.returncode}"
    return result


# psycopg ---------------------------------------------------------------------------------------

def diag_fields(diag):
    names = ["severity", "severity_nonlocalized", "sqlstate", "message_primary", "message_detail",
             "message_hint", "statement_position", "internal_position", "internal_query",
             "context", "schema_name", "table_name", "column_name", "datatype_name",
             "constraint_name", "source_file", "source_line", "source_function"]
    fields = {name: getattr(diag, name, None) for name in names}
    return {name: value for name, value in fields.items() if value is not None}


def psycopg_error(exc):
    diag = getattr(exc, "diag", None)
    fields = diag_fields(diag) if diag is not None else {}
    return {"sqlstate": getattr(exc, "sqlstate", None), "message": fields.get("message_primary", str(exc)),
            "text": str(exc), "class": type(exc).__name__, "fields": fields}


def psycopg_rows(cur, binary):
    if cur.description is None:
        return None
    return [[cell(v, binary) for v in row] for row in cur.fetchall()]


def psycopg_step(result, sql, action):
    step = {"sql": sql, "rows": None, "error": None, "status": None}
    try:
        action(step)
    except psycopg.Error as exc:
        step["error"] = psycopg_error(exc)
    result["steps"].append(step)


def run_psycopg(entry, dsn, binary):
    result = new_result(entry)
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        result["client_error"] = repr(exc)
        return result
    with conn:
        conn.add_notice_handler(lambda diag: result["notices"].append(diag_fields(diag)))
        conn.add_notify_handler(lambda n: result["notifications"].append(
            {"channel": n.channel, "payload": n.payload}))
        if "listen" in entry:
            conn.execute(f"LISTEN {entry['listen']}")
        via = entry.get("via", "query")

        def query(sql, prepare=None):
            def action(step):
                cur = conn.cursor(binary=binary)
                cur.execute(sql, prepare=prepare)
                step["status"] = cur.statusmessage
                step["rows"] = psycopg_rows(cur, binary)
            psycopg_step(result, sql, action)

        def portal(sql):
            def action(step):
                # A named (server-side) cursor: DECLARE, then FETCH itersize rows at a time.
                with conn.transaction():
                    with conn.cursor(name="corpus_portal", binary=binary) as cur:
                        cur.itersize = PORTAL_ROWS
                        cur.execute(sql)
                        rows = list(cur.fetchmany(PORTAL_ROWS))
                        rows += list(cur)
                        step["rows"] = [[cell(v, binary) for v in row] for row in rows]
            psycopg_step(result, sql, action)

        def simple(sql):
            def action(step):
                # A client-side-binding cursor sends the statements in one simple Query
                # (results in text format, whatever the client's format otherwise).
                cur = psycopg.ClientCursor(conn)
                cur.execute(sql)
                rows = []
                while True:
                    if cur.description is not None:
                        rows += [[cell(v, False) for v in row] for row in cur.fetchall()]
                    if not cur.nextset():
                        break
                step["rows"] = rows
            psycopg_step(result, sql, action)

        def copy_out(sql):
            def action(step):
                with conn.cursor() as cur:
                    with cur.copy(sql) as copy:
                        step["copy"] = decoded(b"".join(bytes(block) for block in copy))
            psycopg_step(result, sql, action)

        try:
            if via == "copy":
                copy_out(copy_statement(entry))
            elif via == "portal":
                portal(statements(entry)[0])
            elif via == "simple":
                simple("; ".join(statements(entry)))
            elif via == "prepared_twice":
                query(statements(entry)[0], prepare=True)
                query(statements(entry)[0], prepare=True)
            else:
                for sql in statements(entry):
                    query(sql)
            if "listen" in entry:
                time.sleep(0.3)
                query("SELECT 'drain notifications'")
                result["steps"].pop()
            result["parameters"]["application_name"] = conn.info.parameter_status("application_name")
        except psycopg.Error as exc:
            result["client_error"] = repr(exc)
    return result


# asyncpg ---------------------------------------------------------------------------------------

def asyncpg_error(exc):
    if isinstance(exc, asyncpg.PostgresError):
        fields = {k: v for k, v in exc.as_dict().items() if v is not None}
        return {"sqlstate": exc.sqlstate, "message": fields.get("message", str(exc)),
                "text": str(exc), "class": type(exc).__name__, "fields": fields}
    return {"sqlstate": None, "message": str(exc), "class": type(exc).__name__}


def record(row):
    return [cell(v, True) for v in row.values()]


async def asyncpg_step(result, sql, action):
    step = {"sql": sql, "rows": None, "error": None, "status": None}
    try:
        await action(step)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        step["error"] = asyncpg_error(exc)
    result["steps"].append(step)


async def run_asyncpg_entry(entry, host, port, db, user):
    result = new_result(entry)
    try:
        conn = await asyncpg.connect(host=host, port=int(port), database=db, user=user, timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        result["client_error"] = repr(exc)
        return result
    try:
        conn.add_log_listener(lambda _conn, message: result["notices"].append(
            {k: v for k, v in message.as_dict().items() if v is not None}))
        if "listen" in entry:
            await conn.add_listener(entry["listen"], lambda _c, _pid, channel, payload: result[
                "notifications"].append({"channel": channel, "payload": payload}))
        via = entry.get("via", "query")

        async def fetch(step, sql):
            step["rows"] = [record(r) for r in await conn.fetch(sql)]

        if via == "copy":
            copy = entry["copy"]

            async def action(step):
                out = io.BytesIO()
                if "query" in copy:
                    await conn.copy_from_query(copy["query"], output=out, format=copy["format"])
                else:
                    await conn.copy_from_table(copy["table"], output=out, format=copy["format"])
                step["copy"] = decoded(out.getvalue())
            await asyncpg_step(result, copy_statement(entry), action)
        elif via == "portal":
            sql = statements(entry)[0]

            async def action(step):
                # A portal read with row-limited Execute messages (PortalSuspended between).
                rows = []
                async with conn.transaction():
                    cur = await conn.cursor(sql)
                    while True:
                        chunk = await cur.fetch(PORTAL_ROWS)
                        if not chunk:
                            break
                        rows += [record(r) for r in chunk]
                step["rows"] = rows
            await asyncpg_step(result, sql, action)
        elif via == "simple":
            sql = "; ".join(statements(entry))

            async def action(step):
                # Without arguments execute() sends one simple Query; asyncpg returns only the
                # last command's status, never the rows.
                step["status"] = await conn.execute(sql)
            await asyncpg_step(result, sql, action)
        elif via == "prepared_twice":
            sql = statements(entry)[0]
            stmt = None

            async def prepare_and_fetch(step):
                nonlocal stmt
                if stmt is None:
                    stmt = await conn.prepare(sql)
                step["rows"] = [record(r) for r in await stmt.fetch()]
            await asyncpg_step(result, sql, prepare_and_fetch)
            await asyncpg_step(result, sql, prepare_and_fetch)
        else:
            for sql in statements(entry):
                await asyncpg_step(result, sql, lambda step, sql=sql: fetch(step, sql))
        if "listen" in entry:
            await asyncio.sleep(0.3)
        result["parameters"]["application_name"] = conn.get_settings().application_name
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        result["client_error"] = repr(exc)
    finally:
        conn.terminate()
    return result


def run_asyncpg(entry, host, port, db, user):
    return asyncio.run(asyncio.wait_for(run_asyncpg_entry(entry, host, port, db, user), 60))


# main ------------------------------------------------------------------------------------------

def main(argv):
    if len(argv) != 7:
        sys.stderr.write(__doc__)
        return 2
    client, corpus, host, port, db, user = argv[1:]
    with open(corpus, encoding="utf-8") as f:
        entries = json.load(f)["entries"]
    dsn = f"host={host} port={port} dbname={db} user={user}"
    for entry in entries:
        try:
            if client == "psql":
                result = run_psql(entry, host, port, db, user)
            elif client in ("psycopg_text", "psycopg_binary"):
                result = run_psycopg(entry, dsn, client == "psycopg_binary")
            elif client == "asyncpg":
                result = run_asyncpg(entry, host, port, db, user)
            else:
                sys.stderr.write(f"unknown client {client!r}\n")
                return 2
        except Exception as exc:  # noqa: BLE001 - recorded; the Rust side fails on it
            result = new_result(entry)
            result["client_error"] = f"{type(exc).__name__}: {exc}"
        sys.stdout.write(json.dumps(result, default=repr) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
