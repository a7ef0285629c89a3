//! The hub's DuckDB tables: one per protocol body, plus the batches and
//! the fleet registry. Created idempotently when the store opens.

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS batches (
    site        VARCHAR NOT NULL,
    node        VARCHAR NOT NULL,
    seq         UBIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    windows     INTEGER NOT NULL,
    PRIMARY KEY (site, node, seq)
);
CREATE TABLE IF NOT EXISTS aggregates (
    site     VARCHAR NOT NULL,
    node     VARCHAR NOT NULL,
    tag      VARCHAR NOT NULL,
    width_ms INTEGER NOT NULL,
    start_ms BIGINT NOT NULL,
    count    UINTEGER NOT NULL,
    good     UINTEGER NOT NULL,
    min      DOUBLE,
    max      DOUBLE,
    mean     DOUBLE,
    twa      DOUBLE,
    last     DOUBLE,
    seq      UBIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS forecasts (
    site      VARCHAR NOT NULL,
    node      VARCHAR NOT NULL,
    model     VARCHAR NOT NULL,
    version   VARCHAR NOT NULL,
    tag       VARCHAR NOT NULL,
    origin_ms BIGINT NOT NULL,
    step_ms   BIGINT NOT NULL,
    made_ms   BIGINT NOT NULL,
    forecast  VARCHAR NOT NULL,
    seq       UBIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS kpis (
    site        VARCHAR NOT NULL,
    node        VARCHAR NOT NULL,
    kpi         VARCHAR NOT NULL,
    win         VARCHAR NOT NULL,
    label       VARCHAR NOT NULL,
    start_ms    BIGINT NOT NULL,
    end_ms      BIGINT NOT NULL,
    until_ms    BIGINT NOT NULL,
    closed      BOOLEAN NOT NULL,
    computed_ms BIGINT NOT NULL,
    coverage    DOUBLE NOT NULL,
    quality     VARCHAR NOT NULL,
    value       DOUBLE,
    figures     VARCHAR NOT NULL,
    unit        VARCHAR,
    seq         UBIGINT NOT NULL
);
-- The edge re-sends a window's value as it grows: the newest per window.
CREATE OR REPLACE VIEW kpi_latest AS
    SELECT * FROM kpis
    QUALIFY row_number() OVER (PARTITION BY site, node, kpi, win, start_ms
                               ORDER BY computed_ms DESC, seq DESC) = 1;
CREATE TABLE IF NOT EXISTS nodes (
    site              VARCHAR NOT NULL,
    node              VARCHAR NOT NULL,
    first_seen_ms     BIGINT NOT NULL,
    last_seen_ms      BIGINT NOT NULL,
    software_version  VARCHAR,
    outbox_batches    UBIGINT,
    outbox_bytes      UBIGINT,
    oldest_unacked_ms BIGINT,
    last_seq          UBIGINT,
    dropped_batches   UBIGINT,
    PRIMARY KEY (site, node)
);
-- The edge's own time of the newest status accepted: an older (replayed)
-- one is refused, so a dead node cannot be made to look alive.
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS status_ts_ms BIGINT;
-- Windows an edge reports it never recorded (protocol Body::Lost).
CREATE TABLE IF NOT EXISTS lost (
    site     VARCHAR NOT NULL,
    node     VARCHAR NOT NULL,
    width_ms INTEGER NOT NULL,
    from_ms  BIGINT NOT NULL,
    to_ms    BIGINT NOT NULL,
    reason   VARCHAR NOT NULL,
    seq      UBIGINT NOT NULL
);
-- Alarm journal entries from the edges (protocol Body::Alarms).
CREATE TABLE IF NOT EXISTS alarms (
    site     VARCHAR NOT NULL,
    node     VARCHAR NOT NULL,
    alarm    VARCHAR NOT NULL,
    aseq     UBIGINT NOT NULL,
    ts_ms    BIGINT NOT NULL,
    change   VARCHAR NOT NULL,
    state    VARCHAR NOT NULL,
    priority UTINYINT NOT NULL,
    value    DOUBLE,
    by_user  VARCHAR,
    comment  VARCHAR,
    seq      UBIGINT NOT NULL
);
-- Audit log entries from the edges (protocol Body::Audit).
CREATE TABLE IF NOT EXISTS audit (
    site     VARCHAR NOT NULL,
    node     VARCHAR NOT NULL,
    aseq     UBIGINT NOT NULL,
    ts_ms    BIGINT NOT NULL,
    actor    VARCHAR NOT NULL,
    action   VARCHAR NOT NULL,
    target   VARCHAR NOT NULL,
    detail   VARCHAR NOT NULL,
    addr     VARCHAR NOT NULL,
    hash     VARCHAR NOT NULL,
    seq      UBIGINT NOT NULL
);
-- Alarm-system health from the edges (protocol Body::AlarmHealth).
CREATE TABLE IF NOT EXISTS alarm_health (
    site          VARCHAR NOT NULL,
    node          VARCHAR NOT NULL,
    ts_ms         BIGINT NOT NULL,
    avg_per_10min DOUBLE NOT NULL,
    peak_per_10min UBIGINT NOT NULL,
    flood_share   DOUBLE NOT NULL,
    top10_share   DOUBLE NOT NULL,
    in_flood      BOOLEAN NOT NULL,
    chattering    VARCHAR NOT NULL,
    stale         VARCHAR NOT NULL,
    seq           UBIGINT NOT NULL
);
-- Forecasts the edges scored against their actuals (protocol
-- Body::ForecastQuality): one row per scored forecast; `explanation` is a
-- JSON array of {feature, contribution}, '[]' in all but a pass's last.
CREATE TABLE IF NOT EXISTS forecast_quality (
    site        VARCHAR NOT NULL,
    node        VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    version     VARCHAR NOT NULL,
    tag         VARCHAR NOT NULL,
    origin_ms   BIGINT NOT NULL,
    scored_ms   BIGINT NOT NULL,
    step_ms     BIGINT NOT NULL,
    horizon     UINTEGER NOT NULL,
    mae         DOUBLE,
    mape        DOUBLE,
    n           UINTEGER NOT NULL,
    explanation VARCHAR NOT NULL,
    seq         UBIGINT NOT NULL
);
-- One row at most, briefly: proves the database takes writes.
CREATE TABLE IF NOT EXISTS probe (x INTEGER);
-- Signed batches that cannot be stored as they are: kept whole, with why.
CREATE TABLE IF NOT EXISTS quarantine (
    site        VARCHAR NOT NULL,
    node        VARCHAR NOT NULL,
    seq         UBIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    reason      VARCHAR NOT NULL,
    payload     BLOB NOT NULL,
    PRIMARY KEY (site, node, seq)
);
";
