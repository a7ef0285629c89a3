"""Reading systemd unit files, so the test starts the services the way the
installed units say (ExecStartPre, ExecStart, User, groups, UMask,
Environment) instead of repeating their command lines here."""

import re
import shlex


def parse_unit(text):
    """{section: {key: [values in order]}}. Handles comments, backslash
    continuations and empty assignments (which reset a list, as in systemd)."""
    sections = {}
    current = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            line = pending + " " + line
            pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            current = sections.setdefault(m.group(1), {})
            continue
        if current is None or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if value == "":
            current[key] = []
        else:
            current.setdefault(key, []).append(value)
    return sections


def exec_argv(value):
    """An Exec*= value as argv: systemd's prefixes (-, @, :, +, !, !!) are
    dropped and reported. Returns (argv, prefixes)."""
    m = re.match(r"^([-@:+!]*)(.*)$", value)
    prefixes, rest = m.group(1), m.group(2)
    argv = shlex.split(rest)
    if "@" in prefixes:  # the second word is argv[0]; we keep it simple
        argv = [argv[0]] + argv[2:]
    return argv, prefixes


class Service:
    """What the test needs from one unit's [Service] section."""

    def __init__(self, name, text):
        self.name = name
        self.text = text
        self.sections = parse_unit(text)
        s = self.sections.get("Service", {})
        self.service = s
        self.type = last(s, "Type", "simple")
        self.user = last(s, "User", None)
        self.group = last(s, "Group", None)
        self.supplementary = [g for v in s.get("SupplementaryGroups", []) for g in v.split()]
        self.umask = last(s, "UMask", "0022")
        self.exec_start_pre = [exec_argv(v) for v in s.get("ExecStartPre", [])]
        starts = [exec_argv(v) for v in s.get("ExecStart", [])]
        self.exec_start = starts[0] if len(starts) == 1 else None
        self.n_exec_start = len(starts)
        self.environment = {}
        for v in s.get("Environment", []):
            for kv in shlex.split(v):
                k, _, val = kv.partition("=")
                self.environment[k] = val
        self.environment_files = s.get("EnvironmentFile", [])
        self.working_directory = last(s, "WorkingDirectory", None)
        self.state_directory = [d for v in s.get("StateDirectory", []) for d in v.split()]
        self.watchdog_sec = last(s, "WatchdogSec", None)
        self.no_new_privileges = last(s, "NoNewPrivileges", "no") in ("yes", "true", "1", "on")
        self.memory_deny_write_execute = last(s, "MemoryDenyWriteExecute", "no") in ("yes", "true", "1", "on")

    def watchdog_usec(self):
        """WatchdogSec= in microseconds (plain seconds or a 30s / 1min form)."""
        if not self.watchdog_sec:
            return None
        units = {"": 1, "s": 1, "sec": 1, "ms": 0.001, "min": 60, "m": 60}
        total = 0.0
        for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", self.watchdog_sec):
            total += float(num) * units.get(unit, 1)
        return int(total * 1_000_000)


def last(section, key, default):
    vals = section.get(key)
    return vals[-1] if vals else default


def parse_exposure(text):
    """The overall exposure of `systemd-analyze security` output."""
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", text)
    return float(m.group(1)) if m else None
