//! PDF through headless Chromium's print-to-PDF: Chromium runs as its own
//! process on the stored HTML file (no script in it, nothing fetched),
//! with a throwaway profile, and is killed if it takes longer than the
//! timeout. Without Chromium the report stays HTML and says why.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Print `html` to `pdf` with `chromium`; the PDF's size, or why not.
pub fn print(chromium: &Path, html: &Path, pdf: &Path, timeout: Duration) -> Result<u64, String> {
    if !chromium.is_file() {
        return Err(format!(
            "Chromium not found at {} (install Debian's chromium, or set [[report]] chromium)",
            chromium.display()
        ));
    }
    let html = std::path::absolute(html).map_err(|e| format!("{}: {e}", html.display()))?;
    let pdf = std::path::absolute(pdf).map_err(|e| format!("{}: {e}", pdf.display()))?;
    static N: AtomicU64 = AtomicU64::new(0);
    let profile = pdf.with_file_name(format!(
        ".chromium-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&pdf);
    let out = run(chromium, &html, &pdf, &profile, timeout);
    let _ = std::fs::remove_dir_all(&profile);
    out?;
    match std::fs::metadata(&pdf) {
        Ok(m) if m.len() > 4 => Ok(m.len()),
        Ok(_) => Err("Chromium wrote an empty PDF".into()),
        Err(e) => Err(format!("Chromium wrote no PDF ({e})")),
    }
}

fn run(
    chromium: &Path,
    html: &Path,
    pdf: &Path,
    profile: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-pdf-header-footer",
            "--run-all-compositor-stages-before-draw",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", chromium.display()))?;
    // Chromium's stderr is chatty: read it on a thread so a full pipe never
    // stalls it, and keep the tail for the error message.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "Chromium did not finish within {}",
                    humantime::format_duration(timeout)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for Chromium: {e}")),
        }
    };
    let err = reader.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        let tail: String = err
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ");
        Err(format!("Chromium failed ({status}): {tail}"))
    }
}
