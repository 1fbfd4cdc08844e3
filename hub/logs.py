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
    return mask_ids(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


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
    for noisy in ("kafka", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # kafka-python's event-loop timing notices ("Task ... ran for 0.1s") are not actionable.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
