"""Shared plumbing of the packaging test: steps with timings, assertions
that say what was expected, commands whose output is kept as artifacts.

Everything here is standard library only: the test runs with the host's
python3 before any venv exists (the Modbus simulator is the one exception,
started with $APOS_PYTHON).
"""

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from contextlib import contextmanager


class TestFailure(Exception):
    """A check failed; the message says what was expected and what was seen."""


def expect(cond, what, seen=None):
    """Fail the test unless `cond`: `what` is the expectation, `seen` what
    was found instead (printed below it)."""
    if not cond:
        msg = f"expected: {what}"
        if seen is not None:
            text = str(seen).rstrip()
            if len(text) > 6000:
                text = "…" + text[-6000:]
            msg += f"\n  seen: {text}"
        raise TestFailure(msg)


def say(msg):
    print(f"    {msg}", flush=True)


def ok(msg):
    print(f"    ok: {msg}", flush=True)


def warn(msg):
    print(f"    WARNING: {msg}", flush=True)


class Report:
    """Timings, figures and the artifact directory of one run."""

    def __init__(self, artifacts):
        self.artifacts = artifacts
        os.makedirs(artifacts, exist_ok=True)
        self.t0 = time.monotonic()
        self.steps = []  # (name, seconds, "ok" | "FAILED")
        self.figures = {}  # name -> value (also written to figures.json)
        self.notes = []  # honest remarks that belong in the summary
        self.failures = []  # deferred failures (see deferred())

    def path(self, *parts):
        p = os.path.join(self.artifacts, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def figure(self, name, value):
        self.figures[name] = value
        with open(self.path("figures.json"), "w") as f:
            json.dump(self.figures, f, indent=2, sort_keys=True)
            f.write("\n")

    def note(self, text):
        self.notes.append(text)

    @contextmanager
    def deferred(self):
        """A check whose failure does not stop the test: it is printed now,
        the run goes on (the later steps do not depend on it) and fails at
        the end."""
        try:
            yield
        except TestFailure as e:
            print(f"    FAILED (the test goes on, and fails at the end): {e}", flush=True)
            self.failures.append(str(e))

    @contextmanager
    def step(self, name):
        print(f"==> {name}", flush=True)
        start = time.monotonic()
        try:
            yield
        except BaseException:
            self.steps.append((name, time.monotonic() - start, "FAILED"))
            raise
        self.steps.append((name, time.monotonic() - start, "ok"))

    def summary(self, failed):
        total = time.monotonic() - self.t0
        lines = ["", "==> packaging test summary"]
        for name, secs, state in self.steps:
            lines.append(f"    {secs:7.1f} s  {state:6}  {name}")
        lines.append(f"    {total:7.1f} s  total")
        for k in sorted(self.figures):
            lines.append(f"    {k}: {self.figures[k]}")
        for n in self.notes:
            lines.append(f"    note: {n}")
        for f in self.failures:
            lines.append("    FAILED: " + f.replace("\n", "\n      "))
        lines.append(f"    artifacts: {self.artifacts}")
        lines.append(f"    result: {'FAILED' if failed else 'PASSED'}")
        text = "\n".join(lines) + "\n"
        print(text, flush=True)
        with open(self.path("summary.txt"), "w") as f:
            f.write(text)


class Runner:
    """Runs commands, logging each one (command, exit code, output) to
    `commands.log` in the artifact directory."""

    def __init__(self, report):
        self.report = report
        self.log = open(report.path("commands.log"), "a", buffering=1)

    def run(self, argv, check=True, input=None, env=None, timeout=600, quiet=False, what=None):
        """Run `argv`; return CompletedProcess with text stdout/stderr. With
        `check`, a non-zero exit fails the test with the output shown."""
        cmd = " ".join(shlex.quote(str(a)) for a in argv)
        self.log.write(f"\n$ {cmd}\n")
        start = time.monotonic()
        try:
            p = subprocess.run(
                [str(a) for a in argv],
                input=input,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            self.log.write(f"[timed out after {timeout} s]\n{e.stdout or ''}{e.stderr or ''}\n")
            raise TestFailure(f"expected: {what or cmd} to finish within {timeout} s") from None
        secs = time.monotonic() - start
        self.log.write(p.stdout)
        self.log.write(p.stderr)
        self.log.write(f"[exit {p.returncode}, {secs:.1f} s]\n")
        if check and p.returncode != 0:
            raise TestFailure(
                f"expected: {what or cmd} to succeed\n  exit code {p.returncode}\n"
                f"  stdout: {p.stdout[-4000:]}\n  stderr: {p.stderr[-4000:]}"
            )
        if not quiet and p.returncode == 0:
            self.log.flush()
        return p


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NotYet(Exception):
    """Raised by a polled function: not there yet; the message is what it saw."""


def wait_for(what, fn, timeout, interval=0.2):
    """Poll `fn` until it returns something truthy (returned). `fn` may raise
    NotYet (or any error: the thing polled may not exist yet); after
    `timeout` seconds the test fails with `what` as the expectation and the
    last value or error as what was seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except TestFailure:
            raise
        except NotYet as e:
            last = str(e)
        except Exception as e:  # noqa: BLE001 (reported if it lasts)
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise TestFailure(f"expected within {timeout} s: {what}\n  last seen: {last}")
        time.sleep(interval)


def fail_loudly_or_skip(msg):
    """A missing tool: under CI=true fail, elsewhere say how to get it and
    stop with exit code 0 (the same rule as the Rust tests' peers)."""
    if os.environ.get("CI") == "true":
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(1)
    print(f"SKIPPED: {msg}", file=sys.stderr)
    sys.exit(0)
