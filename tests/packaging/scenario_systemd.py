"""The installed packages with systemd as PID 1 (systemd-nspawn --boot of
the same Debian 12 root): the postinst starts the units, the real sandbox
applies (seccomp, MemoryDenyWriteExecute, ProtectSystem, an empty
capability set), READY/WATCHDOG/STOPPING go to systemd, logs to journald,
an upgrade with the edge running goes through the postinst's try-restart,
and remove stops the units."""

import json
import re
import time

import probes
from common import NotYet, TestFailure, expect, ok, say, wait_for
from scenario import EDGE_CONF, HUB_CONF, KEYS, Scenario

PACKAGES = ("apos-edge", "apos-hub")


class SystemdScenario(Scenario):
    """Scenario's configuration, probes and checksums; services through
    systemctl instead of the chroot's stand-in."""

    def show(self, p, *props):
        out = self.c.run(["systemctl", "show", p, "-p", ",".join(props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_active(self, p, since_pid=None):
        def active():
            s = self.show(p, "ActiveState", "SubState", "MainPID", "Result", "NRestarts")
            if s["ActiveState"] == "failed":
                raise TestFailure(f"expected: {p}.service to run\n  it failed: {s}\n{self.journal(p, 40)}")
            if s["ActiveState"] == "active" and s["MainPID"] not in ("0", since_pid):
                return s
            raise NotYet(s)
        s = wait_for(f"{p}.service active (Type=notify: READY=1 received by systemd)", active, timeout=90)
        return s

    def journal(self, p, n):
        return self.c.run(["journalctl", "-u", p, "--no-pager", "-n", str(n), "-o", "short-precise"],
                          check=False).stdout

    def journal_json(self, p):
        out = self.c.run(["journalctl", "-u", p, "--no-pager", "-o", "json", "--output-fields="
                          "MESSAGE,PRIORITY,DEVICE,TAG,NODE,SITE,SEQ,MODEL,SYSLOG_IDENTIFIER,_PID,_SYSTEMD_UNIT"
                          ], check=False).stdout
        entries = []
        for line in out.splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries

    # --- the flow

    def after_install(self, version):
        """The postinst started both units with the shipped configuration
        (no devices, no nodes yet); they answer."""
        for p in PACKAGES:
            s = self.wait_active(p)
            ok(f"{p}.service {s['ActiveState']}/{s['SubState']} after `apt install` (started by the postinst), "
               f"pid {s['MainPID']}")
        st, body = wait_for("the hub's /healthz on the shipped configuration (https://127.0.0.1:8444)",
                            lambda: self.get("https://127.0.0.1:8444/healthz"), timeout=30)
        wait_for("the hub's /readyz 200 on the shipped configuration",
                 lambda: self.get("https://127.0.0.1:8444/readyz", want=200), timeout=30)
        wait_for("the edge's HMI on the shipped configuration (https://127.0.0.1:8443/)",
                 lambda: self.get("https://127.0.0.1:8443/"), timeout=30)
        ok("shipped configuration: hub /healthz and /readyz 200 on :8444, edge HMI 200 on :8443 (HTTPS, "
           "the postinst's certificates), broker on :8883")

    def restart_configured(self, tag):
        for p in ("apos-hub", "apos-edge"):
            before = self.show(p, "MainPID")["MainPID"]
            t0 = time.time()
            self.c.run(["systemctl", "restart", p], timeout=120)
            s = self.wait_active(p, since_pid=before)
            self.t.report.figure(f"{p} systemctl restart seconds ({tag})", round(time.time() - t0, 2))
            ok(f"{p}.service restarted with the test's configuration: pid {s['MainPID']}")

    def sandbox(self):
        """The units' hardening is in force on the running processes."""
        for p in PACKAGES:
            pid = self.show(p, "MainPID")["MainPID"]
            status = self.c.run(["cat", f"/proc/{pid}/status"]).stdout
            f = dict(re.findall(r"^(\w+):\s*(.*)$", status, re.M))
            expect(f.get("NoNewPrivs") == "1" and f.get("Seccomp") == "2" and int(f.get("CapEff", "1"), 16) == 0
                   and int(f.get("CapBnd", "1"), 16) == 0,
                   f"{p}: NoNewPrivs 1, Seccomp 2 (SystemCallFilter, MemoryDenyWriteExecute), no capabilities",
                   {k: f.get(k) for k in ("Uid", "NoNewPrivs", "Seccomp", "CapEff", "CapBnd")})
            mounts = self.c.run(["cat", f"/proc/{pid}/mountinfo"]).stdout
            root_ro = any(line.split()[4] == "/" and re.search(r"(^|,)ro(,|$)", line.split()[5])
                          for line in mounts.splitlines())
            expect(root_ro, f"{p}: / read-only in its mount namespace (ProtectSystem=strict)", mounts[:2000])
            sec = self.c.run(["systemd-analyze", "security", "--no-pager", p]).stdout
            with open(self.t.report.path(f"security-online-{p}.txt"), "w") as fh:
                fh.write(sec)
            score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", sec)
            self.t.report.figure(f"{p}.service exposure (loaded by systemd 252)", score and float(score.group(1)))
            ok(f"{p}: running as uid {f['Uid'].split()[0]}, NoNewPrivs, seccomp filter, no capabilities, / read-only;"
               f" exposure of the loaded unit {score and score.group(1)}")

    def watchdog(self):
        for p in PACKAGES:
            first = self.show(p, "WatchdogTimestampMonotonic", "WatchdogUSec")
            expect(first["WatchdogUSec"] not in ("0", "infinity", ""), f"{p}: WatchdogSec set", first)

            def pinged():
                now = self.show(p, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
                return now if now not in ("0", first["WatchdogTimestampMonotonic"]) else None
            wait_for(f"{p}: a WATCHDOG=1 ping seen by systemd (WatchdogTimestamp moves)", pinged, timeout=40)
            ok(f"{p}: systemd receives WATCHDOG=1 (WatchdogUSec {first['WatchdogUSec']})")

    def journal_fields(self):
        entries = self.journal_json("apos-edge")
        with open(self.t.report.path("journal-systemd-apos-edge.jsonl"), "w") as f:
            for e in entries:
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
        hub = self.journal_json("apos-hub")
        with open(self.t.report.path("journal-systemd-apos-hub.jsonl"), "w") as f:
            for e in hub:
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
        dev = [e for e in entries if e.get("DEVICE") == "pkgtest-plc"]
        expect(dev, "journald to hold apos-edge entries with the field DEVICE=pkgtest-plc", entries[-5:])
        e = dev[0]
        expect("pkgtest-plc" not in str(e.get("MESSAGE")), "the device in its own field, not in MESSAGE", e)
        ok(f"journald (journalctl -u apos-edge -o json): {json.dumps({k: v for k, v in e.items() if not k.startswith('__')}, ensure_ascii=False)}")

    def upgrade_running(self, debs, version):
        """The hub stopped, the edge running with a backlog, then the
        upgrade: the postinst's try-restart restarts the edge (SIGTERM, flush,
        new binary), leaves the stopped hub stopped."""
        self.c.run(["systemctl", "stop", "apos-hub"], timeout=120)
        wait_for("a backlog of at least 5 batches while the hub is stopped", self.backlog, timeout=90, interval=0.5)
        before = {"confs": {f: probes.sha256(self.c.host(f)) for f in (EDGE_CONF, HUB_CONF)},
                  "db": self.edge_db(), "edge_pid": self.show("apos-edge", "MainPID")["MainPID"]}
        out, _ = self.install(debs, version, "systemd-upgrade", expect_started=True)
        expect("Configuration file" not in out, "no conffile prompt on the upgrade", out[-2000:])
        s = self.wait_active("apos-edge", since_pid=before["edge_pid"])
        hub = self.show("apos-hub", "ActiveState")["ActiveState"]
        expect(hub == "inactive", "the stopped hub left stopped by the upgrade (try-restart)", hub)
        after = self.edge_db()
        expect({f: probes.sha256(self.c.host(f)) for f in (EDGE_CONF, HUB_CONF)} == before["confs"],
               "the configuration unchanged by the upgrade", "changed")
        expect(after["samples"] >= before["db"]["samples"] and after["outbox"] >= before["db"]["outbox"] > 0,
               "history and the unsent backlog kept through the restart by the upgrade",
               f"before {before['db']}\nafter {after}")
        ok(f"upgrade to {version} with the edge running: restarted by the postinst (pid {before['edge_pid']} → "
           f"{s['MainPID']}), hub left stopped, backlog {after['outbox']} batches kept")
        self.c.run(["systemctl", "start", "apos-hub"], timeout=120)
        self.wait_active("apos-hub")
        wait_for("the backlog delivered after the upgrade (outbox empty)",
                 lambda: (lambda d: d if d["outbox"] == 0 else None)(self.edge_db()), timeout=90, interval=0.5)
        ok("backlog delivered")
        return before

    def remove(self):
        r = self.c.run(["apt-get", "remove", "-y", "apos-edge", "apos-hub"], timeout=300)
        with open(self.t.report.path("apt-remove-systemd.log"), "w") as f:
            f.write(r.stdout + r.stderr)
        for p in PACKAGES:
            st = self.show(p, "ActiveState", "LoadState")
            expect(st.get("ActiveState") in ("inactive", None) or st.get("LoadState") in ("not-found", "masked"),
                   f"{p} stopped by apt remove (prerm)", st)
        left = self.c.run(["sh", "-c", "cat /proc/[0-9]*/comm 2>/dev/null | grep -E '^apos-(edge|hub)$' || true"]
                          ).stdout.strip()
        expect(not left, "no apos process left after apt remove", left)
        for keep in (EDGE_CONF, HUB_CONF, "/var/lib/apos/edge/history.db", KEYS + "/edge-node.key"):
            expect(self.c.run(["test", "-e", keep], check=False).returncode == 0, f"{keep} kept by remove", "gone")
        self.c.run(["apt-get", "purge", "-y", "apos-edge", "apos-hub"], timeout=300)
        for gone in (EDGE_CONF, HUB_CONF, "/var/lib/apos/edge", "/var/lib/apos/hub"):
            expect(self.c.run(["test", "-e", gone], check=False).returncode != 0, f"{gone} removed by purge",
                   "still there")
        ok("apt remove stopped both units and kept config and data; purge removed them")
