"""A fast-path FunctionCall right after an extended-protocol COPY, on a raw socket with the
standard library only.

Usage: python3 fastpath_after_copy.py HOST PORT DB USER

The COPY is sent as tokio-postgres sends it: Parse/Bind/Execute/Sync, then CopyDone and Sync.
The server ignores the first Sync (it arrives during COPY-in; PostgreSQL docs 55.2.6), so a
proxy that expects an answer to it falls out of step. Then `SELECT 1/0` and a FunctionCall of
lo_create (OID 715) for large object 525252 are sent together, then `SELECT 41 + 1`. Prints one
JSON object: for each of the three, the messages received (type letters) and the SQLSTATE and
message of any ErrorResponse.
"""

import json
import socket
import struct
import sys

from pgwire_raw import PROTOCOL_3_0, read_message

LO_CREATE_OID = 715
LARGE_OBJECT = 525252


def message(tag, body=b""):
    return tag + struct.pack("!I", len(body) + 4) + body


def cstr(text):
    return text.encode() + b"\0"


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def until_ready(sock, stop=("Z",)):
    """Messages up to the first whose type is in `stop`: type letters and errors."""
    kinds, errors = [], []
    while True:
        tag, body = read_message(sock)
        kind = tag.decode()
        kinds.append(kind)
        if kind == "E":
            f = error_fields(body)
            errors.append({"sqlstate": f.get("C"), "message": f.get("M")})
        if kind in stop:
            return {"messages": "".join(kinds), "errors": errors}


def main():
    host, port, db, user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sock = socket.create_connection((host, port), timeout=30)
    params = cstr("user") + cstr(user) + cstr("database") + cstr(db) + b"\0"
    body = struct.pack("!I", PROTOCOL_3_0) + params
    sock.sendall(struct.pack("!I", len(body) + 4) + body)
    until_ready(sock)

    sync = message(b"S")
    parse = message(b"P", cstr("") + cstr("COPY orders FROM STDIN") + struct.pack("!H", 0))
    bind = message(b"B", cstr("") + cstr("") + struct.pack("!HHH", 0, 0, 0))
    execute = message(b"E", cstr("") + struct.pack("!I", 0))
    sock.sendall(parse + bind + execute + sync)
    copy_start = until_ready(sock, stop=("G", "Z"))
    sock.sendall(message(b"c") + sync)
    copy_end = until_ready(sock)

    call = message(
        b"F",
        struct.pack("!IHHH", LO_CREATE_OID, 1, 1, 1)
        + struct.pack("!i", 4)
        + struct.pack("!I", LARGE_OBJECT)
        + struct.pack("!H", 1),
    )
    sock.sendall(message(b"Q", cstr("SELECT 1/0")) + call)
    division = until_ready(sock)
    function_call = until_ready(sock)
    sock.sendall(message(b"Q", cstr("SELECT 41 + 1")))
    after = until_ready(sock)
    sock.sendall(message(b"X"))
    sock.close()
    print(
        json.dumps(
            {
                "copy_start": copy_start,
                "copy_end": copy_end,
                "division": division,
                "function_call": function_call,
                "after": after,
            }
        )
    )


if __name__ == "__main__":
    main()
