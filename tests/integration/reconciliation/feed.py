"""Builds hub configs and ChangeEvents for reconciler tests, and produces them to the topics."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from hub.avro.codec import Encoder
from hub.config import HubConfig, KafkaConfig, parse_config
from hub.idschemes import get_scheme
from hub.kafka import Topics, ensure_topics, make_producer

_ENCODER = Encoder("hub.ChangeEvent")
_SCHEME = get_scheme("vn")


def hub_config(db_url: str, kafka: KafkaConfig, **kwargs: Any) -> HubConfig:
    """A config with a registry and the given sectors (``{name: rules}``); source URLs are
    never used by the reconciler."""
    return parse_config(config_data(db_url, kafka, **kwargs), env={})


def config_data(
    db_url: str,
    kafka: KafkaConfig,
    *,
    sectors: dict[str, dict[str, Any]] | None = None,
    partitions: int = 3,
    max_poll_records: int = 10_000,
) -> dict[str, Any]:
    """The config file's content for :func:`hub_config`."""
    sectors = sectors if sectors is not None else {"tax": {"unique_citizen": True}, "bank": {}}
    source = {
        "url": "postgresql+psycopg://nobody@127.0.0.1:1/unused",
        "table": "public.t",
        "key": "k",
        "columns": {"citizen_id": "cid"},
    }
    return {
        "kafka": {
            "bootstrap_servers": kafka.bootstrap_servers,
            "topic_prefix": kafka.topic_prefix,
            "partitions": partitions,
        },
        "database": {"url": db_url},
        "id_scheme": "vn",
        "reconciler": {
            "group_id": f"rec-{kafka.topic_prefix}",
            "max_poll_records": max_poll_records,
        },
        "registry": source,
        "sectors": {name: {**source, "rules": rules} for name, rules in sectors.items()},
    }


_lsn = itertools.count(1000)


@dataclass
class Feed:
    """Encodes ChangeEvents like a connector would (key = normalized ID or sector:key) and
    sends them; LSNs increase with every event built, so later events are newer."""

    config: HubConfig
    sent: int = 0
    _producer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        topics = Topics(self.config.kafka.topic_prefix)
        ensure_topics(self.config.kafka, topics.all_for(self.config))
        self.topics = topics

    @property
    def producer(self):
        if self._producer is None:
            self._producer = make_producer(self.config.kafka)
        return self._producer

    def event(
        self,
        source: str,
        op: str,
        record_key: str,
        after: dict[str, Any] | None = None,
        *,
        lsn: int | None = None,
        commit_ts_ms: int | None = None,
    ) -> tuple[str, bytes, bytes]:
        """(topic, key, value) of one change; ``after`` holds canonical fields; the source
        commit time is now unless ``commit_ts_ms`` says otherwise."""
        now = int(time.time() * 1000)
        full = None
        if after is not None:
            full = {"attributes": {}, **after}
        key = self.key(source, record_key, (after or {}).get("citizen_id"))
        value = _ENCODER.encode(
            {
                "op": op,
                "before": None,
                "after": full,
                "record_key": record_key,
                "source": {
                    "system": "postgresql",
                    "connector": source,
                    "database": source,
                    "table": "public.t",
                    "position": "0/0",
                    "lsn": next(_lsn) if lsn is None else lsn,
                    "commit_ts_ms": now if commit_ts_ms is None else commit_ts_ms,
                    "snapshot": op == "r",
                },
                "ts_ms": now,
            }
        )
        return (self.topics.changes(source), key.encode(), value)

    @staticmethod
    def key(source: str, record_key: str, citizen_id: str | None) -> str:
        """The Kafka key a connector gives a change: normalized ID, else source:record_key."""
        cid = _SCHEME.normalize(citizen_id)
        return cid if cid else f"{source}:{record_key}"

    def send(self, *messages: tuple[str, bytes, bytes]) -> None:
        for topic, key, value in messages:
            self.producer.send(topic, key=key, value=value)
        self.producer.flush()
        self.sent += len(messages)

    def put(self, source: str, record_key: str, **after: Any) -> None:
        """Send one insert/update of ``record_key``."""
        self.send(self.event(source, "u", record_key, after))

    def delete(self, source: str, record_key: str, citizen_id: str | None = None) -> None:
        topic, _key, value = self.event(source, "d", record_key, None)
        self.send((topic, self.key(source, record_key, citizen_id).encode(), value))

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None


def person(citizen_id: str, name: str = "Nguyễn Văn An", dob: date = date(1985, 3, 14), **kw):
    """Canonical fields of a registry citizen or a faithful sector copy of one."""
    return {
        "citizen_id": citizen_id,
        "full_name": name,
        "date_of_birth": dob,
        "sex": kw.pop("sex", "M"),
        "province_code": kw.pop("province_code", "079"),
        **kw,
    }
