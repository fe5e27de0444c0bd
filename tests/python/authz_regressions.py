"""Authorization regressions found by review, spoken on a raw socket (stdlib only).

Usage: python3 authz_regressions.py PORT MODE

Each MODE sends one attack through the agent and prints every message it got back, one line
per step, so the calling test can assert that no protected value (VAULT-KEY-1, SECRET-…)
came back and that the refusals came as ErrorResponses:
  scs_simple / scs_extended  standard_conforming_strings turned off through the pg_settings
                             update rule, then a string the agent would read differently
  ext_sp                     a statement Parsed under search_path public, bound after SET
  ext_sqlprep                an SQL-level PREPARE bound through the extended protocol after SET
  fastpath_setconfig         set_config called through the fast-path FunctionCall
"""
import socket, struct, sys, time
PORT = int(sys.argv[1])
def msg(tag, body=b''): return tag + struct.pack('!i', len(body)+4) + body
def cstr(s): return (s.encode() if isinstance(s,str) else s) + b'\0'
def Q(sql): return msg(b'Q', cstr(sql))
def P(sql, name=''): return msg(b'P', cstr(name)+cstr(sql)+struct.pack('!h',0))
def B(portal='', stmt=''): return msg(b'B', cstr(portal)+cstr(stmt)+struct.pack('!hhh',0,0,0))
def E(portal=''): return msg(b'E', cstr(portal)+struct.pack('!i',0))
S = msg(b'S')
def err(b):
    f = {}
    for part in b.split(b'\0'):
        if part: f[chr(part[0])] = part[1:].decode(errors='replace')
    return f'{f.get("S")} {f.get("C")} {f.get("M")}'
def fmt(msgs):
    out = []
    for t, b in msgs:
        if t in (b'E', b'N'): out.append(f'{t.decode()}[{err(b)}]')
        elif t == b'D':
            n = struct.unpack('!h', b[:2])[0]; vals=[]; p=2
            for _ in range(n):
                l = struct.unpack('!i', b[p:p+4])[0]; p+=4
                if l < 0: vals.append(None)
                else: vals.append(b[p:p+l].decode(errors='replace')); p+=l
            out.append(f'D{vals}')
        elif t == b'C': out.append(f'C[{b[:-1].decode()}]')
        elif t == b'S': out.append(f'S[{b!r}]')
        elif t == b'Z': out.append(f'Z[{b.decode()}]')
        else: out.append(t.decode())
    return ' '.join(out)
class Conn:
    def __init__(self):
        self.s = socket.create_connection(('127.0.0.1', PORT), timeout=20); self.buf = b''
        body = struct.pack('!i', 196608) + cstr('user')+cstr('ci')+cstr('database')+cstr('shop')+b'\0'
        self.s.sendall(struct.pack('!i', len(body)+4)+body)
        self.drain(3)
    def send(self, *ms): self.s.sendall(b''.join(ms))
    def drain(self, timeout=3.0):
        out = []; self.s.settimeout(timeout)
        try:
            while True:
                while len(self.buf) >= 5:
                    t = self.buf[:1]; n = struct.unpack('!i', self.buf[1:5])[0]
                    if len(self.buf) < n+1: break
                    out.append((t, self.buf[5:n+1])); self.buf = self.buf[n+1:]
                d = self.s.recv(65536)
                if not d: out.append((b'!', b'EOF')); break
                self.buf += d
        except (socket.timeout, TimeoutError): pass
        except (ConnectionResetError, BrokenPipeError) as e: out.append((b'!', str(e).encode()))
        return out

which = sys.argv[2]
c = Conn()
if which == 'scs_simple':
    # Query 1 turns standard_conforming_strings off through the pg_settings rule; Query 2 is
    # pipelined in the same write, analysed with it on.
    payload = "SELECT '\\' AS a, ' ; DELETE FROM orders; INSERT INTO public.keys SELECT s FROM secrets LIMIT 1; INSERT INTO public.keys SELECT k FROM vault.keys; ALTER TABLE public.keys ADD COLUMN pwned_ddl int; --' AS b"
    c.send(Q("UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'"), Q(payload))
    print('scs_simple:', fmt(c.drain(5)))
elif which == 'scs_extended':
    payload = "SELECT '\\', ' , s FROM secrets --'"
    c.send(P("UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'"), B(), E(),
           P(payload), B(), E(), S)
    print('scs_extended:', fmt(c.drain(5)))
elif which == 'unused_scs_ext2':
    payload = "SELECT '\\\\', ' , s FROM secrets --'"
    c.send(Q("UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'"), P(payload), B(), E(), S)
    print('scs_ext2:', fmt(c.drain(5)))
elif which == 'unused_enc_simple':
    c.send(Q("UPDATE pg_settings SET setting = 'SJIS' WHERE name = 'client_encoding'"), Q("SELECT 1"))
    print('enc_simple:', fmt(c.drain(5)))
elif which == 'ext_sp':
    # A named statement parsed (and authorized) under search_path public, executed after a SET.
    c.send(P("SELECT k FROM keys", name='s1'), S)
    print('parse:', fmt(c.drain(2)))
    c.send(Q("SET search_path = vault, public"))
    print('set:', fmt(c.drain(2)))
    c.send(B(stmt='s1'), E(), S)
    print('bind/execute s1:', fmt(c.drain(3)))
elif which == 'ext_sqlprep':
    # A SQL-level PREPARE bound through the extended protocol after a SET.
    c.send(Q("PREPARE p AS SELECT k FROM keys"))
    print('prepare:', fmt(c.drain(2)))
    c.send(Q("SET search_path = vault"))
    print('set:', fmt(c.drain(2)))
    c.send(Q("EXECUTE p"))
    print('sql execute p:', fmt(c.drain(2)))
    c.send(B(stmt='p'), E(), S)
    print('bind/execute p:', fmt(c.drain(3)))
elif which == 'fastpath_setconfig':
    def F(oid, args):
        b = struct.pack('!I', oid) + struct.pack('!h', 0) + struct.pack('!h', len(args))
        for a in args:
            a = a.encode(); b += struct.pack('!i', len(a)) + a
        return msg(b'F', b + struct.pack('!h', 0))
    c.send(Q("SELECT 'pg_catalog.set_config(text,text,boolean)'::regprocedure::oid"))
    r = c.drain(2); print('oid:', fmt(r))
    oid = int([b for t, b in r if t == b'D'][0][6:].decode())
    c.send(F(oid, ['search_path', 'vault', 'false']))
    print('fastpath set_config search_path:', fmt(c.drain(2)))
    c.send(Q("SELECT k FROM keys"))
    print('select k from keys:', fmt(c.drain(2)))
    c.send(F(oid, ['role', 'jitgate_ci', 'false']))
    print('fastpath set_config role:', fmt(c.drain(2)))
    c.send(Q("SELECT current_user"))
    print('current_user:', fmt(c.drain(2)))
