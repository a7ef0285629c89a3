#!/usr/bin/env python3
"""Peer side of `apos-bench opcua`: Python asyncua's client subscribing to
the same monitored items as the edge node, counting data-change
notifications. Prints one JSON object."""

import argparse
import asyncio
import json
import resource
import time

from asyncua import Client


class Counter:
    def __init__(self):
        self.n = 0

    def datachange_notification(self, node, val, data):
        self.n += 1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--items", type=int, default=10000)
    ap.add_argument("--interval-ms", type=float, default=100)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--duration", type=float, default=20)
    a = ap.parse_args()
    async with Client(a.endpoint, timeout=30) as client:
        idx = await client.get_namespace_index("urn:apos:bench")
        nodes = [client.get_node(f"ns={idx};s=v{i:05}") for i in range(a.items)]
        handler = Counter()
        subs = []
        for start in range(0, len(nodes), 1000):
            sub = await client.create_subscription(a.interval_ms, handler)
            await sub.subscribe_data_change(nodes[start:start + 1000], sampling_interval=a.interval_ms)
            subs.append(sub)
        await asyncio.sleep(a.warmup)
        n0, c0, t0 = handler.n, time.process_time(), time.monotonic()
        await asyncio.sleep(a.duration)
        n1, c1, t1 = handler.n, time.process_time(), time.monotonic()
    print(json.dumps({
        "notifications_per_s": (n1 - n0) / (t1 - t0),
        "cpu_percent": (c1 - c0) / (t1 - t0) * 100,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))


if __name__ == "__main__":
    asyncio.run(main())
