//! Files the node creates are private, whatever umask it was started with.
//!
//! The history holds plant data and the PKI holds keys. Modes are set
//! explicitly where they matter most (keys 0600 in 0700 directories, the
//! history 0640), but libraries create files too (SQLite's `-wal`/`-shm`,
//! a hub's DuckDB files in the demo), with the process's umask: an
//! integrator's shell with `umask 000` would make them world-writable. So
//! the binaries set a umask of 027 first thing: group may read, others
//! nothing.

/// Set the process umask to 027 (owner all, group read, others nothing).
pub fn private_files() {
    // SAFETY: umask takes an integer and only changes the process's file
    // mode creation mask; it touches no memory.
    #[allow(unsafe_code)]
    unsafe {
        libc::umask(0o027);
    }
}
