//! The SQL worker's system-call filter (seccomp BPF, written out by hand
//! so no dependency is needed). A deny list, not an allow list: DuckDB's
//! set of system calls (threads, mmap, futex, reads of the snapshot and of
//! /proc and /sys for the machine's size) varies with glibc and DuckDB
//! versions, and an allow list that misses one kills the query with an
//! unhelpful signal. What is denied is what turns a query into more than
//! a computation over the open snapshot:
//!
//! - networking: `socket`, `socketpair`, `connect`, `bind`, `listen`, `accept*`;
//! - new programs and processes: `execve`, `execveat`, `fork`, `vfork`,
//!   `clone` without `CLONE_THREAD` (threads stay allowed), `clone3`
//!   (answered ENOSYS so glibc falls back to `clone`, which is checked);
//! - other processes: `ptrace`, `process_vm_*`, `kill`, `tkill`, `pidfd_*`,
//!   `tgkill` to any process but itself, `prlimit64` that sets a limit;
//! - writing the file system: `open`/`openat` with any of O_WRONLY, O_RDWR,
//!   O_CREAT, O_TRUNC, O_APPEND (EACCES), `creat`, `openat2` (ENOSYS, so
//!   glibc uses `openat`), mkdir, unlink, rename, link, symlink, mknod,
//!   chmod, chown, truncate, the xattr setters;
//! - the kernel's bigger surfaces: `io_uring_*` (its operations are not
//!   filtered by seccomp), `bpf`, `perf_event_open`, `userfaultfd`,
//!   `keyctl`/`add_key`/`request_key`, mount, namespaces, modules, reboot,
//!   swap, `open_by_handle_at`.
//!
//! Denied calls fail with EPERM (or the errno above) rather than killing
//! the process, so a query that reaches one gets an error message; a
//! system call of another architecture (or the x32 ABI) kills it.

use std::io;

/// `AUDIT_ARCH_*` of linux/audit.h (libc does not carry them).
#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 0xC000_00B7;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH_OFF: u32 = 4;
/// Low 32 bits of argument `i` (little-endian machines only).
const fn arg_lo(i: u32) -> u32 {
    16 + 8 * i
}
const fn arg_hi(i: u32) -> u32 {
    16 + 8 * i + 4
}

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn errno(e: i32) -> u32 {
    RET_ERRNO | (e as u32 & 0xffff)
}

/// The filter's program.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn program() -> Vec<libc::sock_filter> {
    use libc::*;
    let pid = std::process::id();
    let mut denied: Vec<c_long> = vec![
        SYS_socket,
        SYS_socketpair,
        SYS_connect,
        SYS_bind,
        SYS_listen,
        SYS_accept4,
        SYS_execve,
        SYS_execveat,
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_kill,
        SYS_tkill,
        SYS_pidfd_open,
        SYS_pidfd_send_signal,
        SYS_pidfd_getfd,
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_chroot,
        SYS_unshare,
        SYS_setns,
        SYS_bpf,
        SYS_perf_event_open,
        SYS_userfaultfd,
        SYS_keyctl,
        SYS_add_key,
        SYS_request_key,
        SYS_kexec_load,
        SYS_init_module,
        SYS_finit_module,
        SYS_delete_module,
        SYS_reboot,
        SYS_swapon,
        SYS_swapoff,
        SYS_io_uring_setup,
        SYS_io_uring_enter,
        SYS_io_uring_register,
        SYS_mkdirat,
        SYS_unlinkat,
        SYS_renameat,
        SYS_renameat2,
        SYS_linkat,
        SYS_symlinkat,
        SYS_mknodat,
        SYS_fchmod,
        SYS_fchmodat,
        SYS_fchown,
        SYS_fchownat,
        SYS_truncate,
        SYS_setxattr,
        SYS_lsetxattr,
        SYS_fsetxattr,
        SYS_removexattr,
        SYS_lremovexattr,
        SYS_fremovexattr,
        SYS_name_to_handle_at,
        SYS_open_by_handle_at,
        SYS_setuid,
        SYS_setgid,
        SYS_setreuid,
        SYS_setregid,
        SYS_setresuid,
        SYS_setresgid,
        SYS_setgroups,
    ];
    #[cfg(target_arch = "x86_64")]
    denied.extend([
        SYS_accept,
        SYS_fork,
        SYS_vfork,
        SYS_creat,
        SYS_mkdir,
        SYS_rmdir,
        SYS_unlink,
        SYS_rename,
        SYS_link,
        SYS_symlink,
        SYS_mknod,
        SYS_chmod,
        SYS_chown,
        SYS_lchown,
        SYS_uselib,
        SYS_ioperm,
        SYS_iopl,
    ]);
    let write_flags = (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND) as u32;
    let eperm = errno(EPERM);
    let mut p = vec![
        stmt(LD_W_ABS, ARCH_OFF),
        jump(JEQ_K, ARCH, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, NR),
    ];
    // The x32 ABI reuses x86_64's arch value with numbers from 0x40000000.
    #[cfg(target_arch = "x86_64")]
    p.extend([
        jump(JGE_K, 0x4000_0000, 0, 1),
        stmt(RET_K, RET_KILL_PROCESS),
    ]);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = JGE_K;
    for nr in denied {
        p.push(jump(JEQ_K, nr as u32, 0, 1));
        p.push(stmt(RET_K, eperm));
    }
    for (nr, e) in [(SYS_clone3, ENOSYS), (SYS_openat2, ENOSYS)] {
        p.push(jump(JEQ_K, nr as u32, 0, 1));
        p.push(stmt(RET_K, errno(e)));
    }
    // Opening for anything but reading: each block decides and returns,
    // so the accumulator need not be reloaded after it.
    let mut opens = vec![(SYS_openat, 2u32)];
    #[cfg(target_arch = "x86_64")]
    opens.push((SYS_open, 1));
    for (nr, arg) in opens {
        p.extend([
            jump(JEQ_K, nr as u32, 0, 4),
            stmt(LD_W_ABS, arg_lo(arg)),
            jump(JSET_K, write_flags, 0, 1),
            stmt(RET_K, errno(EACCES)),
            stmt(RET_K, RET_ALLOW),
        ]);
    }
    // Threads only: clone's flags (argument 0 on both architectures).
    p.extend([
        jump(JEQ_K, SYS_clone as u32, 0, 4),
        stmt(LD_W_ABS, arg_lo(0)),
        jump(JSET_K, CLONE_THREAD as u32, 0, 1),
        stmt(RET_K, RET_ALLOW),
        stmt(RET_K, eperm),
    ]);
    // Signals to itself only (glibc's raise and abort).
    p.extend([
        jump(JEQ_K, SYS_tgkill as u32, 0, 4),
        stmt(LD_W_ABS, arg_lo(0)),
        jump(JEQ_K, pid, 0, 1),
        stmt(RET_K, RET_ALLOW),
        stmt(RET_K, eperm),
    ]);
    // prlimit64 may read limits (getrlimit) but not set any: new_limit NULL.
    p.extend([
        jump(JEQ_K, SYS_prlimit64 as u32, 0, 6),
        stmt(LD_W_ABS, arg_lo(2)),
        jump(JEQ_K, 0, 0, 3),
        stmt(LD_W_ABS, arg_hi(2)),
        jump(JEQ_K, 0, 0, 1),
        stmt(RET_K, RET_ALLOW),
        stmt(RET_K, eperm),
    ]);
    #[cfg(target_arch = "x86_64")]
    p.extend([jump(JEQ_K, SYS_setrlimit as u32, 0, 1), stmt(RET_K, eperm)]);
    p.push(stmt(RET_K, RET_ALLOW));
    p
}

/// Install the filter on every thread of this process: DuckDB's thread
/// pool already runs when the worker installs it (after opening the
/// snapshot), hence `SECCOMP_FILTER_FLAG_TSYNC`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[allow(unsafe_code)]
pub fn install() -> io::Result<()> {
    let prog = program();
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| io::Error::other("filter too long"))?,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with integer arguments only. Without no_new_privs an
    // unprivileged process may not install a filter.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: libc::c_uint = 1;
    // SAFETY: seccomp(2) with a pointer to a valid sock_fprog whose filter
    // outlives the call (the kernel copies it).
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn install() -> io::Result<()> {
    Err(io::Error::other(
        "no seccomp filter for this architecture (x86_64 and aarch64 only)",
    ))
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// Every jump lands inside the program, and it ends with a return.
    #[test]
    fn jumps_stay_inside() {
        let p = super::program();
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + usize::from(ins.jt.max(ins.jf)) < p.len(), "{i}");
            }
        }
        assert_eq!(p.last().unwrap().code, super::RET_K);
        assert!(p.len() < 4096);
    }
}
