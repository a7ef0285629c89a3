#!/usr/bin/env python3
"""Peer side of `apos-bench modbus`: pymodbus's async TCP client polling the
same holding-register requests as our driver, one request after another as a
poll cycle does. Prints one JSON object with cycle statistics."""

import argparse
import asyncio
import json
import resource
import statistics
import time

from pymodbus.client import AsyncModbusTcpClient


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--unit", type=int, default=1)
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--plan", required=True, help="JSON list of [start, count] read requests")
    a = ap.parse_args()
    plan = json.load(open(a.plan))
    client = AsyncModbusTcpClient(a.host, port=a.port, timeout=5)
    if not await client.connect():
        raise SystemExit(f"cannot connect to {a.host}:{a.port}")
    times = []
    cpu0 = time.process_time()
    for cycle in range(a.cycles + 1):  # cycle 0 is a warm-up
        t = time.perf_counter()
        for start, count in plan:
            r = await client.read_holding_registers(start, count=count, device_id=a.unit)
            if r.isError():
                raise SystemExit(f"read {start}+{count} failed: {r}")
        if cycle:
            times.append((time.perf_counter() - t) * 1e3)
    cpu = time.process_time() - cpu0
    client.close()
    times.sort()
    print(json.dumps({
        "cycles": len(times),
        "requests_per_cycle": len(plan),
        "mean_cycle_ms": statistics.fmean(times),
        "p50_cycle_ms": times[len(times) // 2],
        "p99_cycle_ms": times[min(len(times) - 1, round((len(times) - 1) * 0.99))],
        "cpu_s": cpu,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))


if __name__ == "__main__":
    asyncio.run(main())
