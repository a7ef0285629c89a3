"""Starting an installed service the way its unit says, without systemd as
PID 1: ExecStartPre then ExecStart, inside the chroot, as the unit's User=
with its groups and SupplementaryGroups=, UMask=, NoNewPrivileges=,
MemoryDenyWriteExecute= (prctl PR_SET_MDWE), Environment=, the
environment systemd gives a service (NOTIFY_SOCKET, WATCHDOG_USEC/PID,
INVOCATION_ID, STATE_DIRECTORY, JOURNAL_STREAM), stdin from /dev/null and
stdout+stderr to one file (the journal stream's stand-in).

What this does not give: the mount namespace of ProtectSystem= and
friends, the seccomp filter, the capability bounding set, the cgroup and
DevicePolicy=. `systemd-analyze security` scores those from the unit."""

import os
import signal
import subprocess
import sys
import time
import uuid

from common import TestFailure, say

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class UnitRunner:
    def __init__(self, chroot, runner, unit, notify_inner, logdir, journal=True, mdwe=True):
        self.chroot = chroot
        self.runner = runner
        self.unit = unit
        self.notify_inner = notify_inner
        self.logdir = logdir
        self.journal = journal
        self.mdwe = mdwe
        os.makedirs(logdir, exist_ok=True)
        u = unit.user or "root"
        pw = chroot.passwd(u)
        if pw is None:
            raise TestFailure(f"expected: the unit's User={u} to exist in the installed root's /etc/passwd")
        self.uid, self.gid, self.home, self.shell = pw
        if unit.group:
            g = chroot.gid(unit.group)
            if g is None:
                raise TestFailure(f"expected: the unit's Group={unit.group} to exist in the root")
            self.gid = g
        self.groups = [self.gid] + [g for g in chroot.groups_of(u) if g != self.gid]  # initgroups(User=)
        for g in unit.supplementary:
            gid = chroot.gid(g)
            if gid is None:
                raise TestFailure(f"expected: SupplementaryGroups={g} of {unit.name} to exist in the root")
            if gid not in self.groups:
                self.groups.append(gid)
        self.proc = None
        self.pid = None
        self.log_path = None
        self.started_at = None

    def _env(self, main):
        u = self.unit
        env = {"PATH": SYSTEMD_PATH, "INVOCATION_ID": uuid.uuid4().hex, "LANG": "C.UTF-8"}
        if u.user:
            env.update({"HOME": self.home, "USER": u.user, "LOGNAME": u.user, "SHELL": self.shell})
        if u.state_directory:
            env["STATE_DIRECTORY"] = ":".join("/var/lib/" + d for d in u.state_directory)
        if u.type == "notify" or self.notify_inner:
            env["NOTIFY_SOCKET"] = self.notify_inner
        if main and u.watchdog_usec():
            env["WATCHDOG_USEC"] = str(u.watchdog_usec())
        env.update(u.environment)
        return env

    def _argv(self, argv, log_path, main):
        # MemoryDenyWriteExecute: applied whenever the unit asks for it, and
        # also when the test asks (mdwe=True) so a unit without it still
        # shows whether the binary could live with it.
        w = [sys.executable, os.path.join(HERE, "mdwe_exec.py"), "--output", log_path,
             "--umask", self.unit.umask]
        if self.mdwe or self.unit.memory_deny_write_execute:
            w.append("--mdwe")
        if self.unit.no_new_privileges:
            w.append("--nnp")
        if self.journal:
            w.append("--journal-stream")
        for k, v in self._env(main).items():
            w += ["--env", f"{k}={v}"]
        w += ["--env-pid", "SYSTEMD_EXEC_PID"]
        if main and self.unit.watchdog_usec():
            w += ["--env-pid", "WATCHDOG_PID"]
        w += ["--", "chroot", f"--userspec={self.uid}:{self.gid}",
              "--groups=" + ",".join(str(g) for g in self.groups), self.chroot.path]
        if self.unit.working_directory and self.unit.working_directory not in ("/", "~"):
            w += ["/bin/sh", "-c", 'cd "$0" && exec "$@"', self.unit.working_directory]
        return w + list(argv)

    def exec_start_pre(self, tag):
        """Run every ExecStartPre= to completion (a '-' prefix may fail)."""
        for i, (argv, prefixes) in enumerate(self.unit.exec_start_pre):
            log = os.path.join(self.logdir, f"{self.unit.name}-{tag}-pre{i}.log")
            p = subprocess.run(self._argv(argv, log, main=False), timeout=120)
            with open(log, errors="replace") as f:
                out = f.read()
            if p.returncode != 0 and "-" not in prefixes:
                raise TestFailure(
                    f"expected: ExecStartPre={' '.join(argv)} of {self.unit.name} to succeed as "
                    f"{self.unit.user}\n  exit {p.returncode}; output:\n{out}")
            say(f"{self.unit.name}: ExecStartPre {' '.join(argv)} → exit {p.returncode}")

    def start(self, tag):
        """ExecStartPre, then ExecStart in the background. Returns the main pid."""
        if self.unit.exec_start is None:
            raise TestFailure(f"expected: exactly one ExecStart= in {self.unit.name}, "
                              f"seen {self.unit.n_exec_start}")
        self.exec_start_pre(tag)
        argv, _ = self.unit.exec_start
        self.log_path = os.path.join(self.logdir, f"{self.unit.name}-{tag}.log")
        self.started_at = time.time()
        self.proc = subprocess.Popen(self._argv(argv, self.log_path, main=True))
        self.pid = self.proc.pid
        say(f"{self.unit.name}: ExecStart {' '.join(argv)} as {self.unit.user} "
            f"(uid {self.uid}, groups {self.groups}) → pid {self.pid}")
        return self.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def stop(self, notify, timeout=30.0):
        """SIGTERM, as `systemctl stop` does; wait TimeoutStopSec (extended by
        EXTEND_TIMEOUT_USEC messages, as systemd does). Returns the exit code
        and the seconds it took; a process that outlives the timeout is
        killed and the test fails."""
        if not self.alive():
            raise TestFailure(f"expected: {self.unit.name} (pid {self.pid}) to be running when stopped; "
                              f"it exited with {self.proc.returncode if self.proc else None}\n{self.log()[-3000:]}")
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        deadline = t0 + timeout
        while self.proc.poll() is None:
            for m in notify.find("EXTEND_TIMEOUT_USEC", pid=self.pid, since=t0):
                deadline = max(deadline, m["t"] + int(m["fields"]["EXTEND_TIMEOUT_USEC"]) / 1e6)
            if time.time() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise TestFailure(f"expected: {self.unit.name} to exit within its stop timeout after SIGTERM\n"
                                  f"{self.log()[-3000:]}")
            time.sleep(0.05)
        secs = time.time() - t0
        code = self.proc.returncode
        self.proc = None
        return code, secs

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()
