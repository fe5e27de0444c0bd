"""A pid reuse attempt against the agent (end-to-end test `pid_reuse`).

Run as root inside the runner cgroup, with no token in its own environment:

    python3 pid_reuse.py HOST PORT TOKEN_FILE DELAY

1. A child process connects to HOST:PORT (the protected database: the kernel redirects it to
   the agent and records the child's pid), passes the socket to this process over a Unix
   socket (SCM_RIGHTS) and exits.
2. After DELAY seconds, this process makes the kernel hand the child's pid to the next process it creates, by writing
   pid - 1 to /proc/sys/kernel/ns_last_pid (CAP_SYS_ADMIN), and forks an impostor under that pid:
   the same executable (so the same comm), the same uid and cgroup, and a valid token file named
   by AZURE_FEDERATED_TOKEN_FILE in its environment — standing for a victim process, it does not
   hold the connection.
3. It sends the StartupMessage over the inherited socket and prints what the agent answered.

Other processes on the machine may take the pid first; the attempt is then repeated with a new
connection. Prints `REUSED <pid>` once the impostor holds the pid, then `SQLSTATE <code>` and
`MESSAGE <text>` of the agent's ErrorResponse, or `ACCEPTED` if authentication succeeded.
"""

import array
import os
import signal
import socket
import struct
import sys
import time

HOST, PORT, TOKEN_FILE, DELAY = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
ATTEMPTS = 50


def send_fd(unix, fd):
    unix.sendmsg([b"f"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def recv_fd(unix):
    _, ancdata, _, _ = unix.recvmsg(1, socket.CMSG_SPACE(struct.calcsize("i")))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            return array.array("i", data[: struct.calcsize("i")])[0]
    raise RuntimeError("no descriptor received")


def connect_in_child():
    """Returns (pid of the child that connected and exited, the connected socket)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = os.fork()
    if child == 0:
        ours.close()
        conn = socket.create_connection((HOST, PORT), timeout=10)
        send_fd(theirs, conn.fileno())
        os._exit(0)
    theirs.close()
    fd = recv_fd(ours)
    ours.close()
    os.waitpid(child, 0)
    conn = socket.socket(fileno=fd)
    # A descriptor received with SCM_RIGHTS is inheritable; the impostor stands for a process
    # that is not the attacker's, so it must not get the connection.
    conn.set_inheritable(False)
    return child, conn


def impostor_at(pid):
    """Forks a process with a valid token under `pid`; returns (its pid, ready pipe) or None."""
    read_end, write_end = os.pipe()
    with open("/proc/sys/kernel/ns_last_pid", "w") as last:
        last.write(str(pid - 1))
    got = os.fork()
    if got == 0:
        os.close(read_end)
        os.dup2(write_end, 1)
        env = {"PATH": os.environ.get("PATH", ""), "AZURE_FEDERATED_TOKEN_FILE": TOKEN_FILE}
        code = "import sys, time; print('ready', flush=True); time.sleep(60)"
        os.execve(sys.executable, [sys.executable, "-c", code], env)
    os.close(write_end)
    if got != pid:
        os.kill(got, signal.SIGKILL)
        os.waitpid(got, 0)
        os.close(read_end)
        return None
    # Wait until it has exec'd: its environment and comm are then the impostor's.
    with os.fdopen(read_end) as ready:
        if ready.readline().strip() != "ready":
            raise RuntimeError("the impostor did not start")
    return got


def startup_message():
    params = b"user\0ci\0database\0shop\0\0"
    return struct.pack("!ii", 8 + len(params), 196608) + params


def read_answer(conn):
    conn.settimeout(20)
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if data[:1] in (b"E", b"R") and len(data) >= 5:
            length = struct.unpack("!i", data[1:5])[0]
            if len(data) >= 1 + length:
                break
    return data


def main():
    for _ in range(ATTEMPTS):
        pid, conn = connect_in_child()
        time.sleep(DELAY)
        impostor = impostor_at(pid)
        if impostor is None:
            conn.close()
            continue
        print(f"REUSED {pid}", flush=True)
        try:
            conn.sendall(startup_message())
            answer = read_answer(conn)
        finally:
            os.kill(impostor, signal.SIGKILL)
            os.waitpid(impostor, 0)
        if answer[:1] == b"E":
            fields = {}
            for field in answer[5:].split(b"\0"):
                if field:
                    fields[chr(field[0])] = field[1:].decode("utf-8", "replace")
            print(f"SQLSTATE {fields.get('C', '')}", flush=True)
            print(f"MESSAGE {fields.get('M', '')}", flush=True)
        elif answer[:1] == b"R":
            print("ACCEPTED", flush=True)
        else:
            print(f"ANSWER {answer!r}", flush=True)
        return 0
    print(f"could not reuse a pid in {ATTEMPTS} attempts", flush=True)
    return 2


sys.exit(main())
