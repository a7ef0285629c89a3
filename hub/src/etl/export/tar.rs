//! A partitioned export's tree as one uncompressed POSIX ustar archive
//! (the download of a partitioned export). Written here rather than with a
//! crate: directories and regular files are all it ever holds, and Parquet
//! is compressed already.

use std::io::{self, Read as _, Write as _};
use std::path::Path;

const BLOCK: usize = 512;
/// Largest member ustar's 11 octal digits can state.
const MAX_SIZE: u64 = 0o77_777_777_777;

/// Write the tree under `root` into `out` (members relative to `root`,
/// sorted, directories first as they are met).
pub fn write_tree(root: &Path, out: &Path) -> io::Result<()> {
    let mut w = io::BufWriter::new(std::fs::File::create(out)?);
    walk(root, "", &mut w)?;
    w.write_all(&[0u8; 2 * BLOCK])?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

fn walk(dir: &Path, prefix: &str, w: &mut impl io::Write) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        let meta = e.metadata()?;
        if meta.is_dir() {
            w.write_all(&header(&format!("{rel}/"), 0, b'5', 0o755)?)?;
            walk(&e.path(), &format!("{rel}/"), w)?;
        } else if meta.is_file() {
            let size = meta.len();
            w.write_all(&header(&rel, size, b'0', 0o644)?)?;
            let mut f = std::fs::File::open(e.path())?;
            let copied = io::copy(&mut (&mut f).take(size), w)?;
            if copied != size {
                return Err(io::Error::other(format!("{rel} shrank while archived")));
            }
            let pad = (BLOCK - (size as usize % BLOCK)) % BLOCK;
            w.write_all(&vec![0u8; pad])?;
        }
    }
    Ok(())
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0width$o}", width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

fn header(path: &str, size: u64, kind: u8, mode: u64) -> io::Result<[u8; BLOCK]> {
    if size > MAX_SIZE {
        return Err(io::Error::other(format!(
            "{path}: larger than a tar member can be (8 GiB)"
        )));
    }
    let mut h = [0u8; BLOCK];
    let bytes = path.as_bytes();
    // Names over 100 bytes go into the 155-byte prefix, split at a '/'.
    let (prefix, name) = if bytes.len() <= 100 {
        (&[][..], bytes)
    } else {
        let cut = (0..bytes.len())
            .rev()
            .find(|&i| bytes[i] == b'/' && i <= 155 && bytes.len() - i - 1 <= 100 && i > 0)
            .ok_or_else(|| io::Error::other(format!("{path}: too long for a tar member")))?;
        (&bytes[..cut], &bytes[cut + 1..])
    };
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], mode);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    octal(&mut h[136..148], mtime);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix);
    // The checksum is taken with its own field as spaces.
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers_are_ustar_with_a_valid_checksum() {
        let h = header("site=a/day=2026-12-01/data_0.csv", 1234, b'0', 0o644).unwrap();
        assert_eq!(&h[257..262], b"ustar");
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut c = h;
        c[148..156].fill(b' ');
        assert_eq!(stored, c.iter().map(|&b| u64::from(b)).sum::<u64>());
        let long = format!("site={}/day=2026-12-01/data_0.csv", "x".repeat(120));
        let h = header(&long, 1, b'0', 0o644).unwrap();
        assert_eq!(&h[345..350], b"site=");
        assert!(header(&"y".repeat(300), 1, b'0', 0o644).is_err());
    }
}
