"""The two sockets systemd gives a service, stood up by the test:

- a notify socket (sd_notify: READY=1, WATCHDOG=1, STOPPING=1, STATUS=…),
- a journal socket speaking the native protocol
  (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/): KEY=VALUE lines, or KEY,
  a newline, a little-endian u64 length, the bytes and a newline for values
  with newlines or binary data; an entry too large for one datagram comes as
  an empty datagram carrying a sealed memfd (SCM_RIGHTS).

Both are Unix datagram sockets with SO_PASSCRED, so every message carries
the sender's pid, uid and gid from the kernel, as journald and PID 1 see
them (the test checks READY=1 comes from the main pid: NotifyAccess=main).
"""

import array
import base64
import json
import os
import socket
import struct
import threading
import time

SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)
SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)


class DecodeError(Exception):
    pass


def decode_native(data):
    """The journal native protocol → [(key, value bytes)] in order."""
    fields = []
    i = 0
    n = len(data)
    while i < n:
        nl = data.find(b"\n", i)
        if nl < 0:
            raise DecodeError(f"field without a newline at byte {i}: {data[i:i + 40]!r}")
        line = data[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            i = nl + 1
        else:
            key = line
            i = nl + 1
            if i + 8 > n:
                raise DecodeError(f"binary field {key!r} without its length")
            (size,) = struct.unpack_from("<Q", data, i)
            i += 8
            if i + size + 1 > n or data[i + size:i + size + 1] != b"\n":
                raise DecodeError(f"binary field {key!r} of {size} bytes is not followed by a newline")
            value = data[i:i + size]
            i += size + 1
        k = key.decode("ascii", "replace")
        if not k or not all(c.isupper() or c.isdigit() or c == "_" for c in k) or k[0].isdigit():
            raise DecodeError(f"invalid journal field name {k!r}")
        fields.append((k, value))
    return fields


class DgramListener:
    """A Unix datagram socket at `path` (mode 0666, as /run/systemd/notify
    and the journal socket are reachable by every service user), read by a
    thread; each message goes to `handle(data, creds, fds)`."""

    def __init__(self, path, handle):
        self.path = path
        self.handle = handle
        if os.path.exists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.settimeout(0.2)
        self.stopped = threading.Event()
        self.errors = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        fd_size = array.array("i").itemsize
        while not self.stopped.is_set():
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(
                    1 << 20, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(16 * fd_size))
            except socket.timeout:
                continue
            except OSError as e:
                if not self.stopped.is_set():
                    self.errors.append(f"recvmsg: {e}")
                return
            creds, fds = None, []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
                    pid, uid, gid = struct.unpack("iII", payload[:12])
                    creds = {"pid": pid, "uid": uid, "gid": gid}
                elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(payload[: len(payload) - len(payload) % fd_size])
                    fds.extend(a)
            try:
                self.handle(data, creds, fds)
            except Exception as e:  # noqa: BLE001 (kept, reported by the test)
                self.errors.append(f"{type(e).__name__}: {e} (datagram {data[:200]!r})")
            finally:
                for fd in fds:
                    os.close(fd)

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class NotifySocket(DgramListener):
    """Collects sd_notify messages: [{t, pid, uid, fields: {K: V}}]."""

    def __init__(self, path, log_path):
        self.messages = []
        self.lock = threading.Lock()
        self.log = open(log_path, "a", buffering=1)
        super().__init__(path, self._handle)

    def _handle(self, data, creds, fds):
        text = data.decode("utf-8", "replace")
        fields = {}
        for line in text.split("\n"):
            if "=" in line:
                k, _, v = line.partition("=")
                fields[k] = v
        msg = {"t": time.time(), "pid": creds and creds["pid"], "uid": creds and creds["uid"],
               "fields": fields, "fds": len(fds)}
        with self.lock:
            self.messages.append(msg)
        self.log.write(json.dumps(msg) + "\n")

    def find(self, key, value=None, pid=None, since=0.0):
        with self.lock:
            return [m for m in self.messages
                    if key in m["fields"] and (value is None or m["fields"][key] == value)
                    and (pid is None or m["pid"] == pid) and m["t"] >= since]


class JournalSocket(DgramListener):
    """Decodes native-protocol entries: [{"_PID", "_UID", "_GID", fields…}],
    each field a str (or {"base64": …} for binary data); a field given more
    than once becomes a list. Saved as JSON lines."""

    def __init__(self, path, log_path):
        self.entries = []
        self.lock = threading.Lock()
        self.log = open(log_path, "a", buffering=1)
        self.memfd_entries = 0
        self.empty = 0
        super().__init__(path, self._handle)

    def _handle(self, data, creds, fds):
        if not data and not fds:
            # An empty datagram: a client checking the socket answers
            # (journald ignores it too).
            self.empty += 1
            return
        if not data and fds:
            # A large entry: the payload is a (sealed) memfd.
            size = os.fstat(fds[0]).st_size
            data = os.pread(fds[0], size, 0)
            self.memfd_entries += 1
        entry = {"_RECEIVED": time.time()}
        if creds:
            entry.update({"_PID": creds["pid"], "_UID": creds["uid"], "_GID": creds["gid"]})
        for key, value in decode_native(data):
            try:
                v = value.decode("utf-8")
            except UnicodeDecodeError:
                v = {"base64": base64.b64encode(value).decode()}
            if key in entry:
                old = entry[key]
                entry[key] = (old if isinstance(old, list) else [old]) + [v]
            else:
                entry[key] = v
        with self.lock:
            self.entries.append(entry)
        self.log.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def snapshot(self):
        with self.lock:
            return list(self.entries)
