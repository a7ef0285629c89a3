//! Reading the text files an integrator writes (edge configuration,
//! includes, CSV register maps, model manifests): one home for the checks
//! every such read needs.
//!
//! - only a regular file: `include = ["/dev/zero"]` read until memory ran
//!   out;
//! - at most [`MAX_TEXT_BYTES`]: a configuration is kilobytes, not
//!   gigabytes;
//! - valid UTF-8, and if not, *where* it is not: "stream did not contain
//!   valid UTF-8" named no line.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest text file read: 16 MiB (a register map of 100,000 rows is
/// about 8 MiB).
pub const MAX_TEXT_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a regular file (a device, a pipe or a directory): point at a file", path.display())]
    NotRegular { path: PathBuf },
    #[error("{} is larger than {} MiB: not a configuration file", path.display(), MAX_TEXT_BYTES >> 20)]
    TooLarge { path: PathBuf },
    #[error("{}:{line}:{column}: the file is not valid UTF-8 from here on; save it as UTF-8", path.display())]
    NotUtf8 {
        path: PathBuf,
        line: usize,
        column: usize,
    },
}

/// Read `path` as UTF-8 text, with the checks above.
pub fn read_text(path: &Path) -> Result<String, TextError> {
    let io = |source| TextError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // The opened file's own metadata: nothing can swap it in between.
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(TextError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let mut bytes =
        Vec::with_capacity(usize::try_from(meta.len().min(MAX_TEXT_BYTES)).unwrap_or(0));
    // `take` also bounds a file that grows while it is read.
    file.take(MAX_TEXT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_TEXT_BYTES {
        return Err(TextError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // Everything before the error is valid UTF-8: count characters.
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
        TextError::NotUtf8 {
            path: path.to_path_buf(),
            line,
            column,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn utf8_errors_are_located_and_devices_refused() {
        let dir = std::env::temp_dir().join(format!("apos-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.toml");
        std::fs::write(&p, b"a = 1\nname = \"\xc3\xa9t\xe9\"\n").unwrap();
        match read_text(&p) {
            Err(TextError::NotUtf8 { line, column, .. }) => assert_eq!((line, column), (2, 11)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_text(Path::new("/dev/zero")),
            Err(TextError::NotRegular { .. })
        ));
        assert!(matches!(read_text(&dir), Err(TextError::NotRegular { .. })));
        std::fs::write(&p, "ok = \"é\"\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "ok = \"é\"\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
