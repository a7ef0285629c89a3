//! `apos-bench hub`: the hub web API under load (docs/benchmarks.md §9).
//!
//! 1. Serving: a store filled by bench/hub/gen.py (DuckDB SQL over
//!    `range()`, the hub's own tables), the real `apos-hub` process on it,
//!    and the FastAPI + uvicorn + duckdb peer (bench/hub/peer.py) on a copy
//!    of the file (DuckDB locks it). Both answers are compared, then `wrk`
//!    measures requests per second and latency of the KPI summary and a tag
//!    range on each, with the same settings.
//! 2. A one-year chart (1,000 pixels) over a tag of 100 million stored
//!    windows: `Store::series` (rollups, coarsest width) against the same
//!    chart as one GROUP BY over every window (`Store::series_naive`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::procstat;

/// What to run; see `apos-bench hub --help`.
#[derive(Debug, Clone)]
pub struct Opts {
    pub hub_bin: PathBuf,
    pub python: PathBuf,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: u32,
    pub threads: u32,
    pub peer_workers: u32,
    pub year_points: u64,
    pub year_runs: usize,
    pub skip_serve: bool,
    pub skip_peer: bool,
    pub skip_year: bool,
    /// Where the data files go (they can be several GB): a temp dir inside.
    pub work_dir: Option<PathBuf>,
}

fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/hub")
}

fn now_ms() -> i64 {
    hub::web::now_ms()
}

/// Fold every window into the series catalog and rollups, in the chunks
/// the hub's ingest thread uses.
fn fold(s: &mut hub::store::Store) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let r = s.refresh_rollups(hub::store::DEFAULT_REFRESH_WINDOWS)?;
        total += r.windows;
        if r.remaining == 0 {
            return Ok(total);
        }
    }
}

/// Create the hub's tables in `path` (the store does it on open).
fn create_schema(path: &Path) -> anyhow::Result<()> {
    drop(hub::store::Store::open(path).context("creating the hub store")?);
    Ok(())
}

fn generate(python: &Path, args: &[String]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(python)
        .arg(bench_dir().join("gen.py"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} bench/hub/gen.py", python.display()))?;
    if !out.status.success() {
        bail!("gen.py {args:?} failed ({})", out.status);
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// A minimal HTTP/1.1 exchange (Connection: close) for the few requests
/// the bench makes itself: status, headers (lowercase names), body.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .context("no answer within 60 s")??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let hdrs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if hdrs
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok((status, hdrs, body))
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16)?;
        b = &b[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("short chunk")?);
        b = b.get(size + 2..).context("short chunk")?;
    }
}

async fn wait_port(port: u16, within: Duration, what: &str) -> anyhow::Result<()> {
    let end = Instant::now() + within;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > end {
            bail!("{what} did not listen on port {port} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU of a process and its children (uvicorn's workers), summed.
fn cpu_tree(pid: u32) -> Duration {
    let mut total = procstat::sample(pid).map(|s| s.cpu).unwrap_or_default();
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for k in kids
        .split_whitespace()
        .filter_map(|k| k.parse::<u32>().ok())
    {
        total += cpu_tree(k);
    }
    total
}

fn rss_tree_kib(pid: u32) -> u64 {
    let mut total = procstat::sample(pid).map(|s| s.rss_kib).unwrap_or_default();
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for k in kids
        .split_whitespace()
        .filter_map(|k| k.parse::<u32>().ok())
    {
        total += rss_tree_kib(k);
    }
    total
}

/// One wrk run's figures (bench/hub/auth.lua prints them).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct Wrk {
    pub requests: u64,
    pub duration_us: u64,
    pub bytes: u64,
    pub status_errors: u64,
    pub socket_errors: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    /// Server CPU over the run, in cores (1.0 = one core busy).
    #[serde(default)]
    pub server_cores: f64,
}

impl Wrk {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }
}

/// Run wrk against `url` for `d` with the auth header in the environment.
fn wrk(o: &Opts, url: &str, d: Duration, auth: &[(&str, &str)], pid: u32) -> anyhow::Result<Wrk> {
    let cpu0 = cpu_tree(pid);
    let t0 = Instant::now();
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &o.threads.to_string(),
        "-c",
        &o.connections.to_string(),
    ])
    .args(["-d", &format!("{}s", d.as_secs().max(1)), "--timeout", "5s"])
    .arg("-s")
    .arg(bench_dir().join("auth.lua"))
    .arg(url)
    .stderr(Stdio::inherit());
    for (k, v) in auth {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .context("running wrk (Debian: apt-get install wrk)")?;
    let cores = (cpu_tree(pid) - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("no result line from wrk: {text}"))?;
    let mut w: Wrk = serde_json::from_str(line)?;
    w.server_cores = cores;
    Ok(w)
}

/// A server under test: where it listens, how to authenticate, its pid.
struct Server {
    name: &'static str,
    port: u16,
    pid: u32,
    /// Environment for auth.lua and headers for our own requests.
    auth_env: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    _proc: Proc,
}

impl Server {
    fn env(&self) -> Vec<(&str, &str)> {
        self.auth_env
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect()
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let h: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, body) = http(self.port, "GET", path, &h, "").await?;
        Ok((status, body))
    }
}

/// The real `apos-hub` on the serving store, logged in as a viewer.
async fn start_hub(o: &Opts, dir: &Path, db: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    let mqtt = free_port()?;
    let users = dir.join("users.db");
    std::fs::write(dir.join("n.key"), "key-of-the-bench-node-0123456789")?;
    std::fs::write(dir.join("n.pass"), "bench-node-password")?;
    let cfg = dir.join("hub.toml");
    std::fs::write(
        &cfg,
        format!(
            "schema_version = 1\n[storage]\npath = {:?}\n[broker]\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [web]\nlisten = \"127.0.0.1:{port}\"\nusers_file = {:?}\nrate_limit = 100000\nrate_burst = 100000\n\
             [[node]]\nsite = \"s1\"\nnode = \"n1\"\nkey_file = \"n.key\"\npassword_file = \"n.pass\"\n",
            db.display().to_string(),
            users.display().to_string()
        ),
    )?;
    let password = web::users::random_password();
    web::users::UserStore::open(&users)?.add("bench", web::access::Role::Viewer, &password)?;
    let child = Command::new(&o.hub_bin)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", o.hub_bin.display()))?;
    let pid = child.id();
    let proc = Proc(child);
    wait_port(port, Duration::from_secs(120), "apos-hub's web listener").await?;
    let body = serde_json::json!({"user": "bench", "password": password}).to_string();
    let (status, hdrs, text) = http(
        port,
        "POST",
        "/api/v1/session",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await?;
    if status != 200 {
        bail!(
            "login to apos-hub: {status} {}",
            String::from_utf8_lossy(&text)
        );
    }
    let cookie = hdrs
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .find_map(|(_, v)| {
            v.split(';')
                .next()
                .filter(|c| c.starts_with(web::routes::SESSION_COOKIE))
                .map(str::to_string)
        })
        .context("no session cookie from the login")?;
    Ok(Server {
        name: "apos-hub",
        port,
        pid,
        auth_env: vec![("BENCH_COOKIE", cookie.clone())],
        headers: vec![("Cookie", cookie)],
        _proc: proc,
    })
}

/// FastAPI + uvicorn (bench/hub/peer.py) on `db`, with a bearer token.
async fn start_peer(o: &Opts, db: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    let token = web::users::random_password();
    let child = Command::new(&o.python)
        .args(["-m", "uvicorn", "peer:app", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .args(["--workers", &o.peer_workers.to_string()])
        .args(["--log-level", "warning", "--no-access-log"])
        .arg("--app-dir")
        .arg(bench_dir())
        .env("PEER_DB", db)
        .env("PEER_TOKEN", &token)
        .stdout(Stdio::null())
        .spawn()
        .context("starting uvicorn (bench/hub: python3 -m venv .venv && .venv/bin/pip install -r requirements.txt)")?;
    let pid = child.id();
    let proc = Proc(child);
    wait_port(port, Duration::from_secs(60), "the FastAPI peer").await?;
    let bearer = format!("Bearer {token}");
    Ok(Server {
        name: "FastAPI peer",
        port,
        pid,
        auth_env: vec![("BENCH_AUTH", bearer.clone())],
        headers: vec![("Authorization", bearer)],
        _proc: proc,
    })
}

/// Numbers equal to 1e-9 relative (the two JSON encoders print floats
/// differently), everything else exactly.
pub fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            _ => x == y,
        },
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The two measured requests (path and query) over the serving data set.
pub fn endpoints(end_ms: i64) -> [(&'static str, String); 2] {
    let day_from = end_ms - 86_400_000;
    [
        (
            "KPI summary",
            "/api/v1/analysis/kpis?site=s2&node=n3".to_string(),
        ),
        (
            "tag range (1 day, 1000 points)",
            format!(
                "/api/v1/analysis/series?site=s2&node=n3&tag=t04&from={day_from}&to={end_ms}&points=1000"
            ),
        ),
    ]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

async fn serve(o: &Opts, dir: &Path) -> anyhow::Result<()> {
    let db = dir.join("serve.duckdb");
    create_schema(&db)?;
    // A whole minute, so both servers see the same "now"-independent ranges.
    let end_ms = now_ms() / 60_000 * 60_000;
    let g = generate(
        &o.python,
        &["serve".into(), db.display().to_string(), end_ms.to_string()],
    )?;
    eprintln!("serving data set: {g}");
    let t = Instant::now();
    {
        let mut s = hub::store::Store::open(&db)?;
        let folded = fold(&mut s)?;
        eprintln!(
            "series catalog and rollups: {folded} windows folded in {:.1?}",
            t.elapsed()
        );
    }
    let peer_db = dir.join("peer.duckdb");
    std::fs::copy(&db, &peer_db).context("copying the store for the peer")?;
    let ours = start_hub(o, dir, &db).await?;
    let peer = if o.skip_peer {
        None
    } else {
        Some(start_peer(o, &peer_db).await?)
    };
    let eps = endpoints(end_ms);
    for (what, path) in &eps {
        let (st, a) = ours.get(path).await?;
        if st != 200 {
            bail!(
                "{what}: apos-hub answered {st}: {}",
                String::from_utf8_lossy(&a)
            );
        }
        let av: serde_json::Value = serde_json::from_slice(&a)?;
        eprintln!("{what}: {path} → {} bytes from apos-hub", a.len());
        if let Some(p) = &peer {
            let (st, b) = p.get(path).await?;
            if st != 200 {
                bail!(
                    "{what}: the peer answered {st}: {}",
                    String::from_utf8_lossy(&b)
                );
            }
            let bv: serde_json::Value = serde_json::from_slice(&b)?;
            if !same_json(&av, &bv) {
                let keep = dir.join("mismatch");
                std::fs::create_dir_all(&keep)?;
                std::fs::write(keep.join("ours.json"), &a)?;
                std::fs::write(keep.join("peer.json"), &b)?;
                bail!(
                    "{what}: the peer's answer differs from apos-hub's (both kept in {})",
                    keep.display()
                );
            }
            eprintln!("{what}: the peer's answer is the same ({} bytes)", b.len());
        }
    }
    let mut rows = Vec::new();
    for (what, path) in &eps {
        for s in std::iter::once(&ours).chain(peer.as_ref()) {
            let url = format!("http://127.0.0.1:{}{path}", s.port);
            wrk(o, &url, o.warmup, &s.env(), s.pid)?;
            let r = wrk(o, &url, o.duration, &s.env(), s.pid)?;
            eprintln!(
                "{what} on {}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, server {:.2} cores, {} errors, RSS {} MiB",
                s.name,
                r.rps(),
                ms(r.p50_us),
                ms(r.p99_us),
                ms(r.max_us),
                r.server_cores,
                r.status_errors + r.socket_errors,
                rss_tree_kib(s.pid) / 1024
            );
            rows.push((*what, s.name, r));
        }
    }
    println!("\n| endpoint | server | req/s | p50 ms | p99 ms | server CPU (cores) | errors |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (what, name, r) in &rows {
        println!(
            "| {what} | {name} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            r.rps(),
            ms(r.p50_us),
            ms(r.p99_us),
            r.server_cores,
            r.status_errors + r.socket_errors
        );
    }
    for (what, _) in &eps {
        let of = |n: &str| {
            rows.iter()
                .find(|(w, s, _)| w == what && *s == n)
                .map(|r| &r.2)
        };
        if let (Some(a), Some(b)) = (of("apos-hub"), of("FastAPI peer")) {
            println!(
                "{what}: apos-hub / FastAPI = {:.1}× the requests per second, p99 {:.2} vs {:.2} ms",
                a.rps() / b.rps().max(1e-9),
                ms(a.p99_us),
                ms(b.p99_us)
            );
        }
    }
    println!(
        "(wrk -t{} -c{} -d{}s after a {}s warm-up; both servers and wrk share this machine's {} cores)",
        o.threads,
        o.connections,
        o.duration.as_secs(),
        o.warmup.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn year(o: &Opts, dir: &Path) -> anyhow::Result<()> {
    let db = dir.join("year.duckdb");
    create_schema(&db)?;
    let end_ms = now_ms() / 86_400_000 * 86_400_000;
    let t = Instant::now();
    let g = generate(
        &o.python,
        &[
            "year".into(),
            db.display().to_string(),
            end_ms.to_string(),
            o.year_points.to_string(),
        ],
    )?;
    eprintln!(
        "year data set: {g} (with the checkpoint: {:.1?})",
        t.elapsed()
    );
    let size = std::fs::metadata(&db)?.len();
    let mut store = hub::store::Store::open(&db)?;
    let t = Instant::now();
    let folded = fold(&mut store)?;
    let fold = t.elapsed();
    eprintln!("series catalog and rollups: {folded} windows folded in {fold:.1?}");
    let from = end_ms - 365 * 86_400_000;
    let key = hub::store::SeriesKey::new("y", "n", "flow");
    let bucket = (end_ms - from).div_euclid(1000);
    let mut ours = Vec::new();
    let mut naive = Vec::new();
    let mut points = (0, 0);
    // Alternate, so that cache state and machine noise hit both alike.
    for _ in 0..o.year_runs {
        let t = Instant::now();
        let s = store.series(&key, from, end_ms, bucket)?;
        ours.push(t.elapsed());
        points.0 = s.t.len();
        let t = Instant::now();
        let n = store.series_naive(&key, from, end_ms, 1000)?;
        naive.push(t.elapsed());
        points.1 = n.len();
    }
    ours.sort();
    naive.sort();
    let (o50, o99) = (percentile(&ours, 0.5), percentile(&ours, 0.99));
    let (n50, n99) = (percentile(&naive, 0.5), percentile(&naive, 0.99));
    println!(
        "\none-year chart, {} windows of one tag ({:.2} GB file), {} runs each:",
        o.year_points,
        size as f64 / 1e9,
        o.year_runs
    );
    println!("| query | points | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| Store::series (rollups) | {} | {:.1} | {:.1} |",
        points.0,
        o50.as_secs_f64() * 1e3,
        o99.as_secs_f64() * 1e3
    );
    println!(
        "| naive GROUP BY over every window | {} | {:.1} | {:.1} |",
        points.1,
        n50.as_secs_f64() * 1e3,
        n99.as_secs_f64() * 1e3
    );
    println!(
        "naive / ours: {:.0}× at p50, {:.0}× at p99; folding the rollups once took {:.1?}",
        n50.as_secs_f64() / o50.as_secs_f64().max(1e-9),
        n99.as_secs_f64() / o99.as_secs_f64().max(1e-9),
        fold
    );
    Ok(())
}

pub async fn run(o: Opts) -> anyhow::Result<()> {
    let tmp = match &o.work_dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    eprintln!("data in {}", tmp.path().display());
    if !o.skip_serve {
        serve(&o, tmp.path()).await?;
    }
    if !o.skip_year {
        let (o2, dir) = (o.clone(), tmp.path().to_path_buf());
        tokio::task::spawn_blocking(move || year(&o2, &dir)).await??;
    }
    Ok(())
}
