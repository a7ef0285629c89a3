//! A full disk under a running edge (issue 14), on a small tmpfs of its
//! own: the real `apos-edge` reads the simulated plant and syncs to the
//! real `apos-hub`; another "process" (this test) fills the disk to the
//! last byte, and keeps it full. The edge must release its reserve, say
//! loudly that it holds data in memory only, not storm the hub with
//! resends, and after a kill -9 while full and a restart on a disk with
//! room again, report the windows it lost so the hub lists them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use apos::plant;
use tokio_util::sync::CancellationToken;

use crate::process::Proc;
use crate::support::{bin, eventually, free_port, require_peer};

const SITE: &str = "demo-refinery";
const NODE: &str = "cdu-edge-1";
const KEY: &str = "e2e-node-key-0123456789";
const PASSWORD: &str = "e2e-node-password";

/// A tmpfs of `mib` MiB mounted at a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(at: &Path, mib: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "apos-test",
            ])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk {
            dir: at.to_path_buf(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Write zeros to `path` until the file system refuses: the disk is full.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    // Smaller pieces for the last blocks.
    let small = [0u8; 512];
    while let Ok(n) = f.write(&small) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    written
}

fn start(cmd_bin: &str, config: &Path) -> Proc {
    let mut cmd = Command::new(bin(cmd_bin));
    cmd.args(["run", "--config"]).arg(config);
    cmd.env("RUST_LOG", "info");
    Proc::spawn(cmd)
}

fn db(dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join("history.db")).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

fn depth(dir: &Path) -> i64 {
    db(dir)
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap_or(-1)
}

fn last_seq(dir: &Path) -> i64 {
    db(dir)
        .query_row("SELECT last_seq FROM outbox_state", [], |r| r.get(0))
        .unwrap_or(0)
}

/// The last `batches_duplicate` the hub's status line reported.
fn hub_duplicates(log: &str) -> u64 {
    log.rsplit("batches_duplicate: ")
        .next()
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_survived_loudly_and_what_a_kill_then_loses_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&tmp.path().join("disk"), 24) else {
        require_peer("root, to mount a small tmpfs (`mount -t tmpfs`)");
        return;
    };
    let edge_dir = disk.dir.clone();

    // The hub, on the ordinary disk.
    let hub_dir = tmp.path().join("hub");
    std::fs::create_dir_all(&hub_dir).unwrap();
    std::fs::write(hub_dir.join("node.key"), KEY).unwrap();
    std::fs::write(hub_dir.join("node.pass"), PASSWORD).unwrap();
    let port = free_port();
    let hub_db = hub_dir.join("fleet.duckdb");
    let hub_cfg = hub_dir.join("hub.toml");
    std::fs::write(
        &hub_cfg,
        format!(
            "schema_version = 1\n[storage]\npath = {:?}\n[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n\
             [ingest]\ncommit_interval = \"100ms\"\nstatus_log_interval = \"1s\"\n\
             [[node]]\nsite = \"{SITE}\"\nnode = \"{NODE}\"\nkey_file = \"node.key\"\npassword_file = \"node.pass\"\n",
            hub_db.display().to_string()
        ),
    )
    .unwrap();

    // The edge, on the small disk: max_size larger than the disk (the disk
    // fills first), a 1 MiB reserve, raw samples of the last hour protected.
    let cancel = CancellationToken::new();
    let p = plant::spawn_demo_plant("127.0.0.1:0".parse().unwrap(), 7, 10.0, cancel.clone())
        .await
        .unwrap();
    let conf_dir = tmp.path().join("edge");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(conf_dir.join("node.key"), KEY).unwrap();
    std::fs::write(conf_dir.join("mqtt.pass"), PASSWORD).unwrap();
    let mut text = apos::demo::edge_config(p.addr, &edge_dir.join("history.db"));
    assert!(text.contains("max_size = \"256MiB\""));
    text = text.replace(
        "max_size = \"256MiB\"",
        "max_size = \"64MiB\"\nreserve = \"1MiB\"\nmin_raw_span = \"1h\"",
    );
    text += &format!(
        "\n[sync]\nbroker = \"mqtt://127.0.0.1:{port}\"\nuser = \"{SITE}.{NODE}\"\npassword_file = \"mqtt.pass\"\n\
         key_file = \"node.key\"\nwindows = [\"1s\", \"5s\"]\ngrace = \"300ms\"\nresend_after = \"2s\"\nstatus_interval = \"1s\"\n"
    );
    let edge_cfg = conf_dir.join("edge.toml");
    std::fs::write(&edge_cfg, text).unwrap();

    let mut hub = start("apos-hub", &hub_cfg);
    let mut edge = start("apos-edge", &edge_cfg);
    eventually(
        "first batches acknowledged, two 5 s windows sealed",
        Duration::from_secs(60),
        || {
            last_seq(&edge_dir) - depth(&edge_dir).max(0) >= 3
                && db(&edge_dir)
                    .query_row(
                        "SELECT count(DISTINCT start_ms) FROM aggregates WHERE width_ms = 5000",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                    .unwrap_or(0)
                    >= 2
        },
    )
    .await;
    let reserve = edge_dir.join("history.db.reserve");
    assert_eq!(
        std::fs::metadata(&reserve).map(|m| m.len()).unwrap_or(0),
        1 << 20,
        "the reserve is written at start"
    );

    // Fill the disk and keep it full: whatever the edge frees, the filler
    // takes (another process writing logs, say).
    let filler = tmp.path().join("disk").join("filler");
    let mut filled = fill(&filler);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !edge.log().contains("ALARM history cannot be written") {
        assert!(
            Instant::now() < deadline,
            "the edge never reported that it cannot write\n{}",
            edge.tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        filled += fill(&filler);
    }
    eprintln!("disk full: the filler holds {} KiB", filled >> 10);
    let log = edge.log();
    assert!(
        log.contains("ALARM disk full: released the storage reserve"),
        "{}",
        edge.tail(40)
    );
    assert!(!reserve.exists(), "the reserve was released");
    // Stay full for a while: windows now exist only in the edge's memory,
    // acknowledged batches cannot be deleted, and the hub must not be
    // flooded with their resends.
    let dup_before = hub_duplicates(&hub.log());
    for _ in 0..75 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fill(&filler);
    }
    // Before the fix, each acknowledged batch whose delete failed was sent
    // again at once (6–12 duplicates in this phase, hundreds with a deeper
    // outbox); now none is, short of a reconnect resending what is in flight.
    let dup_during = hub_duplicates(&hub.log()) - dup_before;
    assert!(
        dup_during <= 3,
        "{dup_during} duplicate batches reached the hub in 15 s of full disk (resend storm)"
    );
    let alarms = edge
        .log()
        .matches("ALARM history cannot be written")
        .count();
    assert!(
        alarms <= 2,
        "{alarms} alarm lines in about 17 s (at most one a minute)"
    );
    assert!(!edge.log().contains("panicked"), "{}", edge.log());

    // Killed while full: what was held in memory is gone.
    edge.kill9();
    let log = edge.log();
    let deletes_failed = log.contains("cannot delete acknowledged batches from the outbox");
    eprintln!(
        "while full: {dup_during} duplicates at the hub, {alarms} alarm lines, acknowledged deletes failed: {deletes_failed}"
    );
    std::fs::remove_file(&filler).unwrap();
    let before_restart = last_seq(&edge_dir);
    let mut edge = start("apos-edge", &edge_cfg);
    // Each window width reports its lost stretch at its first seal (a width
    // whose last window was sealed just before the kill lost no whole one).
    let deadline = Instant::now() + Duration::from_secs(60);
    while edge
        .log()
        .lines()
        .filter(|l| l.contains("windows never recorded; reported to the hub"))
        .count()
        < 1
    {
        assert!(
            Instant::now() < deadline,
            "the restarted edge reports its lost windows\n{}",
            edge.tail(60)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past two 5 s windows after the restart, all acknowledged.
    tokio::time::sleep(Duration::from_secs(11)).await;
    eventually(
        "the report and new windows acknowledged",
        Duration::from_secs(60),
        || last_seq(&edge_dir) > before_restart + 3 && depth(&edge_dir) == 0,
    )
    .await;
    // The reserve comes back once the disk has room.
    eventually("the reserve restored", Duration::from_secs(90), || {
        std::fs::metadata(&reserve).is_ok_and(|m| m.len() == 1 << 20)
    })
    .await;
    cancel.cancel();
    edge.stop();
    hub.stop();

    let out = Command::new(bin("apos-hub"))
        .args(["nodes", "--db"])
        .arg(&hub_db)
        .output()
        .unwrap();
    let nodes = String::from_utf8_lossy(&out.stdout);
    eprintln!("{nodes}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(nodes.contains("lost windows  "), "{nodes}");
    assert!(nodes.contains("without a clean shutdown"), "{nodes}");
    assert!(nodes.contains(" 0 missing below it"), "{nodes}");

    // The hub's view is true: every stretch without windows is a reported
    // lost span of that width. (A width whose open window was sealed just
    // before the kill may have lost only part of a window: partial windows
    // at a restart are not reported; docs/configuration.md.)
    let store = hub::store::Store::open(&hub_db).unwrap();
    let (_, spans) = store.lost_spans(SITE, NODE, 100).unwrap();
    let mut holes = 0;
    for width in [1000u32, 5000] {
        let starts = store.window_starts(SITE, NODE, width).unwrap();
        assert!(
            starts.len() >= 2,
            "{width} ms windows stored: {}",
            starts.len()
        );
        for pair in starts.windows(2) {
            let (end, next) = (pair[0] + i64::from(width), pair[1]);
            if next > end {
                holes += 1;
                assert!(
                    spans
                        .iter()
                        .any(|(w, from, to, _)| *w == width && *from <= end && *to >= next),
                    "{width} ms windows missing from {end} to {next} without a lost span: {spans:?}"
                );
            }
        }
    }
    assert!(holes >= 1, "the kill while full lost windows");
}
