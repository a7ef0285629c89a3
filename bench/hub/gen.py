"""Fill a hub store (DuckDB, the hub's own schema) with benchmark data, in
DuckDB SQL over range(): seconds for millions of rows, no ingest.

    gen.py serve FILE END_MS   # 4 sites x 5 nodes: 10 tags of 10 s and 1 min
                               # windows for 2 days, KPIs for 30 days
    gen.py year FILE END_MS N  # one tag, N windows evenly over the year before END_MS

The file must already hold the hub's tables (apos-bench opens it with
hub::store::Store first, which creates them), so the data lands in exactly
the columns the hub reads. Prints one JSON line: what was written.
"""

import json
import sys
import time

import duckdb

HOUR = 3_600_000
DAY = 24 * HOUR


def serve(con, end_ms):
    t = time.time()
    sites = [f"s{i}" for i in range(1, 5)]
    nodes = [f"n{i}" for i in range(1, 6)]
    con.execute("CREATE TEMP TABLE sn AS SELECT s.site, n.node FROM "
                "(SELECT unnest(?) AS site) s, (SELECT unnest(?) AS node) n", [sites, nodes])
    con.execute("""
        INSERT INTO nodes (site, node, first_seen_ms, last_seen_ms, software_version,
                           outbox_batches, outbox_bytes, oldest_unacked_ms, last_seq,
                           dropped_batches, status_ts_ms)
        SELECT site, node, ?1 - 2592000000, ?1, 'bench', 0, 0, NULL, 1, 0, ?1 FROM sn""",
                [end_ms])
    tags = [f"t{i:02}" for i in range(10)]
    # A smooth signal per tag and node; every window has good samples. In
    # time order, nodes interleaved, as the ingest stores them (DuckDB's
    # zone maps on start_ms then work as they do on real data).
    for width, span in ((10_000, 2 * DAY), (60_000, 2 * DAY)):
        n = span // width
        start = end_ms - end_ms % width - span
        con.execute(f"""
            INSERT INTO aggregates
            SELECT sn.site, sn.node, tg.tag, {width}, {start} + r.i * {width},
                   {width // 1000}, {width // 1000},
                   v - 1, v + 1, v, v, v, 1
            FROM sn, (SELECT unnest(?) AS tag) tg, range({n}) r(i),
                 LATERAL (SELECT 50 + 10 * sin(r.i / 60.0 + hash(sn.site || sn.node || tg.tag) % 100)
                          AS v)
            ORDER BY r.i, sn.site, sn.node, tg.tag""", [tags])
    # KPIs: OEE and its factors, throughput and specific energy, rolling 1 h
    # values for 30 days plus shift and day windows.
    kpis = {
        "oee": ["oee", "availability", "performance", "quality"],
        "throughput": ["throughput"],
        "specific_energy": ["specific_energy"],
    }
    for kpi, figures in kpis.items():
        fig = " || ', ' || ".join(
            f"'\"{f}\": ' || round(0.6 + 0.3 * sin(r.i / 24.0 + {k}), 4)" for k, f in enumerate(figures))
        for win, length, count, label in (
            ("1h", HOUR, 30 * 24, "''"),
            ("shift", 8 * HOUR, 30 * 3, "'shift ' || r.i"),
            ("day", DAY, 30, "'day ' || r.i"),
        ):
            start = end_ms - end_ms % length - count * length
            con.execute(f"""
                INSERT INTO kpis
                SELECT sn.site, sn.node, '{kpi}', '{win}', {label},
                       {start} + r.i * {length}, {start} + (r.i + 1) * {length},
                       {start} + (r.i + 1) * {length}, true, {start} + (r.i + 1) * {length},
                       1.0, 'good', round(0.6 + 0.3 * sin(r.i / 24.0), 4),
                       '{{' || {fig} || '}}', NULL, 1
                FROM sn, range({count}) r(i)""")
    rows = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("nodes", "aggregates", "kpis")}
    return {"set": "serve", "rows": rows, "seconds": round(time.time() - t, 1)}


def year(con, end_ms, n):
    t = time.time()
    span = 365 * DAY
    width = span // n
    start = end_ms - span
    con.execute(f"""
        INSERT INTO aggregates
        SELECT 'y', 'n', 'flow', {width}, {start} + i * {width}, 1, 1, v, v, v, v, v, 1
        FROM range({n}) r(i),
             LATERAL (SELECT 50 + 10 * sin(i / 100000.0) + (i % 97) / 97.0 AS v)""")
    con.execute("""
        INSERT INTO nodes (site, node, first_seen_ms, last_seen_ms, software_version,
                           outbox_batches, outbox_bytes, oldest_unacked_ms, last_seq,
                           dropped_batches, status_ts_ms)
        VALUES ('y', 'n', ?1, ?2, 'bench', 0, 0, NULL, 1, 0, ?2)""", [start, end_ms])
    rows = con.execute("SELECT count(*) FROM aggregates").fetchone()[0]
    return {"set": "year", "rows": rows, "width_ms": width, "from_ms": start, "to_ms": end_ms,
            "seconds": round(time.time() - t, 1)}


def main():
    what, path, end_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
    con = duckdb.connect(path)
    if what == "serve":
        out = serve(con, end_ms)
    elif what == "year":
        out = year(con, end_ms, int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown data set {what!r}: serve or year")
    con.execute("CHECKPOINT")
    con.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
