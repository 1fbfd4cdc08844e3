"""The capture-mode registry: the shipped modes are the config's, a mode registered in a test
is driven by the runner and asked by ``check``/``drop``, and base.py imports no mode."""

from __future__ import annotations

import ast
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import connectors.modes
from connectors import base, ops, runner
from connectors.base import (
    WARN,
    CaptureMode,
    CheckResult,
    register_mode,
    registered_mode,
    registered_names,
)
from connectors.events import Batch
from hub.config import CAPTURE_MODES, DatabaseConfig, HubConfig, SourceConfig

ROOT = Path(__file__).resolve().parents[3]


class FakeCapture(CaptureMode):
    """A mode that replays ``script`` and records what the runner asked of it."""

    capture = "fake"
    warm_on_open = True
    script: tuple[Batch, ...] = ()
    instances: list[FakeCapture] = []
    log: list[tuple[str, object]] = []

    def __init__(self, ctx):
        super().__init__(ctx)
        self.pending: list[Batch] = []
        self.heartbeats = 0
        FakeCapture.instances.append(self)

    def open(self) -> None:
        self.pending = list(self.script)

    def next_batch(self) -> Batch:
        return self.pending.pop(0) if self.pending else Batch(caught_up=True, commit="idle")

    def commit(self, batch: Batch) -> None:
        self.log.append(("committed", batch.commit))

    def resnapshot(self) -> None:
        self.pending = list(self.script)

    def heartbeat(self) -> bool:
        self.heartbeats += 1
        return True

    def heartbeat_interval(self) -> float:
        return 3600.0

    def idle_interval(self) -> float:
        return 0.25

    def close(self) -> None:
        self.log.append(("closed", None))

    @classmethod
    def check_sql(cls, name, source):
        return [CheckResult(WARN, "fake", f"checked {name} by the mode")]

    @classmethod
    def drop(cls, name, source):
        return [f"released what {name} held at the source"]


class FakeDelivery:
    """Kafka that acknowledges everything at once."""

    warmed = False

    def __init__(self, name, kafka):
        pass

    def open(self) -> None:
        pass

    def warm(self) -> None:
        FakeDelivery.warmed = True

    def start(self, batch: Batch) -> Batch:
        return batch

    def finish(self, flight: Batch) -> None:
        FakeCapture.log.append(("delivered", flight.commit))

    def close(self, timeout: float) -> None:
        pass


class FakeLock:
    """The runner lock, always granted (no hub database here)."""

    held = True

    def __init__(self, url, name):
        pass

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass


class StopAfterWaits(threading.Event):
    """``stopping`` that records each wait and is set after ``n`` of them."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if len(self.waits) >= self.n:
            self.set()
        return self.is_set()


@pytest.fixture
def fake_mode(monkeypatch):
    """``FakeCapture`` registered for this test only, with the runner's state and Kafka faked."""
    monkeypatch.setattr(base, "_MODES", dict(base._MODES))
    register_mode(FakeCapture)
    FakeCapture.instances, FakeCapture.log, FakeCapture.script = [], [], ()
    FakeDelivery.warmed = False
    states: list[dict] = []
    monkeypatch.setattr(runner, "hub_engine", lambda url: None)
    monkeypatch.setattr(runner, "Delivery", FakeDelivery)
    monkeypatch.setattr(runner, "RunnerLock", FakeLock)
    monkeypatch.setattr(
        runner,
        "ensure_state",
        lambda engine, name, capture: {"state": "stopped", "rows_captured": 0},
    )
    monkeypatch.setattr(runner, "set_state", lambda engine, name, **values: states.append(values))
    monkeypatch.setattr(runner, "pending_requests", lambda engine, name: [])
    monkeypatch.setattr(runner, "mark_handled", lambda engine, ids: None)
    return states


def fake_config(url: str = "postgresql://hub@127.0.0.1/hub") -> HubConfig:
    source = SourceConfig(
        url=url, table="taxpayers", key="id", columns={"citizen_id": "cccd", "full_name": "ten"}
    )
    config = HubConfig(database=DatabaseConfig(url="postgresql://hub@127.0.0.1/hub"))
    # The config file only names the shipped modes; a test mode is set past validation.
    return config.model_copy(
        update={"sectors": {"tax": source.model_copy(update={"capture": "fake"})}}
    )


def test_the_shipped_modes_are_exactly_the_ones_the_config_accepts():
    assert set(registered_names()) == set(CAPTURE_MODES)
    for name in CAPTURE_MODES:
        assert registered_mode(name).capture == name
    poll = fake_config().sectors["tax"].model_copy(update={"capture": "poll"})
    assert connectors.modes.mode_class(poll).__name__ == "PollCapture"


def test_an_unknown_mode_names_the_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown capture mode 'nope' \(known: debezium, logical, poll"
    ):
        registered_mode("nope")


def test_a_second_mode_under_a_taken_name_is_refused(monkeypatch):
    monkeypatch.setattr(base, "_MODES", dict(base._MODES))

    class Impostor(FakeCapture):
        capture = "logical"

    with pytest.raises(ValueError, match="'logical' is already LogicalCapture"):
        register_mode(Impostor)
    with pytest.raises(ValueError, match="names no capture mode"):
        register_mode(type("Nameless", (FakeCapture,), {"capture": ""}))
    register_mode(FakeCapture)
    assert register_mode(FakeCapture) is FakeCapture  # registering twice is harmless


def test_the_runner_drives_a_registered_mode_delivering_before_committing(fake_mode):
    FakeCapture.script = (
        Batch(events=[(b"k1", b"v1")], commit=1, position="one"),
        Batch(events=[(b"k2", b"v2")], commit=2, position="two", caught_up=True),
    )
    code = runner.ConnectorRunner(fake_config(), "tax", once=True).run()
    assert code == 0
    assert FakeCapture.log == [
        ("delivered", 1), ("committed", 1), ("delivered", 2), ("committed", 2), ("closed", None)
    ]  # fmt: skip
    (mode,) = FakeCapture.instances
    assert mode.heartbeats == 1  # its own interval: once at the start, not again within 3600 s
    assert any("heartbeat_at" in s for s in fake_mode)
    assert FakeDelivery.warmed  # warm_on_open, though not snapshotting
    assert fake_mode[-1] == {"state": "stopped"}
    assert max(s.get("rows_captured", 0) for s in fake_mode) == 2


def test_the_runner_waits_the_modes_idle_interval_once_caught_up(fake_mode):
    stopping = StopAfterWaits(3)
    code = runner.ConnectorRunner(fake_config(), "tax", stopping=stopping).run()
    assert code == 0
    assert stopping.waits == [0.25, 0.25, 0.25]
    assert [e for e in FakeCapture.log if e[0] == "committed"] == [("committed", "idle")] * 3


def test_check_and_drop_ask_the_mode(fake_mode, tmp_path, monkeypatch):
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE taxpayers (id integer primary key, cccd text, ten text)")
    config = fake_config(f"sqlite:///{db}")
    lines = [r.line() for r in ops.check(config, "tax")]
    assert lines[0].startswith("ok   reachable")
    assert lines[-1] == "warn fake                   checked tax by the mode"

    forgotten: list[str] = []
    monkeypatch.setattr(ops, "_refuse_if_running", lambda config, name: None)
    monkeypatch.setattr(ops, "hub_engine", lambda url: None)
    monkeypatch.setattr(ops, "delete_connector_data", lambda engine, name: forgotten.append(name))
    monkeypatch.setattr(ops, "connector_row_counts", lambda engine, name: {"status": 1})
    assert ops.drop(config, "tax") == ops.Outcome(
        ["released what tax held at the source",
         "removed connector tax's rows from the hub database: status (1)"]
    )  # fmt: skip
    assert forgotten == ["tax"]


def test_base_imports_no_mode():
    code = (
        "import sys, connectors.base; "
        "loaded = [m for m in sys.modules if m.startswith(('connectors.logical.capture', "
        "'connectors.poll', 'connectors.snapshot', 'connectors.modes'))]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _module_imports(path: Path, package_root: Path) -> set[str]:
    """The connectors modules ``path`` imports at module level (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if not isinstance(node, ast.FunctionDef | ast.ClassDef) else ():
            if isinstance(sub, ast.Import):
                found |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                found.add(sub.module)
                found |= {f"{sub.module}.{a.name}" for a in sub.names}
    modules = {
        ".".join(p.relative_to(package_root.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in package_root.rglob("*.py")
    }
    return {m for m in found if m in modules}


def test_the_connectors_package_has_no_import_cycle():
    package = ROOT / "connectors"
    graph = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = _module_imports(path, package)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
