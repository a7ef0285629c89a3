#!/usr/bin/env python3
"""Exec a command the way systemd's hardening would leave it, as far as a
plain process can: MemoryDenyWriteExecute (prctl PR_SET_MDWE with
PR_MDWE_REFUSE_EXEC_GAIN, which systemd >= 254 also uses and which
survives execve), NoNewPrivileges, UMask, a clean environment, stdout and
stderr to a file, and JOURNAL_STREAM naming that file as systemd names its
stream socket ("<st_dev>:<st_ino>" of stderr).

    mdwe_exec.py [--mdwe] [--nnp] [--umask 0077] [--output FILE]
                 [--journal-stream] [--env K=V]... [--env-pid NAME]... -- ARGV...
    mdwe_exec.py --probe-wx     # exit 0 if mmap(PROT_WRITE|PROT_EXEC) is refused, 3 if allowed

The process keeps its pid through every exec (wrapper -> chroot -> the
service), so --env-pid WATCHDOG_PID names the service's main pid, as
systemd does.
"""

import argparse
import ctypes
import errno
import mmap
import os
import shutil
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1


def prctl(option, arg2):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    r = libc.prctl(option, arg2, 0, 0, 0)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl({option}, {arg2}): {os.strerror(e)}")
    return r


def probe_wx():
    """0: a writable and executable mapping is refused (MDWE holds);
    3: it was granted."""
    try:
        m = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                      prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError as e:
        mdwe = prctl(PR_GET_MDWE, 0)
        print(f"mmap(PROT_WRITE|PROT_EXEC) refused: {errno.errorcode.get(e.errno, e.errno)}; PR_GET_MDWE = {mdwe}")
        return 0
    m.close()
    print(f"mmap(PROT_WRITE|PROT_EXEC) granted; PR_GET_MDWE = {prctl(PR_GET_MDWE, 0)}")
    return 3


def main():
    if sys.argv[1:] == ["--probe-wx"]:
        sys.exit(probe_wx())
    ap = argparse.ArgumentParser()
    ap.add_argument("--mdwe", action="store_true")
    ap.add_argument("--nnp", action="store_true")
    ap.add_argument("--umask")
    ap.add_argument("--output")
    ap.add_argument("--journal-stream", action="store_true")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--env-pid", action="append", default=[])
    ap.add_argument("argv", nargs="+")
    a = ap.parse_args()

    env = {}
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    for name in a.env_pid:
        env[name] = str(os.getpid())
    if a.output:
        fd = os.open(a.output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    if a.journal_stream:
        st = os.fstat(2)
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # systemd's StandardInput=null
    os.close(devnull)
    if a.umask:
        os.umask(int(a.umask, 8))
    if a.nnp:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
    if a.mdwe:
        prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)
    # Found on the wrapper's own PATH (chroot is in /usr/sbin), run with env.
    prog = shutil.which(a.argv[0]) or a.argv[0]
    os.execve(prog, a.argv, env)


if __name__ == "__main__":
    main()
