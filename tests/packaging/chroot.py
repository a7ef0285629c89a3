"""A clean Debian 12 root for the install test: debootstrap (minbase) once,
then a tarball under /var/tmp keyed by everything that went into it, so a
warm run unpacks it in about a second and needs no network.

Mounts (/proc, /sys, /dev with /dev/pts) are made private to the root
(--make-rslave) so that unmounting them never touches the host's, and
removing the root refuses to run while anything is still mounted under it.
"""

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

from common import TestFailure, say

# Bump when the recipe below changes in a way the key does not see.
RECIPE = 2


def mounts_under(root):
    """Mount points at or under `root` (deepest first)."""
    root = os.path.realpath(root)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == root or mp.startswith(root + "/"):
                found.append(mp)
    return sorted(found, key=len, reverse=True)


def processes_in(root):
    """Pids whose root directory is `root` (started inside the chroot)."""
    root = os.path.realpath(root)
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/root") == root:
                pids.append(int(name))
        except OSError:
            continue
    return pids


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class Chroot:
    def __init__(self, runner, report, path, cache_dir, suite, mirror, include):
        self.runner = runner
        self.report = report
        self.path = os.path.realpath(path)
        self.cache_dir = cache_dir
        self.suite = suite
        self.mirror = mirror
        self.include = sorted(set(include))
        self.mounted = []

    def key(self):
        recipe = {"recipe": RECIPE, "suite": self.suite, "variant": "minbase", "mirror": self.mirror,
                  "include": self.include, "arch": os.uname().machine}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]

    def tarball(self):
        return os.path.join(self.cache_dir, f"{self.suite}-minbase-{self.key()}.tar.zst")

    def create(self):
        """Unpack the cached root, or debootstrap it and cache it. Returns
        "warm" or "cold"."""
        os.makedirs(self.cache_dir, exist_ok=True)
        tar = self.tarball()
        # One builder at a time; a second run waits and then finds it warm.
        with open(os.path.join(self.cache_dir, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = "warm"
            if not os.path.exists(tar):
                state = "cold"
                self._debootstrap(tar)
            os.utime(tar)  # last used: the eviction above keeps the recent ones
            self.report.figure(f"Debian root cache ({os.path.basename(self.path)})", f"{state}: {tar}")
        os.makedirs(self.path)
        self.runner.run(["sh", "-c", 'zstd -q -dc "$1" | tar -C "$2" --numeric-owner -xpf -', "sh", tar, self.path],
                        what=f"unpacking the cached root {tar}")
        # The host's resolver, should apt need the mirror (it should not).
        shutil.copy("/etc/resolv.conf", os.path.join(self.path, "etc/resolv.conf"))
        return state

    def _debootstrap(self, tar):
        build = tar + ".build"
        if os.path.exists(build):
            self._rm_tree(build)
        say(f"debootstrap --variant=minbase {self.suite} (cold cache; the first run downloads ~100 MB)")
        argv = ["debootstrap", "--variant=minbase"]
        if self.include:
            argv.append("--include=" + ",".join(self.include))
        argv += [self.suite, build, self.mirror]
        self.runner.run(argv, timeout=1800, what="debootstrap of the Debian root")
        self.runner.run(["chroot", build, "apt-get", "clean"], what="apt-get clean in the new root")
        leftover = mounts_under(build)
        if leftover:
            raise TestFailure(f"expected: debootstrap to leave nothing mounted in {build}\n  seen: {leftover}")
        tmp = tar + ".tmp"
        self.runner.run(["sh", "-c", 'tar -C "$1" --numeric-owner -cf - . | zstd -q -T0 -3 -o "$2" -f', "sh", build, tmp],
                        what="packing the root into the cache")
        os.replace(tmp, tar)
        self._rm_tree(build)
        # Keep the three roots used last (packages built with another
        # SQLite, say, depend on other libraries: another key).
        cached = sorted((os.path.join(self.cache_dir, n) for n in os.listdir(self.cache_dir)
                         if n.startswith(f"{self.suite}-minbase-") and n.endswith(".tar.zst")),
                        key=os.path.getmtime, reverse=True)
        for old in cached[3:]:
            os.unlink(old)

    def mount(self):
        """/proc, /sys, /dev (+ /dev/pts, /dev/shm) as a chroot needs them."""
        p = self.path
        steps = [
            (["mount", "-t", "proc", "proc", f"{p}/proc"], f"{p}/proc"),
            (["mount", "--rbind", "/sys", f"{p}/sys"], f"{p}/sys"),
            (["mount", "--make-rslave", f"{p}/sys"], None),
            (["mount", "--rbind", "/dev", f"{p}/dev"], f"{p}/dev"),
            (["mount", "--make-rslave", f"{p}/dev"], None),
        ]
        for argv, mp in steps:
            self.runner.run(argv, what=" ".join(argv))
            if mp:
                self.mounted.append(mp)

    def umount(self):
        """Unmount everything under the root (lazily if busy)."""
        errors = []
        for mp in mounts_under(self.path):
            if mp == self.path:
                continue
            r = subprocess.run(["umount", mp], capture_output=True, text=True)
            if r.returncode != 0:
                r = subprocess.run(["umount", "-l", mp], capture_output=True, text=True)
                if r.returncode != 0:
                    errors.append(f"{mp}: {r.stderr.strip()}")
        self.mounted = []
        return errors

    def kill_leftovers(self, grace=5.0):
        """SIGTERM, then SIGKILL, to processes still running inside the root
        (all of them were started by this test, through chroot or apt)."""
        pids = processes_in(self.path)
        for pid in pids:
            say(f"stopping leftover process {pid} in the root: {cmdline(pid)}")
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = [q for q in pids if os.path.exists(f"/proc/{q}")]
            time.sleep(0.1)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def destroy(self, keep=False):
        self.kill_leftovers()
        errors = self.umount()
        if errors:
            say("could not unmount: " + "; ".join(errors))
        if not keep and os.path.exists(self.path):
            self._rm_tree(self.path)

    def _rm_tree(self, path):
        left = mounts_under(path)
        if left:
            # Never rm -rf across a bind mount of the host's /dev or /sys.
            say(f"NOT removing {path}: still mounted: {left}")
            return
        subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)

    # --- inside the root

    def host(self, inner):
        """Host path of a path inside the root."""
        return os.path.join(self.path, inner.lstrip("/"))

    def run(self, argv, **kw):
        env = kw.pop("env", None) or {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
            "DEBIAN_FRONTEND": "noninteractive", "TERM": "dumb",
        }
        return self.runner.run(["chroot", self.path] + list(argv), env=env, **kw)

    def as_user_argv(self, user, argv):
        """(argv, env) running `argv` inside the root as `user` with umask
        0077, the way `sudo -u USER …` would."""
        uid, gid, home, _ = self.passwd(user)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "USER": user, "LOGNAME": user,
               "LANG": "C.UTF-8"}
        groups = ",".join(str(g) for g in self.groups_of(user))
        return (["chroot", f"--userspec={uid}:{gid}", f"--groups={groups}", self.path,
                 "/bin/sh", "-c", 'umask 077; exec "$@"', "sh"] + list(argv), env)

    def passwd(self, user):
        """(uid, gid, home) of `user` in the root's /etc/passwd, or None."""
        with open(self.host("/etc/passwd")) as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if parts[0] == user:
                    return int(parts[2]), int(parts[3]), parts[5], parts[6]
        return None

    def groups_of(self, user):
        """The user's primary group and the groups listing it (initgroups)."""
        _, gid, _, _ = self.passwd(user)
        groups = [gid]
        with open(self.host("/etc/group")) as f:
            for line in f:
                name, _, g, members = line.rstrip("\n").split(":")
                if user in members.split(",") and int(g) not in groups:
                    groups.append(int(g))
        return groups

    def gid(self, group):
        with open(self.host("/etc/group")) as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if parts[0] == group:
                    return int(parts[2])
        return None
