"""The installed system: apt install into the clean root, what the packages
put there, configuring them as an integrator would, running them as their
units do, syncing, the journal, an upgrade with a backlog, remove, purge."""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time

import probes
import tomledit
from common import NotYet, TestFailure, expect, free_port, ok, say, wait_for, warn
from listeners import JournalSocket, NotifySocket
from services import UnitRunner

SITE = "pkgtest-site"
NODE = "gw-1"
EDGE_CONF = "/etc/apos/edge.toml"
HUB_CONF = "/etc/apos/hub.toml"
KEYS = "/etc/apos/keys"
STATE = {"apos-edge": "/var/lib/apos/edge", "apos-hub": "/var/lib/apos/hub"}
NOTIFY_INNER = "/run/apos-pkgtest/notify"  # stands in for /run/systemd/notify
JOURNAL_INNER = "/run/systemd/journal/socket"
ADMIN = "pkgtest-admin"
# The test device: three holding registers whose names are the inputs of
# the shipped plant-heater-fuel model, so tract runs on real history.
REGISTERS = [("heater.fuel_gas_flow", 0, 3732), ("heater.outlet_temp", 1, 353), ("column.feed_rate", 2, 472)]
EDGE_HELP = ["run", "validate", "history", "kpi", "user", "audit", "opcua", "forecast"]
HUB_HELP = ["run", "validate", "nodes", "checksum", "decode", "user", "token", "audit"]


class Scenario:
    def __init__(self, t, chroot, units):
        self.t = t
        self.c = chroot
        self.units = units  # {package: units.Service} parsed from the installed files
        self.logs = t.report.path("logs", "x")[:-2]
        self.ports = {"sim": free_port(), "broker": free_port(), "web": free_port(), "hmi": free_port()}
        self.key = secrets.token_hex(16)
        self.mqtt_password = secrets.token_hex(12)
        self.edge_token = secrets.token_hex(16)
        self.hub_token = secrets.token_hex(16)
        self.sim = None
        self.notify = None
        self.journal = None
        self.running = {}
        self.t_install = None
        self.first_sample_s = None
        self.first_sample_at = None

    # --- helpers

    def netns(self, argv):
        """A host program in the services' network (the container's own,
        or the host's for the chroot)."""
        enter = getattr(self.c, "enter", None)
        return enter(argv, net_only=True) if enter else argv

    def http(self, url, token=None):
        if not hasattr(self.c, "enter"):
            return probes.http(url, token)
        return probes.http_in(self.netns([probes.SYSTEM_PYTHON, "-c", probes.HTTP_CODE, url, token or ""]))

    def as_user(self, user, argv, check=True, input=None, what=None):
        """Run a command inside the root as `user` (the way an admin runs
        `sudo -u apos-edge apos-edge user add …`), umask 0077."""
        argv, env = self.c.as_user_argv(user, argv)
        return self.t.runner.run(argv, env=env, check=check, input=input,
                                 what=what or f"{' '.join(argv)} as {user}")

    def edge_db(self):
        uid, gid, _, _ = self.c.passwd("apos-edge")
        return probes.edge_db(self.c.host(self.edge_history), uid, gid, SITE, NODE)

    def hub_checksum(self):
        r = self.as_user("apos-hub", ["apos-hub", "checksum", "--db", self.hub_db, "--site", SITE, "--node", NODE])
        return probes.parse_checksum(r.stdout)

    def edge_metrics(self):
        st, body = self.http(f"https://127.0.0.1:{self.ports['hmi']}/metrics", self.edge_token)
        if st != 200:
            raise NotYet(f"edge /metrics answered {st}: {body[:300]}")
        return probes.prometheus(body)

    def hub_metrics(self):
        st, body = self.http(f"https://127.0.0.1:{self.ports['web']}/metrics", self.hub_token)
        if st != 200:
            raise NotYet(f"hub /metrics answered {st}: {body[:300]}")
        return probes.prometheus(body)

    def dpkg_status(self, pkg):
        r = self.c.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Version}", pkg], check=False)
        return r.stdout.strip() if r.returncode == 0 else "not known to dpkg"

    def open_sockets(self):
        self.notify = NotifySocket(self.c.host(NOTIFY_INNER), self.t.report.path("notify.jsonl"))
        self.journal = JournalSocket(self.c.host(JOURNAL_INNER), self.t.report.path("journal-entries.jsonl"))
        os.chmod(os.path.dirname(self.c.host(NOTIFY_INNER)), 0o755)
        os.chmod(os.path.dirname(self.c.host(JOURNAL_INNER)), 0o755)

    def close(self):
        for r in list(self.running.values()):
            r.kill()
        self.stop_simulator()
        for s in (self.notify, self.journal):
            if s:
                s.close()

    # --- install

    def install(self, debs, version, label, expect_started=False):
        """apt-get install ./apos-edge_V.deb ./apos-hub_V.deb inside the root."""
        inner = f"/srv/apos-debs/{version}"  # not /tmp: a tmpfs under systemd
        os.makedirs(self.c.host(inner), exist_ok=True)
        os.chmod(self.c.host("/srv/apos-debs"), 0o755)
        os.chmod(self.c.host(inner), 0o755)
        paths = []
        for p in ("apos-edge", "apos-hub"):
            dst = os.path.join(inner, os.path.basename(debs[p]))
            shutil.copy(debs[p], self.c.host(dst))
            os.chmod(self.c.host(dst), 0o644)
            paths.append(dst)
        before = set(os.listdir("/proc"))
        t0 = time.time()
        r = self.c.run(["apt-get", "install", "-y"] + paths, timeout=900,
                       what=f"apt-get install -y {' '.join(paths)} in the Debian 12 root")
        secs = time.time() - t0
        with open(self.t.report.path(f"apt-install-{label}.log"), "w") as f:
            f.write(r.stdout + r.stderr)
        self.t.report.figure(f"apt install {label} seconds", round(secs, 1))
        out = r.stdout + r.stderr
        for p in ("apos-edge", "apos-hub"):
            st = self.dpkg_status(p)
            expect(st == f"ii |{version}", f"{p} {version} installed (dpkg status ii)", st)
        leftovers = [] if expect_started else [pid for pid in self.c_processes() if str(pid) not in before]
        expect(not leftovers, "no service started by the maintainer scripts where systemd does not run",
               [f"{pid}: {probes.read(f'/proc/{pid}/cmdline')}" for pid in leftovers])
        ok(f"apt-get install of {version} in {secs:.1f} s")
        return out, t0

    def c_processes(self):
        from chroot import processes_in
        return processes_in(self.c.path)

    def check_installed(self, apt_output):
        c = self.c
        # The postinst tells how to create the first admin user.
        for p in ("apos-edge", "apos-hub"):
            expect(re.search(rf"{p} user add \S+ .*--role admin", apt_output),
                   f"the install output to say how to create the first admin ('{p} user add NAME --role admin')",
                   apt_output[-3000:])
        ok("the install output says how to create the first admin of the edge and the hub")
        for p, state in STATE.items():
            pw = c.passwd(p)
            expect(pw is not None, f"system user {p} (sysusers.d)", probes.read(c.host("/etc/passwd"))[-800:])
            uid, gid, home, shell = pw
            expect(uid < 1000, f"{p} to be a system user (uid < 1000)", uid)
            expect(shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false"), f"{p} to have no login shell", shell)
            expect(home == state, f"{p}'s home to be its state directory {state}", home)
            st = os.stat(c.host(state))
            expect((st.st_uid, st.st_gid) == (uid, gid) and st.st_mode & 0o7777 == 0o750,
                   f"{state} owned by {p}:{p} with mode 0750", probes.stat_line(c.host(state)))
            conffiles = c.run(["dpkg-query", "-W", "-f=${Conffiles}", p]).stdout
            conf = f"/etc/apos/{p.removeprefix('apos-')}.toml"
            expect(re.search(rf"^\s*{re.escape(conf)} [0-9a-f]{{32}}\s*$", conffiles, re.M),
                   f"{conf} to be a conffile of {p}", conffiles)
            cst = os.stat(c.host(conf))
            expect(cst.st_uid == 0 and cst.st_mode & 0o022 == 0 and
                   (cst.st_mode & 0o004 or (cst.st_gid == gid and cst.st_mode & 0o040)),
                   f"{conf} owned and writable by root only, readable by {p}", probes.stat_line(c.host(conf)))
            ok(f"{p}: user uid {uid} (nologin, home {home}), {state} {p}:{p} 0750, {conf} a conffile")
            man = c.run(["man", "-w", p], check=False)
            expect(man.returncode == 0 and man.stdout.strip().endswith(f"{p}.1.gz"),
                   f"`man -w {p}` to find the installed man page", man.stdout + man.stderr)
            run_page = c.host(f"/usr/share/man/man1/{p}-run.1.gz")
            expect(os.path.exists(run_page), f"the subcommand page {p}-run.1.gz", os.listdir(c.host("/usr/share/man/man1")))
            help_words = EDGE_HELP if p == "apos-edge" else HUB_HELP
            h = c.run([p, "--help"])
            missing = [w for w in help_words if not re.search(rf"^\s+{w}\s", h.stdout, re.M)]
            expect(not missing, f"`{p} --help` to list every subcommand", f"missing {missing} in:\n{h.stdout}")
            for w in help_words:
                c.run([p, w, "--help"], what=f"{p} {w} --help")
            ok(f"{p}: man page ({man.stdout.strip()}), --help lists {', '.join(help_words)}")
            link = c.host(f"/etc/systemd/system/multi-user.target.wants/{p}.service")
            expect(os.path.islink(link), f"{p}.service enabled by the postinst (multi-user.target.wants link)",
                   os.listdir(os.path.dirname(link)) if os.path.isdir(os.path.dirname(link)) else "no wants dir")
        keys = c.host(KEYS)
        if os.path.isdir(keys):
            say(f"{KEYS}: {probes.stat_line(keys)} (root:apos 0750 expected)")
        for p in ("apos-edge", "apos-hub"):
            unit = f"/lib/systemd/system/{p}.service"
            v = c.run(["systemd-analyze", "verify", unit], check=False)
            with open(self.t.report.path(f"verify-{p}.txt"), "w") as f:
                f.write(v.stdout + v.stderr)
            with self.t.report.deferred():
                self.verified(p, unit, v)

    def verified(self, p, unit, v):
        expect(v.returncode == 0 and not (v.stdout + v.stderr).strip(),
               f"`systemd-analyze verify {unit}` clean in the installed root (systemd 252, man pages, binaries)",
               v.stdout + v.stderr)
        ok(f"systemd-analyze verify {unit}: clean")

    # --- configure, as the comments in the shipped files say

    def configure(self):
        c = self.c
        for p, conf in (("apos-edge", EDGE_CONF), ("apos-hub", HUB_CONF)):
            shutil.copy(c.host(conf), self.t.report.path(f"shipped-{os.path.basename(conf)}"))
            # The shipped configuration is what the unit starts with: it
            # must pass the unit's own ExecStartPre.
            c.run([p, "validate", "--config", conf], what=f"{p} validate of the shipped {conf}")
        ok("the shipped edge.toml and hub.toml validate")
        keys = c.host(KEYS)
        expect(os.path.isdir(keys), f"{KEYS} created by the packages", os.listdir(c.host("/etc/apos")))
        apos_gid = c.gid("apos")
        st = os.stat(keys)
        expect((st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, apos_gid, 0o750),
               f"{KEYS} root:apos 0750", probes.stat_line(keys))
        for f in ("edge-hmi.crt", "edge-hmi.key", "hub.crt", "hub.key"):
            expect(os.path.exists(os.path.join(keys, f)), f"{KEYS}/{f} generated by the postinst", os.listdir(keys))
        for f, group in (("edge-hmi.key", "apos-edge"), ("hub.key", "apos-hub")):
            s = os.stat(os.path.join(keys, f))
            expect((s.st_uid, s.st_gid, s.st_mode & 0o7777) == (0, c.gid(group), 0o640),
                   f"{KEYS}/{f} root:{group} 0640", probes.stat_line(os.path.join(keys, f)))
        ok(f"{KEYS} root:apos 0750; the postinst's TLS certificates and keys are there, keys 0640")

        # Secrets, installed the way the comments in the configs say.
        tmp = c.host("/root/pkgtest-secrets")
        os.makedirs(tmp, exist_ok=True)
        files = {"node.key": self.key, "mqtt.pass": self.mqtt_password,
                 "edge-metrics.token": self.edge_token, "hub-metrics.token": self.hub_token}
        for name, value in files.items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(value + "\n")
        hub_node = f"{SITE}.{NODE}"
        for src, dst, mode, group in (
                ("node.key", "edge-node.key", "0640", "apos-edge"),
                ("mqtt.pass", "edge-mqtt.pass", "0640", "apos-edge"),
                ("edge-metrics.token", "edge-metrics.token", "0640", "apos-edge"),
                ("node.key", f"{hub_node}.key", "0640", "apos-hub"),
                ("mqtt.pass", f"{hub_node}.pass", "0640", "apos-hub"),
                ("hub-metrics.token", "hub-metrics.token", "0640", "apos-hub")):
            c.run(["install", "-m", mode, "-g", group, f"/root/pkgtest-secrets/{src}", f"{KEYS}/{dst}"])
        c.run(["install", "-m", "0644", f"{KEYS}/hub.crt", f"{KEYS}/hub-ca.crt"])
        shutil.rmtree(tmp)

        # The broker's name must be one the hub's certificate was made for.
        self.hub_name = self.cert_name(f"{KEYS}/hub.crt")
        say(f"ports on 127.0.0.1 (the host's network): {self.ports}; the edge reaches the hub's broker as "
            f"{self.hub_name} (a name in hub.crt)")

        edge = probes.read(c.host(EDGE_CONF))
        edge = tomledit.set_keys(edge, "node", {"site_id": SITE, "node_id": NODE})
        edge = tomledit.set_keys(edge, "hmi", {"listen": f"127.0.0.1:{self.ports['hmi']}",
                                               "metrics_token_file": f"{KEYS}/edge-metrics.token"})
        edge = tomledit.append(edge, "\n".join([
            "# Added by the packaging test, as an integrator would.",
            "[sync]",
            f'broker = "mqtts://{self.hub_name}:{self.ports["broker"]}"',
            f'ca_file = "{KEYS}/hub-ca.crt"',
            f'user = "{SITE}.{NODE}"',
            f'password_file = "{KEYS}/edge-mqtt.pass"',
            f'key_file = "{KEYS}/edge-node.key"',
            'windows = ["1s", "5s"]',
            'grace = "300ms"',
            'resend_after = "2s"',
            'status_interval = "1s"',
            "",
            "[forecast]",
            'models_dir = "/usr/share/apos-edge/models"',
            'interval = "5s"',
            "",
            "[[device]]",
            'name = "pkgtest-plc"',
            'protocol = "modbus-tcp"',
            'host = "127.0.0.1"',
            f"port = {self.ports['sim']}",
            "unit_id = 1",
            'timeout = "500ms"',
            'poll_interval = "500ms"',
        ] + [line for name, addr, _ in REGISTERS for line in (
            "", "[[tag]]", f'name = "{name}"', 'device = "pkgtest-plc"', 'area = "holding"',
            f"address = {addr}", 'type = "u16"')]))
        tomledit.check(edge, "edge.toml")
        hub = probes.read(c.host(HUB_CONF))
        hub = tomledit.set_keys(hub, "broker", {"listen": f"127.0.0.1:{self.ports['broker']}"})
        hub = tomledit.set_keys(hub, "web", {"listen": f"127.0.0.1:{self.ports['web']}",
                                             "metrics_token_file": f"{KEYS}/hub-metrics.token"})
        hub = tomledit.set_keys(hub, "ingest", {"commit_interval": "100ms"})
        hub = tomledit.append(hub, "\n".join([
            "# Added by the packaging test, as an integrator would.",
            "[[node]]", f'site = "{SITE}"', f'node = "{NODE}"',
            f'key_file = "{KEYS}/{hub_node}.key"', f'password_file = "{KEYS}/{hub_node}.pass"']))
        tomledit.check(hub, "hub.toml")
        for conf, text in ((EDGE_CONF, edge), (HUB_CONF, hub)):
            with open(c.host(conf), "w") as f:
                f.write(text)
            shutil.copy(c.host(conf), self.t.report.path(f"configured-{os.path.basename(conf)}"))
        parsed = tomledit.check(edge, "edge.toml")
        self.edge_history = parsed.get("storage", {}).get("path", "/var/lib/apos/edge/history.db")
        self.hub_db = tomledit.check(hub, "hub.toml").get("storage", {}).get("path", "/var/lib/apos/hub/fleet.duckdb")
        ok(f"configured: a Modbus TCP device with {len(REGISTERS)} tags, [sync] over mqtts to the hub, "
           f"[forecast] with the shipped models, metrics tokens; the hub's [[node]] {hub_node}")

        # The first admins, the way the comments say (sudo -u <service user>).
        for p, conf in (("apos-edge", EDGE_CONF), ("apos-hub", HUB_CONF)):
            self.as_user(p, [p, "user", "add", ADMIN, "--role", "admin", "--password-stdin", "--config", conf],
                         input="pkgtest-password-0123\n")
            listed = self.as_user(p, [p, "user", "list", "--config", conf]).stdout
            expect(ADMIN in listed, f"`{p} user list` to show {ADMIN}", listed)
        ok(f"first admin {ADMIN} created on the edge and the hub as the services' users")

    def cert_name(self, inner):
        """A DNS name or IP of the certificate's subjectAltName that resolves
        here (127.0.0.1, localhost, or this host's name)."""
        r = self.t.runner.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", self.c.host(inner)],
                              check=False)
        sans = re.findall(r"(?:DNS|IP Address):([^,\s]+)", r.stdout)
        for want in ("127.0.0.1", "localhost"):
            if want in sans:
                return want
        import socket
        for name in sans:
            try:
                if socket.gethostbyname(name).startswith("127."):
                    return name
            except OSError:
                continue
        raise TestFailure(f"expected: {inner}'s subjectAltName to name this machine (127.0.0.1, localhost or "
                          f"a name resolving to loopback)\n  seen: {r.stdout}{r.stderr}")

    # --- the PLC: the project's pymodbus peer on the host's loopback

    def start_simulator(self):
        spec = {"transport": "tcp", "host": "127.0.0.1", "port": self.ports["sim"],
                "devices": [{"unit": 1, "holding": [[0, [v for _, _, v in REGISTERS]]]}]}
        log = open(self.t.report.path("logs", "modbus-simulator.log"), "a")
        self.sim = subprocess.Popen(self.netns([self.t.python, os.path.join(self.t.repo, "tests/peers/modbus_server.py")]),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        self.sim.stdin.write(json.dumps(spec))
        self.sim.stdin.close()
        line = self.sim.stdout.readline().strip()
        expect(line == f"READY port={self.ports['sim']}", "the Modbus simulator (tests/peers/modbus_server.py) "
               f"to serve on 127.0.0.1:{self.ports['sim']}", line or "no READY line (see logs/modbus-simulator.log)")

    def stop_simulator(self):
        if self.sim and self.sim.poll() is None:
            self.sim.send_signal(signal.SIGTERM)
            try:
                self.sim.wait(10)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait()
        self.sim = None

    # --- services, as their units start them

    def start(self, p, tag):
        r = UnitRunner(self.c, self.t.runner, self.units[p], NOTIFY_INNER, self.logs)
        t0 = time.time()
        pid = r.start(tag)
        self.running[p] = r
        m = wait_for(f"READY=1 on the notify socket from {p}'s main pid {pid}",
                     lambda: self.ready(r, pid), timeout=90)
        secs = m["t"] - t0
        others = [x for x in self.notify.find("READY") if x["pid"] != pid and x["t"] >= t0]
        expect(not others, f"READY=1 only from {p}'s main pid (NotifyAccess=main)", others)
        self.t.report.figure(f"{p} start to READY=1 seconds ({tag})", round(secs, 2))
        ok(f"{p}: READY=1 from pid {pid} after {secs:.2f} s (as {self.units[p].user}, MDWE on, under chroot)")
        return r

    def ready(self, r, pid):
        if not r.alive():
            raise TestFailure(f"expected: {r.unit.name} to keep running\n  it exited; its output:\n{r.log()[-4000:]}"
                              f"\n  journal: {self.journal_text(pid)[-4000:]}")
        found = self.notify.find("READY", "1", pid=pid)
        return found[0] if found else None

    def stop(self, p):
        r = self.running.pop(p)
        pid = r.pid
        code, secs = r.stop(self.notify)
        expect(code == 0, f"{p} to exit 0 after SIGTERM (as `systemctl stop` sends)",
               f"exit {code}\n{r.log()[-3000:]}\n{self.journal_text(pid)[-3000:]}")
        expect(self.notify.find("STOPPING", "1", pid=pid), f"STOPPING=1 from {p} (pid {pid}) on the notify socket",
               [m["fields"] for m in self.notify.messages if m["pid"] == pid][-5:])
        ok(f"{p}: SIGTERM → STOPPING=1, exit 0 in {secs:.2f} s")
        return secs

    def journal_text(self, pid):
        return "\n".join(f"{e.get('PRIORITY', '?')} {e.get('MESSAGE', '')}"
                         for e in self.journal.snapshot() if e.get("_PID") == pid)

    # --- collect and sync

    def first_sample(self, label="chroot"):
        """Time from the start of `apt install` to the first sample stored."""
        def stored():
            d = self.edge_db()
            return d if d["samples"] > 0 else None
        d = wait_for("the edge to store its first sample in its history database", stored, timeout=60, interval=0.1)
        secs = time.time() - self.t_install
        self.first_sample_s = secs
        self.first_sample_at = (d["first_sample_ms"] or time.time() * 1000) / 1000
        self.t.report.figure(f"apt install to first sample stored seconds ({label})", round(secs, 1))
        ok(f"first sample stored {secs:.1f} s after `apt install` began (install, configuration by this script "
           f"and start included); {d['samples']} samples now")

    def check_endpoints(self):
        base = f"https://127.0.0.1:{self.ports['web']}"
        st, body = wait_for("the hub's /healthz to answer 200", lambda: self.get(base + "/healthz"), timeout=30)
        st, body = wait_for("the hub's /readyz to answer 200 (store and ingest ready)",
                            lambda: self.get(base + "/readyz", want=200), timeout=30)
        m = wait_for("the hub's /metrics to answer with the bearer token", self.hub_metrics, timeout=30)
        expect(m.get("apos_hub_ingest_ready") == 1.0, "apos_hub_ingest_ready 1 on the hub's /metrics", m)
        st, _ = self.http(base + "/metrics")
        expect(st in (401, 403), "the hub's /metrics to refuse a request without the token", st)
        ok(f"hub: /healthz 200, /readyz 200, /metrics 200 with the token ({int(m.get('apos_hub_windows_stored_total', 0))}"
           f" windows stored so far), 401/403 without")
        em = wait_for("the edge's /metrics to show samples stored and the device and hub connected",
                      lambda: self.edge_up(), timeout=60)
        ok(f"edge: /metrics {int(em['apos_edge_samples_stored_total'])} samples stored, device connected, hub connected")

    def get(self, url, want=None):
        st, body = self.http(url)
        if want is not None and st != want:
            raise NotYet(f"{url} answered {st}: {body[:300]}")
        return (st, body) if st == 200 else None

    def edge_up(self):
        m = self.edge_metrics()
        if m.get("apos_edge_samples_stored_total", 0) > 0 and m.get("apos_edge_driver_connected") == 1.0 \
                and m.get("apos_edge_hub_connected") == 1.0:
            return m
        raise NotYet({k: v for k, v in m.items() if k in (
            "apos_edge_samples_stored_total", "apos_edge_driver_connected", "apos_edge_hub_connected")})

    def drain_and_compare(self, label, min_windows):
        """As tests/e2e/sync.rs: stop the source, let the edge drain its
        outbox, then every window it queued must be in DuckDB exactly once."""
        wait_for(f"at least {min_windows} windows at the hub before the comparison ({label})",
                 lambda: self.hub_checksum()["windows"] >= min_windows, timeout=60, interval=0.5)
        self.stop_simulator()
        state = {"last": None, "since": time.time()}

        def settled():
            d = self.edge_db()
            if d["last_seq"] != state["last"]:
                state["last"], state["since"] = d["last_seq"], time.time()
            if time.time() - state["since"] >= 3.0 and d["outbox"] == 0:
                return d
            raise NotYet(f"outbox {d['outbox']} batches, last_seq {d['last_seq']}")
        d = wait_for(f"the edge's outbox to drain ({label})", settled, timeout=90, interval=0.5)
        edge = {"windows": d["windows"], "sum": d["sum"]}
        hub = self.hub_checksum()
        with open(self.t.report.path(f"checksums-{label}.json"), "w") as f:
            json.dump({"edge": edge, "hub": hub, "edge_db": d}, f, indent=2)
        expect(edge["windows"] >= min_windows, f"the edge to have queued at least {min_windows} windows", edge)
        expect(hub == edge, "every window the edge queued stored in DuckDB exactly once (equal checksums)",
               f"edge {edge}, hub {hub}")
        nodes = self.as_user("apos-hub", ["apos-hub", "nodes", "--db", self.hub_db]).stdout
        with open(self.t.report.path(f"hub-nodes-{label}.txt"), "w") as f:
            f.write(nodes)
        expect(NODE in nodes and SITE in nodes, f"`apos-hub nodes` to list {SITE}/{NODE}", nodes)
        ok(f"{label}: edge and hub checksums equal: {edge['windows']} windows, sum {edge['sum']}; "
           f"`apos-hub nodes` lists the node")
        self.t.report.figure(f"windows synced ({label})", edge["windows"])
        self.start_simulator()
        return edge

    def check_watchdog(self):
        for p, r in self.running.items():
            usec = r.unit.watchdog_usec()
            if not usec:
                continue
            wait_for(f"WATCHDOG=1 from {p} (pid {r.pid}) within WatchdogSec",
                     lambda: self.notify.find("WATCHDOG", "1", pid=r.pid), timeout=usec / 1e6 + 5)
            wd = self.notify.find("WATCHDOG", "1", pid=r.pid)
            ok(f"{p}: WATCHDOG=1 arrives ({len(wd)} so far; WatchdogSec={r.unit.watchdog_sec})")

    # --- the journal

    def journal_checks(self, pids):
        """Structured fields reach the journal as fields of their own."""
        # The decoder itself, against libsystemd's encoder (util-linux's
        # logger --journald writes to /run/systemd/journal/socket).
        self.c.run(["logger", "--journald"], input="MESSAGE=pkgtest decoder self-test\nPKGTEST_FIELD=42\n")
        wait_for("the decoder to read logger --journald's entry (libsystemd's native protocol)",
                 lambda: [e for e in self.journal.snapshot() if e.get("PKGTEST_FIELD") == "42"], timeout=5)
        expect(not self.journal.errors, "no undecodable journal datagram", self.journal.errors)
        entries = self.journal.snapshot()
        with open(self.t.report.path("journal-entries.txt"), "w") as f:
            for e in entries:
                extra = {k: v for k, v in e.items() if k not in ("MESSAGE", "_RECEIVED")}
                f.write(f"{e.get('MESSAGE', '')!r} {json.dumps(extra, ensure_ascii=False)}\n")
        for p, pid in pids.items():
            mine = [e for e in entries if e.get("_PID") == pid]
            expect(mine, f"journal entries from {p} (pid {pid}), which ran with JOURNAL_STREAM set",
                   f"{len(entries)} entries from pids {sorted({e.get('_PID') for e in entries})}")
            bad = [e for e in mine if not str(e.get("PRIORITY", "")).isdigit() or "MESSAGE" not in e]
            expect(not bad, f"every entry of {p} to have MESSAGE and a numeric PRIORITY", bad[:3])
            fields = sorted({k for e in mine for k in e if not k.startswith("_")})
            self.t.report.figure(f"{p} journal fields", " ".join(fields))
            say(f"{p}: {len(mine)} journal entries; fields seen: {' '.join(fields)}")
            text = self.running_log(p)
            stray = [l for l in text.splitlines() if re.search(r"\b(INFO|WARN|ERROR|DEBUG)\b", l)]
            expect(not stray, f"{p} to log natively to the journal, not as text on stderr, when JOURNAL_STREAM names stderr",
                   "\n".join(stray[:10]))
        edge = [e for e in entries if e.get("_PID") == pids["apos-edge"] and e.get("DEVICE") == "pkgtest-plc"]
        expect(edge, "an edge entry with the field DEVICE=pkgtest-plc (the simulator was stopped: the driver "
               "logs its connection loss with the device)", "none; see journal-entries.txt")
        e = edge[0]
        expect("pkgtest-plc" not in e["MESSAGE"] and "device=" not in e["MESSAGE"].lower(),
               "the device in its own field, not inside MESSAGE", e["MESSAGE"])
        ok(f"journal: {json.dumps({k: v for k, v in e.items() if not k.startswith('_')}, ensure_ascii=False)}")
        if self.journal.memfd_entries:
            say(f"{self.journal.memfd_entries} entries came as a memfd (large entries)")

    def running_log(self, p):
        import glob
        return "".join(probes.read(f) for f in sorted(glob.glob(os.path.join(self.logs, f"{p}-*.log")))
                       if "-pre" not in f)

    # --- upgrade with a backlog

    def snapshot(self):
        c = self.c
        keys = {}
        for name in sorted(os.listdir(c.host(KEYS))):
            path = os.path.join(c.host(KEYS), name)
            keys[name] = (probes.sha256(path), probes.stat_line(path))
        return {
            "confs": {f: probes.sha256(c.host(f)) for f in (EDGE_CONF, HUB_CONF)},
            "keys": keys,
            "db": self.edge_db(),
            "users": {p: self.as_user(p, [p, "user", "list", "--config", conf]).stdout
                      for p, conf in (("apos-edge", EDGE_CONF), ("apos-hub", HUB_CONF))},
            "dirs": {d: probes.stat_line(c.host(d)) for d in STATE.values()},
            "passwd": {p: c.passwd(p) for p in STATE},
        }

    def backlog(self):
        m = self.edge_metrics()
        depth = m.get("apos_edge_outbox_depth_batches", 0)
        if depth >= 5 and m.get("apos_edge_hub_connected", 1) == 0:
            return m
        raise NotYet(f"outbox depth {depth}, hub_connected {m.get('apos_edge_hub_connected')}")

    def upgrade(self, debs, version):
        self.stop("apos-hub")
        m = wait_for("a backlog of at least 5 batches in the edge's outbox while the hub is down "
                     "(apos_edge_outbox_depth_batches)", self.backlog, timeout=90, interval=0.5)
        ok(f"hub down: backlog {int(m['apos_edge_outbox_depth_batches'])} batches on the edge's /metrics")
        self.stop("apos-edge")
        before = self.snapshot()
        with open(self.t.report.path("before-upgrade.json"), "w") as f:
            json.dump(before, f, indent=2, default=str)
        expect(before["db"]["outbox"] > 0, "unsent batches in the outbox after the edge stopped", before["db"])
        out, _ = self.install(debs, version, "upgrade")
        expect("Configuration file" not in out and "*** " not in out,
               "the upgrade to leave the unchanged conffiles alone, without a prompt", out[-3000:])
        strays = [f for f in os.listdir(self.c.host("/etc/apos")) if re.search(r"\.dpkg-(dist|new|old)$|\.ucf-", f)]
        expect(not strays, "no .dpkg-dist/.dpkg-new/.dpkg-old files in /etc/apos after the upgrade", strays)
        after = self.snapshot()
        with open(self.t.report.path("after-upgrade.json"), "w") as f:
            json.dump(after, f, indent=2, default=str)
        expect(after["confs"] == before["confs"], "edge.toml and hub.toml unchanged by the upgrade (our edits kept)",
               f"before {before['confs']}\nafter {after['confs']}")
        expect(after["keys"] == before["keys"], f"every file in {KEYS} unchanged (content, owner, mode)",
               f"before {before['keys']}\nafter {after['keys']}")
        for p in STATE:
            expect(ADMIN in after["users"][p], f"{p}'s user {ADMIN} kept", after["users"][p])
        expect(after["dirs"] == before["dirs"] and after["passwd"] == before["passwd"],
               "the service users and state directories unchanged", f"{before['dirs']} {after['dirs']}")
        b, a = before["db"], after["db"]
        expect(a["samples"] >= b["samples"] and a["outbox"] == b["outbox"] and a["last_seq"] == b["last_seq"]
               and (a["windows"], a["sum"]) == (b["windows"], b["sum"]),
               "the history database untouched by the upgrade (samples, windows, outbox)", f"before {b}\nafter {a}")
        ok(f"upgrade to {version}: configs, keys, users, state kept; history {a['samples']} samples, "
           f"outbox {a['outbox']} unsent batches kept")
        self.t.report.figure("backlog batches across the upgrade", a["outbox"])
        from units import Service
        for p in STATE:  # the units as the new version installed them
            self.units[p] = Service(p, probes.read(self.c.host(f"/lib/systemd/system/{p}.service")))
        self.start("apos-hub", "after-upgrade")
        t0 = time.time()
        self.start("apos-edge", "after-upgrade")

        def delivered():
            d = self.edge_db()
            return d if d["outbox"] == 0 else None
        wait_for("the backlog to be delivered after the upgrade (outbox empty)", delivered, timeout=90, interval=0.5)
        self.t.report.figure("backlog delivered after restart seconds", round(time.time() - t0, 1))
        ok(f"backlog of {a['outbox']} batches delivered {time.time() - t0:.1f} s after the edge's start")
        return before

    def forecasts(self):
        """tract ran under MemoryDenyWriteExecute: a forecast is stored once
        the history covers the model's window (120 s for plant-heater-fuel)."""
        d = wait_for("a forecast stored by the shipped plant-heater-fuel model (tract under MDWE)",
                     lambda: (lambda x: x if x["forecasts"] > 0 else None)(self.edge_db()),
                     timeout=max(20, 170 - (time.time() - self.first_sample_at)), interval=1)
        ok(f"{d['forecasts']} forecasts stored by the edge (tract ran under MDWE)")

    # --- remove and purge

    def remove_and_purge(self, purge_rules):
        c = self.c
        r = c.run(["apt-get", "remove", "-y", "apos-edge", "apos-hub"], timeout=300)
        with open(self.t.report.path("apt-remove.log"), "w") as f:
            f.write(r.stdout + r.stderr)
        for p in STATE:
            st = self.dpkg_status(p)
            expect(st.startswith("rc"), f"{p} removed with its configuration kept (dpkg status rc)", st)
            expect(not os.path.exists(c.host(f"/usr/bin/{p}")), f"/usr/bin/{p} gone after remove", "still there")
        kept = [EDGE_CONF, HUB_CONF, STATE["apos-edge"] + "/history.db", STATE["apos-hub"] + "/fleet.duckdb",
                STATE["apos-edge"] + "/users.db", KEYS + "/edge-node.key"]
        missing = [k for k in kept if not os.path.exists(c.host(k))]
        expect(not missing, "remove to keep configuration, keys and data", missing)
        ok("apt-get remove: binaries gone; " + ", ".join(kept) + " kept")
        r = c.run(["apt-get", "purge", "-y", "apos-edge", "apos-hub"], timeout=300)
        with open(self.t.report.path("apt-purge.log"), "w") as f:
            f.write(r.stdout + r.stderr)
        for p in STATE:
            st = self.dpkg_status(p)
            expect(not st.startswith(("ii", "rc")), f"{p} purged (unknown to dpkg or 'un')", st)
        for path, should_exist in purge_rules:
            exists = os.path.lexists(c.host(path))
            expect(exists == should_exist, f"after purge {path} {'kept' if should_exist else 'removed'} "
                   "(packaging/README.md)", "present" if exists else "absent")
        for p in STATE:
            expect(c.passwd(p) is not None, f"the system user {p} kept after purge (packaging/README.md)", "gone")
        ok("apt-get purge: " + "; ".join(f"{p} {'kept' if k else 'removed'}" for p, k in purge_rules) +
           "; users kept")
