//! Files the hub creates are private, whatever umask it was started with:
//! the fleet database holds every site's data, and DuckDB creates its
//! files (and its `.wal`) with the process's umask. The same rule as the
//! edge's (`edge_node::files`): umask 027 first thing, and the database
//! itself at most 0640 even if an older version created it wider.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Set the process umask to 027 (owner all, group read, others nothing).
pub fn private_files() {
    // SAFETY: umask takes an integer and only changes the process's file
    // mode creation mask; it touches no memory.
    #[allow(unsafe_code)]
    unsafe {
        libc::umask(0o027);
    }
}

/// Take group write and every "other" permission off `path` (and its
/// DuckDB `.wal`) if it has them.
pub(crate) fn restrict(path: &Path) {
    let mut wal = path.as_os_str().to_owned();
    wal.push(".wal");
    for p in [path.to_path_buf(), wal.into()] {
        if let Ok(m) = std::fs::metadata(&p) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o027 != 0 {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o750));
            }
        }
    }
}
