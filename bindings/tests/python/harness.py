"""Shared helpers for the Python binding tests: loading the generated module, valid
test data, an offline grid tree, a real gridsync-server on loopback, and the runner.

Plain asserts only; `python3 bindings/tests/python/run.py` runs every test_*.py here.
"""

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
GENERATED = os.environ.get(
    "GRIDSYNC_PY_BINDINGS", os.path.join(ROOT, "bindings", "generated", "python")
)
sys.path.insert(0, GENERATED)

import gridsync as g  # noqa: E402  (the generated module, found through sys.path)

_TMP = tempfile.mkdtemp(prefix="gridsync-py-")
atexit.register(shutil.rmtree, _TMP, True)
_counter = [0]


def tmp_path(name):
    """A fresh file path in this run's temporary directory."""
    _counter[0] += 1
    return os.path.join(_TMP, f"{_counter[0]:03d}-{name}")


# ---- valid test data ----

def id_number(serial):
    """A valid 18-digit resident ID number (GB 11643 check digit) born 1980-01-01."""
    body = f"15252219800101{serial % 1000:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    checks = "10X98765432"
    total = sum(int(d) * w for d, w in zip(body, weights))
    return body + checks[total % 11]


def mobile(serial):
    """A valid 11-digit mobile number."""
    return f"139{serial % 100000000:08d}"


def new_producer(grid, name="乌力吉家庭牧场", serial=1, **kw):
    """A valid household producer for `grid`."""
    fields = dict(
        name=name,
        producer_type=g.ProducerType.FAMILY_RANCH,
        owner="乌力吉",
        phone=mobile(serial),
        grid=grid,
        id_number=id_number(serial),
        address="别力古台镇宝力根嘎查",
        products=["羊肉"],
        scale=g.Scale(
            livestock=[g.LivestockEntry(species=g.Species.SHEEP_GOAT, on_hand=320, sold_per_year=150)]
        ),
        risk=g.RiskLevel.HIGH,
    )
    fields.update(kw)
    return g.NewProducer(**fields)


def yes(note=None):
    """A 'yes' answer."""
    return g.Answer(value=g.AnswerValue.YES_NO(answer=g.YesNoNa.YES), note=note)


def full_answers(template):
    """Answers for every required item of a template that takes yes/no or text."""
    out = {}
    for item in template.items:
        if not item.required:
            continue
        if item.answer.is_yes_no_na():
            out[item.id] = yes()
        elif item.answer.is_text():
            out[item.id] = g.Answer(value=g.AnswerValue.TEXT(text="无"), note=None)
        else:
            raise AssertionError(f"unexpected required item type {item.answer}")
    return out


# ---- an offline device (profile and grid tree set by hand) ----

REGION, LEAGUE, BANNER, TOWNSHIP, VILLAGE, VILLAGE2 = (
    "T15", "T1525", "T152522", "T152522101", "T152522101201", "T152522101202",
)


def offline_grids():
    """A small grid tree: region → league → banner → township → two villages."""
    L = g.GridLevel
    return [
        g.GridNode(code=REGION, name="内蒙古自治区", level=L.REGION, kind=g.GridKind.MIXED, parent=None),
        g.GridNode(code=LEAGUE, name="锡林郭勒盟", level=L.LEAGUE, kind=g.GridKind.PASTORAL, parent=REGION),
        g.GridNode(code=BANNER, name="阿巴嘎旗", level=L.BANNER, kind=g.GridKind.PASTORAL, parent=LEAGUE),
        g.GridNode(code=TOWNSHIP, name="别力古台镇", level=L.TOWNSHIP, kind=g.GridKind.PASTORAL, parent=BANNER),
        g.GridNode(code=VILLAGE, name="宝力根嘎查", level=L.VILLAGE, kind=g.GridKind.PASTORAL, parent=TOWNSHIP),
        g.GridNode(code=VILLAGE2, name="吉日嘎郎图嘎查", level=L.VILLAGE, kind=g.GridKind.PASTORAL, parent=TOWNSHIP),
    ]


PEOPLE = {
    "liaison": g.Person(id="p-liaison", name="巴特尔", phone="13900000001", role=g.Role.LIAISON, grids=[VILLAGE]),
    "supervisor": g.Person(id="p-super", name="其其格", phone="13900000002", role=g.Role.SUPERVISOR, grids=[TOWNSHIP]),
    "county": g.Person(id="p-county", name="张明", phone="13900000003", role=g.Role.COUNTY_REVIEWER, grids=[BANNER]),
}


def offline_store(role="liaison", path=None):
    """A store with the test grid tree and a person set up, never enrolled."""
    store = g.GridStore.open(path or tmp_path("offline.db"))
    store.upsert_grids(offline_grids())
    store.set_profile(PEOPLE[role])
    return store


def expect_error(cls, fn, *args, **kwargs):
    """Calls fn and returns the exception, which must be an instance of `cls`."""
    try:
        fn(*args, **kwargs)
    except cls as e:
        return e
    except Exception as e:  # noqa: BLE001 - reported as a test failure
        raise AssertionError(f"expected {cls.__qualname__}, got {type(e).__qualname__}: {e}")
    raise AssertionError(f"expected {cls.__qualname__}, no error was raised")


# ---- a real server on loopback ----

class Server:
    """`gridsync-server serve --demo` on 127.0.0.1 with a fresh data directory."""

    LISTEN = re.compile(r"^listening on (http://\S+)$")
    CODE = re.compile(r"^enrolment code for (\w+) (\S+) \((.*)\): (\S+)$")

    def __init__(self, binary):
        self.binary = binary
        self.data = tempfile.mkdtemp(prefix="gridsync-server-", dir=_TMP)
        self.people = {}  # role -> person id
        self.codes = {}  # role -> demo code
        self.url = None
        self.devices = {}  # name -> enrolled GridStore
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [binary, "serve", "--data", self.data, "--listen", "127.0.0.1:0", "--demo"],
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(self.data, "server.log"), "wb"),
            text=True,
        )
        deadline = time.monotonic() + 60
        while self.url is None:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"server exited before listening; log: {self.log_tail()}")
            line = line.strip()
            m = self.CODE.match(line)
            if m:
                self.people[m.group(1)] = m.group(2)
                self.codes[m.group(1)] = m.group(4)
            m = self.LISTEN.match(line)
            if m:
                self.url = m.group(1)
            if time.monotonic() > deadline:
                raise AssertionError("server did not print its listening line within 60 s")
        self.startup_s = time.monotonic() - started
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def log_tail(self):
        try:
            with open(os.path.join(self.data, "server.log"), encoding="utf-8", errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def admin(self, *args):
        """Runs `gridsync-server admin --data DIR ARGS` and returns its stdout lines."""
        out = subprocess.run(
            [self.binary, "admin", "--data", self.data, *args],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, f"admin {args} failed: {out.stderr}"
        return [l for l in out.stdout.splitlines() if l.strip()]

    def issue_code(self, role):
        """A fresh one-time enrolment code for the demo person of `role`."""
        return self.admin("issue-code", "--person", self.people[role])[-1].strip()

    def device(self, role, name):
        """The store of device `name`, enrolled as the demo person of `role` on first use
        and shared by later tests (the server allows 10 enrolments a minute per address)."""
        if name not in self.devices:
            store = g.GridStore.open(tmp_path(f"{name}.db"))
            store.enroll(self.url, self.issue_code(role), name)
            self.devices[name] = store
        store = self.devices[name]
        assert store.profile().id == self.people[role], f"device {name} belongs to another role"
        store.sync(None, None)
        return store

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_server = []


def server_binary():
    """Path of the gridsync-server binary, or None when it is not built."""
    path = os.environ.get("GRIDSYNC_SERVER")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        path = os.path.join(target, "debug", "gridsync-server")
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


class Skip(Exception):
    """Raised by a test that cannot run here (reported, not counted as passed)."""


def server():
    """The shared server of this run, started on first use."""
    if not _server:
        binary = server_binary()
        if binary is None:
            if os.environ.get("GRIDSYNC_SKIP_SERVER") == "1":
                raise Skip("gridsync-server is not built (GRIDSYNC_SKIP_SERVER=1)")
            raise AssertionError("gridsync-server binary not found; set GRIDSYNC_SERVER")
        _server.append(Server(binary))
        atexit.register(_server[0].stop)
    return _server[0]


def stop_server():
    """Stops the shared server if it was started."""
    if _server:
        _server[0].stop()
