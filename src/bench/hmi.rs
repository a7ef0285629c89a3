//! `apos-bench hmi` (docs/benchmarks.md §8): a real `apos-edge` polling
//! the bench's register-file Modbus server, its HMI fanned out to
//! WebSocket clients by `bench/hmi/fanout.mjs`, CPU, RSS and latency.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;

use super::{server, tagset};

/// `apos-bench hmi`: see the subcommand's help and docs/benchmarks.md.
pub async fn run(
    edge_bin: &Path,
    tags: usize,
    clients: usize,
    duration: u64,
) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let (addr, _stats) = server::spawn("127.0.0.1:0".parse()?, cancel.clone()).await?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("history.db");
    let cfg = dir.path().join("edge.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let users = dir.path().join("users.db");
    let text = tagset::edge_config(addr, tags, "1s", &db)
        + &format!(
            "\n[hmi]\nlisten = \"127.0.0.1:{port}\"\nusers_file = {:?}\n",
            users.display().to_string()
        );
    std::fs::write(&cfg, text)?;
    let password = web::users::random_password();
    web::users::UserStore::open(&users)?.add("bench", web::access::Role::Viewer, &password)?;
    let mut child = Command::new(edge_bin)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", edge_bin.display()))?;
    let pid = child.id();
    let url = format!("http://127.0.0.1:{port}");
    let ready = async {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .context("the edge's HMI did not start listening within 30 s")?;
    eprintln!(
        "apos-edge pid {pid}: {tags} tags every 1 s, HMI {url}; {clients} clients for {duration} s"
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/hmi/fanout.mjs");
    let out = Command::new("node")
        .arg(&script)
        .args(["--target", "apos", "--url", &url, "--pid", &pid.to_string()])
        .args(["--user", "bench", "--password", &password])
        .args([
            "--clients",
            &clients.to_string(),
            "--duration",
            &duration.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running node bench/hmi/fanout.mjs (cd bench/hmi && npm ci)")?;
    let _ = child.kill();
    let _ = child.wait();
    cancel.cancel();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!("fanout.mjs failed ({})", out.status);
    }
    Ok(())
}
