"""Looking at the running services from outside: HTTP endpoints, Prometheus
text, the edge's SQLite history (read as the edge's own user, so no file
of its database ever becomes root's), the hub's `checksum` and `nodes`."""

import json
import os
import subprocess
import urllib.error
import urllib.request

from common import NotYet, TestFailure

# Run with the system python as the service user: pyenv's interpreter under
# /root is not reachable for that user.
SYSTEM_PYTHON = "/usr/bin/python3"

# The edge's checksum, as tests/e2e/sync.rs computes it (protocol::v1::
# window_digest): every window the edge queued for the hub.
EDGE_DB_CODE = r"""
import hashlib, json, math, sqlite3, struct, sys
db, site, node = sys.argv[1:4]
c = sqlite3.connect(db, timeout=10)
def one(sql, default=0):
    try:
        r = c.execute(sql).fetchone()
    except sqlite3.OperationalError:
        return default
    return r[0] if r and r[0] is not None else default
out = {
    "samples": one("SELECT count(*) FROM samples") + one("SELECT count(*) FROM inbox"),
    "first_sample_ms": min([v for v in (one("SELECT min(ts_ms) FROM samples", None),
                                         one("SELECT min(ts_ms) FROM inbox", None)) if v is not None], default=None),
    "outbox": one("SELECT count(*) FROM outbox", -1),
    "last_seq": one("SELECT last_seq FROM outbox_state"),
    "forecasts": one("SELECT count(*) FROM forecasts"),
}
total, n = 0, 0
try:
    rows = c.execute("SELECT t.name, a.width_ms, a.start_ms, a.count, a.good, a.min, a.max, a.mean, a.twa, a.last "
                     "FROM aggregates a JOIN tags t ON t.id = a.tag_id WHERE a.seq IS NOT NULL").fetchall()
except sqlite3.OperationalError:
    rows = []
for tag, width, start, count, good, *stats in rows:
    h = hashlib.sha256()
    for s in (site, node, tag):
        b = s.encode()
        h.update(struct.pack("<I", len(b)) + b)
    h.update(struct.pack("<IqII", width, start, count, good))
    for f in stats:
        if f is None or math.isnan(f):
            h.update(b"\xff" * 8)
        else:
            h.update(struct.pack("<d", float(f)))
    total = (total + struct.unpack("<Q", h.digest()[:8])[0]) % (1 << 64)
    n += 1
out["windows"] = n
out["sum"] = f"{total:016x}"
print(json.dumps(out))
"""


def edge_db(db_host_path, uid, gid, site, node):
    """Counts and the window checksum of the edge's history database."""
    p = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
                        SYSTEM_PYTHON, "-c", EDGE_DB_CODE, db_host_path, site, node],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise TestFailure(f"expected: the edge's history database {db_host_path} to be readable\n  {p.stderr}")
    return json.loads(p.stdout)


def http(url, token=None, timeout=5):
    """(status, body text); connection errors raise NotYet. HTTPS is not
    verified here: these are health probes on loopback against the
    postinst's self-signed certificates (the edge's sync to the hub is what
    verifies a certificate)."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = None
    if url.startswith("https:"):
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
        raise NotYet(f"{url}: {e}") from None


HTTP_CODE = r"""
import json, ssl, sys, urllib.error, urllib.request
url, token = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url)
if token:
    req.add_header("Authorization", "Bearer " + token)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
        print(json.dumps([r.status, r.read().decode("utf-8", "replace")]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.read().decode("utf-8", "replace")]))
except Exception as e:
    print(json.dumps([None, str(e)]))
"""


def http_in(argv):
    """probes.http, run as a separate process (argv enters another network
    namespace first)."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    try:
        status, body = json.loads(p.stdout)
    except ValueError:
        raise NotYet(f"probe failed: {p.stdout} {p.stderr}") from None
    if status is None:
        raise NotYet(body)
    return status, body


def prometheus(text):
    """{metric name: sum over its label sets} of a text exposition."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, rest = line.partition(" ")
        name = name_labels.split("{")[0]
        try:
            v = float(rest.split()[0])
        except (ValueError, IndexError):
            continue
        values[name] = values.get(name, 0.0) + v
    return values


def parse_checksum(text):
    """`apos-hub checksum` output: windows=N sum=HEX."""
    out = {}
    for part in text.split():
        if part.startswith("windows="):
            out["windows"] = int(part.split("=", 1)[1])
        if part.startswith("sum="):
            out["sum"] = part.split("=", 1)[1]
    if "windows" not in out or "sum" not in out:
        raise TestFailure(f"expected: `apos-hub checksum` to print windows=N sum=HEX\n  seen: {text}")
    return out


def listening(port):
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    import socket
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def sha256(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def stat_line(path):
    st = os.stat(path)
    return {"mode": oct(st.st_mode & 0o7777), "uid": st.st_uid, "gid": st.st_gid}
