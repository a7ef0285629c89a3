"""The same cached Debian 12 root, booted with `systemd-nspawn --boot`:
systemd 252 as PID 1, journald, the units' real sandbox. Its own network
namespace (--private-network: only lo), so the shipped configuration's
ports (8443, 8444, 8883 on 0.0.0.0) are tried as they are without touching
the host's; the test's simulator and probes enter that namespace with
nsenter. Commands inside run through nsenter into every namespace of the
container's PID 1."""

import os
import signal
import subprocess
import time

from chroot import Chroot
from common import TestFailure, say


class Container(Chroot):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.nspawn = None
        self.leader = None

    def boot(self, log_path):
        self.log = open(log_path, "a")
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-D", self.path, "--boot", "--register=no", "--keep-unit",
             "--private-network", "--console=read-only", "--quiet"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while self.leader is None:
            if self.nspawn.poll() is not None or time.monotonic() > deadline:
                raise TestFailure(f"expected: systemd-nspawn --boot to start the root's systemd\n"
                                  f"  exit {self.nspawn.poll()}; see {log_path}")
            for child in self._children(self.nspawn.pid):
                try:
                    with open(f"/proc/{child}/comm") as f:
                        if f.read().strip() == "systemd":
                            self.leader = child
                except OSError:
                    pass
            time.sleep(0.1)
        # Boot finished: running, or degraded (a unit this minimal root
        # cannot run); the test looks at its own units.
        # (Its bus socket appears a moment after PID 1 does: retry.)
        deadline = time.monotonic() + 90
        while True:
            r = subprocess.run(self.enter(["systemctl", "is-system-running"]), capture_output=True,
                               text=True, timeout=30)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline or self.nspawn.poll() is not None:
                raise TestFailure(f"expected: the container's systemd to finish booting\n  seen: {state} {r.stderr}")
            time.sleep(0.2)
        if state == "degraded":
            failed = subprocess.run(self.enter(["systemctl", "--failed", "--no-legend", "--plain"]),
                                    capture_output=True, text=True).stdout
            say(f"container booted degraded; failed units: {failed.strip()}")
        return state

    @staticmethod
    def _children(pid):
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def enter(self, argv, net_only=False):
        """argv run inside the container (all namespaces), or only in its
        network namespace (a host program on the container's loopback)."""
        if net_only:
            return ["nsenter", "-t", str(self.leader), "-n", "--"] + list(argv)
        return ["nsenter", "-t", str(self.leader), "-a", "--", "/usr/bin/env", "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root",
                "DEBIAN_FRONTEND=noninteractive", "TERM=dumb", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"] + list(argv)

    def run(self, argv, **kw):
        kw.pop("env", None)
        return self.runner.run(self.enter(argv), **kw)

    def as_user_argv(self, user, argv):
        return (self.enter(["runuser", "-u", user, "--", "/bin/sh", "-c", 'umask 077; exec "$@"', "sh"]
                           + list(argv)), None)

    def poweroff(self, timeout=60):
        if not self.nspawn or self.nspawn.poll() is not None:
            return
        self.nspawn.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to halt
        try:
            self.nspawn.wait(timeout)
        except subprocess.TimeoutExpired:
            say("the container did not halt in time; killing systemd-nspawn")
            self.nspawn.kill()
            self.nspawn.wait()

    def destroy(self, keep=False):
        self.poweroff()
        super().destroy(keep=keep)
