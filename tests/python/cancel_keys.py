"""Cancel keys as a client sees them, spoken on a raw socket with the standard library only.

Usage: python3 cancel_keys.py HOST PORT DB

Opens a session (StartupMessage as user `ci`, no password: the jitgate agent authenticates
upstream), keeps the BackendKeyData it is given, asks `SELECT pg_backend_pid()`, then runs
`SELECT pg_sleep(20)` and, while it runs, sends CancelRequests (PostgreSQL docs 55.2.7) with
made-up keys — the right pid with a wrong secret, the server's own pid, an unknown pid — each on
a new connection to HOST:PORT, waiting for that connection to be closed. Only then is the real
key sent. Prints one JSON object: the pid from BackendKeyData, the server's backend pid, whether
the query ended before the real cancel, and the SQLSTATE and duration of its end.
"""

import json
import select
import socket
import struct
import sys
import time

from pgwire_raw import PROTOCOL_3_0, read_message

CANCEL_REQUEST_CODE = 80877102
SLEEP_SECONDS = 20


def error_fields(body):
    fields = {}
    for field in body.split(b"\0"):
        if field:
            fields[field[:1].decode()] = field[1:].decode(errors="replace")
    return fields


def until_ready(sock):
    """Messages up to ReadyForQuery: (first column of each DataRow, SQLSTATE of an error)."""
    rows, sqlstate = [], None
    while True:
        tag, body = read_message(sock)
        if tag == b"D":
            (length,) = struct.unpack("!i", body[2:6])
            rows.append(body[6 : 6 + length].decode())
        elif tag == b"E":
            sqlstate = error_fields(body).get("C")
        elif tag == b"Z":
            return rows, sqlstate


def send_query(sock, sql):
    payload = sql.encode() + b"\0"
    sock.sendall(b"Q" + struct.pack("!I", 4 + len(payload)) + payload)


def start_session(host, port, db):
    sock = socket.create_connection((host, port), timeout=60)
    params = b"user\0ci\0database\0" + db.encode() + b"\0\0"
    sock.sendall(struct.pack("!II", 8 + len(params), PROTOCOL_3_0) + params)
    key = None
    while True:
        tag, body = read_message(sock)
        if tag == b"K":
            key = struct.unpack("!II", body)
        elif tag == b"E":
            raise RuntimeError(f"session refused: {error_fields(body)}")
        elif tag == b"Z":
            return sock, key


def cancel(host, port, pid, secret):
    """Sends one CancelRequest and waits until the other side closes the connection."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid, secret))
        while sock.recv(64):
            pass


def main():
    host, port, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sock, key = start_session(host, port, db)
    if key is None:
        raise RuntimeError("no BackendKeyData")
    pid, secret = key
    send_query(sock, "SELECT pg_backend_pid()")
    rows, _ = until_ready(sock)
    server_pid = int(rows[0])

    started = time.monotonic()
    send_query(sock, f"SELECT pg_sleep({SLEEP_SECONDS})")
    time.sleep(1.0)
    for made_up in [
        (pid, secret ^ 0x5A5A5A5A),
        (server_pid, secret),
        ((pid % 0x7FFFFFFE) + 1, secret),
    ]:
        cancel(host, port, *made_up)
    time.sleep(1.0)
    readable, _, _ = select.select([sock], [], [], 0)
    ended_before_real_cancel = bool(readable)
    cancel(host, port, pid, secret)
    _, sqlstate = until_ready(sock)
    print(
        json.dumps(
            {
                "agent_pid": pid,
                "server_pid": server_pid,
                "ended_before_real_cancel": ended_before_real_cancel,
                "sqlstate": sqlstate,
                "seconds": round(time.monotonic() - started, 1),
            },
            sort_keys=True,
        )
    )
    sock.sendall(b"X\0\0\0\4")
    sock.close()


if __name__ == "__main__":
    main()
