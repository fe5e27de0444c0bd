"""Reading PostgreSQL protocol messages from a raw socket (PostgreSQL docs 55.7), shared by the
standard-library-only test clients."""

import struct

PROTOCOL_3_0 = 196608


def recv_exact(sock, n):
    """Exactly `n` bytes from `sock`; EOFError when it closes first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed mid-message")
        data += chunk
    return data


def read_message(sock):
    """One tagged message: its type byte (as bytes) and its body."""
    header = recv_exact(sock, 5)
    (length,) = struct.unpack("!I", header[1:])
    return header[:1], recv_exact(sock, length - 4)
