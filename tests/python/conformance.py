"""Conformance scenario runner for the real Python PostgreSQL drivers.

Usage: python conformance.py CLIENT SCENARIO DSN

CLIENT is `psycopg` (psycopg 3) or `asyncpg`; SCENARIO names a function of the client's module
(`psycopg_scenarios.py`, `asyncpg_scenarios.py`); DSN is a `postgresql://` URI. The jitgate
conformance suite runs the same scenario once straight against PostgreSQL (with the password)
and once through the agent (inside the runner cgroup, no password) and compares the two outputs
byte for byte, so the output is canonical JSON: keys sorted, values converted to stable text
(Decimal, dates, bytes as hex), nothing that differs between two correct runs (backend pids,
timings) except as booleans. Server errors a scenario expects are part of its result
(`{"error": SQLSTATE, "message": ...}`); an unexpected exception escapes, prints a traceback and
exits non-zero.
"""

import datetime
import decimal
import hashlib
import json
import sys
import uuid


def canon(value):
    """A JSON-able, run-independent form of a driver value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    if hasattr(value, "items") and hasattr(value, "keys"):  # asyncpg Record
        return [canon(v) for v in value.values()]
    return repr(value)


def digest(data):
    """Length and SHA-256 of a large byte payload, so big COPY outputs stay comparable."""
    data = bytes(data)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def error(exc):
    """The comparable part of a server error: SQLSTATE, class, primary message."""
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary is None:
        primary = str(exc).splitlines()[0] if str(exc) else ""
    return {"error": sqlstate, "class": type(exc).__name__, "message": primary}


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    client, scenario, dsn = argv[1:]
    if client == "psycopg":
        import psycopg_scenarios as module
    elif client == "asyncpg":
        import asyncpg_scenarios as module
    else:
        sys.stderr.write(f"unknown client {client!r}\n")
        return 2
    run = getattr(module, "scenario_" + scenario, None)
    if run is None:
        sys.stderr.write(f"{client} has no scenario {scenario!r}\n")
        return 2
    result = module.execute(run, dsn)
    sys.stdout.write(json.dumps(canon(result), sort_keys=True, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
