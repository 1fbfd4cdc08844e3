"""Structured logging (plain or JSON) and masking: logs never carry a full citizen ID or name."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_ID_LIKE = re.compile(r"(?<!\d)\d{9,14}(?!\d)")


def mask_id(value: str | None) -> str:
    """``001234567889`` → ``0012******89``: enough to tell records apart, not to identify."""
    if not value:
        return "-"
    if len(value) <= 6:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 6) + value[-2:]


def mask_ids(text: str) -> str:
    """Mask every run of 9–14 digits (a legacy or current citizen ID) in free text."""
    return _ID_LIKE.sub(lambda m: mask_id(m.group()), text)


def error_summary(exc: BaseException) -> str:
    """``Type: first line`` of an exception, IDs masked: safe to log, store and show."""
    first = (str(exc).strip().splitlines() or [""])[0][:500]
    name = type(exc).__name__
    if first.startswith(name):  # kafka-python's errors name their type themselves
        return mask_ids(first)
    return mask_ids(f"{name}: {first}" if first else name)


class MaskingFormatter(logging.Formatter):
    """Plain-text lines with ID-like digit runs masked (a safety net under careful call sites)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_ids(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and any ``extra=`` fields."""

    _skip = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in self._skip:
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return mask_ids(json.dumps(out, ensure_ascii=False, default=str))


class LibraryNoise(logging.Filter):
    """Demotes a client library's log records to DEBUG, keeping the latest problem it reported.

    kafka-python logs every failed connection attempt, request timeout and retry at WARNING or
    ERROR: ~600 lines in 3 minutes of a broker outage. The hub says the same once per state
    change (``hub.kafka.KafkaReachability``: "Kafka unreachable …" / "reachable again"),
    naming the error kind this filter saw last (:meth:`last_problem`). Put on a handler, it
    lets the library's records through only when the process logs at DEBUG, marked DEBUG.
    """

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix
        self.debug = False
        """Whether demoted records are still emitted (the process logs at DEBUG)."""
        self._problem: tuple[float, str, bool] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name != self.prefix and not name.startswith(self.prefix + "."):
            return True
        if record.levelno >= logging.WARNING:
            now = time.monotonic()
            summary, is_error = _problem_summary(record)
            kept = self._problem
            # An error (its kind) is kept over later plain notices for a while.
            if is_error or kept is None or not kept[2] or now - kept[0] > 10.0:
                self._problem = (now, summary, is_error)
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.debug

    def last_problem(self, within_s: float = 60.0) -> str | None:
        """The latest warning or error the library logged in the last ``within_s`` seconds."""
        problem = self._problem
        if problem is None or time.monotonic() - problem[0] > within_s:
            return None
        return problem[1]


def _problem_summary(record: logging.LogRecord) -> tuple[str, bool]:
    """``ErrorType: text`` of a record's exception (in its args or exc_info), else its text;
    and whether it was an exception."""
    args = record.args if isinstance(record.args, tuple) else ()
    exc = next((a for a in args if isinstance(a, BaseException)), None)
    if exc is None and record.exc_info:
        exc = record.exc_info[1]
    if exc is not None:
        return error_summary(exc), True
    try:
        text = record.getMessage()
    except (TypeError, ValueError):
        text = str(record.msg)
    return mask_ids(" ".join(text.split())[:300]), False


KAFKA_NOISE = LibraryNoise("kafka")
"""The filter :func:`setup_logging` puts on the process's handler for kafka-python."""


def setup_logging(level: str = "INFO", json_format: bool = False) -> None:
    """Configure the root logger once for a process."""
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    KAFKA_NOISE.debug = root.level <= logging.DEBUG
    handler.addFilter(KAFKA_NOISE)
    for noisy in ("kafka", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # kafka-python's event-loop timing notices ("Task ... ran for 0.1s") are not actionable.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
