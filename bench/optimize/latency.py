#!/usr/bin/env python3
"""Time from a data change to a recommendation at the edge, on the demo.

    .venv/bin/python bench/optimize/latency.py [--demo target/debug/apos-demo] [--reps 3]

Starts `apos-demo` on free ports, waits for the plant to settle, then
repeatedly pushes the naphtha 95 % point off spec through the plant's own
Modbus registers (pymodbus writes the heater outlet setpoint to 385 °C and
the reflux to 2.0) and measures, on one clock:

  cross   the plant's naphtha 95 % point (input register 24, polled every
          0.1 s) first reads above the demo trigger (181.5 °C; 180.5 in the figures of docs/benchmarks.md §13);
  run     the hub starts the triggered optimization run (its `started_ms`);
  sent    the run is signed and published (`started_ms + took_ms`);
  queued  the edge has checked and queued the proposal (`received_ms` on
          the HMI API).

Between repetitions the setpoints go back to 360 °C / 2.2 and the trigger
re-arms. Prints one line per repetition and the medians.
"""

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.cookiejar import CookieJar

from pymodbus.client import ModbusTcpClient

TRIGGER = 181.5


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Api:
    def __init__(self, base, user, password):
        self.base = base
        self.jar = CookieJar()
        self.op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        r = self.call("POST", "/api/v1/session", {"user": user, "password": password})
        self.csrf = r["csrf"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        req.add_header("origin", self.base)
        if getattr(self, "csrf", None):
            req.add_header("x-csrf-token", self.csrf)
        with self.op.open(req, timeout=30) as r:
            raw = r.read()
            return json.loads(raw) if raw else None


def write_setpoints(c, temp, reflux):
    hi, lo = struct.unpack(">HH", struct.pack(">f", temp))
    c.write_registers(0, [hi, lo], device_id=1)
    c.write_register(5, int(round(reflux * 100)), device_id=1)


def t95(c):
    r = c.read_input_registers(24, count=1, device_id=1)
    raw = r.registers[0]
    return (raw - 65536 if raw >= 32768 else raw) * 0.1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", default="target/debug/apos-demo")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="apos-latency-")
    ports = {k: free_port() for k in ["modbus", "opcua", "mqtt", "hmi", "web"]}
    log = open(os.path.join(d, "demo.log"), "w")
    demo = subprocess.Popen(
        [args.demo, "--dir", d, "--no-staged-trip", "--print-every", "600s"]
        + [f"--{k}=127.0.0.1:{p}" for k, p in ports.items()],
        stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        pw = {}
        for line in demo.stdout:
            m = re.search(r"log in as (\w+)\s+\(\s*\w+\s*\) password (\S+)", line)
            if m:
                pw.setdefault(m.group(1), m.group(2))
            if "Ctrl-C stops" in line:
                break
        hub = Api(f"http://127.0.0.1:{ports['web']}", "analyst", pw["analyst"])
        hmi = Api(f"http://127.0.0.1:{ports['hmi']}", "operator", pw["operator"])
        c = ModbusTcpClient("127.0.0.1", port=ports["modbus"])
        c.connect()
        print("waiting 60 s for the plant and the windows to settle…", file=sys.stderr)
        time.sleep(60)
        rows = []
        seen = {r["id"] for r in hub.call("GET", "/api/v1/optimization/runs?limit=500")}
        for rep in range(args.reps):
            write_setpoints(c, 385.0, 2.0)
            cross = None
            run = None
            queued = None
            deadline = time.time() + 240
            while time.time() < deadline and (run is None or queued is None):
                now = time.time()
                if cross is None and t95(c) > TRIGGER:
                    cross = now
                if cross is not None and run is None:
                    for r in hub.call("GET", "/api/v1/optimization/runs?limit=20"):
                        if r["id"] not in seen and r["trigger"].startswith("trigger:") and r["status"] != "not_sent":
                            run = r
                            seen.add(r["id"])
                            break
                if run is not None and queued is None:
                    for e in hmi.call("GET", "/api/v1/setpoints")["entries"]:
                        if e["proposal"]["id"].startswith(run["id"] + ":"):
                            queued = e["proposal"]["received_ms"] / 1000.0
                            break
                time.sleep(0.1)
            if run is None or queued is None or cross is None:
                print(f"rep {rep}: incomplete (cross={cross}, run={run and run['id']}, queued={queued})")
            else:
                start = run["started_ms"] / 1000.0
                sent = start + run["took_ms"] / 1000.0
                row = (start - cross, run["took_ms"] / 1000.0, queued - sent, queued - cross)
                rows.append(row)
                print(f"rep {rep}: {run['id']} ({run['trigger']}): cross→run {row[0]:.1f} s, "
                      f"run {row[1] * 1000:.0f} ms, sent→queued at the edge {row[2] * 1000:.0f} ms, "
                      f"cross→queued {row[3]:.1f} s")
            # Back on spec and re-armed (the trigger fires on the next crossing).
            write_setpoints(c, 360.0, 2.2)
            while t95(c) > TRIGGER - 3:
                time.sleep(0.5)
            time.sleep(25)
        if rows:
            med = lambda i: sorted(r[i] for r in rows)[len(rows) // 2]
            print(f"median of {len(rows)}: cross→run {med(0):.1f} s, run {med(1) * 1000:.0f} ms, "
                  f"sent→queued {med(2) * 1000:.0f} ms, cross→queued {med(3):.1f} s")
    finally:
        demo.terminate()
        demo.wait(timeout=30)


if __name__ == "__main__":
    main()
