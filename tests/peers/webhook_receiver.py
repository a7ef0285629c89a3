#!/usr/bin/env python3
"""An independent webhook receiver for the hub's alert deliveries.

Standard library only. Verifies `X-APOS-Signature` (sha256=<hex HMAC-SHA256
of the body with the secret>) and appends one JSON line per request to
--log: {"delivery", "timestamp", "signature_ok", "status", "body"}.

    webhook_receiver.py --port 0 --secret-file S --log L [--fail-file F]

Prints `READY <port>` once listening. While --fail-file exists, every
request is answered with the status written in it (e.g. 500) and recorded
as such; a bad signature is answered 401. Stop it (SIGTERM) and start it
again on the same --port to play a receiver that is down and comes back.
"""

import argparse
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--fail-file")
    args = ap.parse_args()
    with open(args.secret_file, "rb") as f:
        # The hub trims trailing line ends from secret files; so do we.
        secret = f.read().rstrip(b"\r\n")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
            got = self.headers.get("X-APOS-Signature", "")
            ok = hmac.compare_digest(want, got)
            status = 200
            if not ok:
                status = 401
            elif args.fail_file and os.path.exists(args.fail_file):
                with open(args.fail_file) as f:
                    status = int(f.read().strip() or "500")
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            rec = {
                "delivery": self.headers.get("X-APOS-Delivery"),
                "timestamp": self.headers.get("X-APOS-Timestamp"),
                "content_type": self.headers.get("Content-Type"),
                "path": self.path,
                "signature_ok": ok,
                "status": status,
                "body": parsed,
            }
            with lock, open(args.log, "a") as f:
                f.write(json.dumps(rec) + "\n")
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    print(f"READY {srv.server_address[1]}", flush=True)
    srv.serve_forever()
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
