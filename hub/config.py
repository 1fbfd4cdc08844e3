"""The hub's YAML config file as typed, frozen models (SPEC §8), validated once at load."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from hub.errors import ConfigError, FatalError
from hub.idschemes import SCHEMES
from hub.interpolation import interpolate
from hub.vocabulary import CANDIDATE_KEYS, CANONICAL_FIELDS, RULE_CODES, SEVERITIES

CAPTURE_MODES = ("logical", "poll", "snapshot", "debezium")
"""The capture modes a source's ``capture:`` may name, each registered by its module in
``connectors.modes`` (the hub does not import the connectors)."""
_CAPTURE_SETTINGS = {
    "poll": "{timestamp_column, incrementing_column}",
    "debezium": "{topics: [<Debezium change topic>, ...]}",
}
"""Modes that cannot run without a settings block named after them, and what it holds."""
_READS_TOPICS = frozenset({"debezium"})
"""Modes that read Kafka topics rather than a database: ``url`` and ``table`` are optional."""


def _capture_problem(capture: Any, settings: Any) -> str | None:
    """Why a source with this ``capture:`` and settings block cannot run, or None."""
    needs = _CAPTURE_SETTINGS.get(capture) if isinstance(capture, str) else None
    if needs and not settings:
        return f"capture {capture} needs a {capture}: {needs}"
    return None


def _missing_source_keys(src: Mapping[str, Any]) -> list[str]:
    """``url``/``table`` a source lacks although its capture mode reads a database."""
    capture = src.get("capture", "logical")
    if isinstance(capture, str) and capture in _READS_TOPICS:
        return []
    return [k for k in ("url", "table") if src.get(k) is None]


DEFAULT_CONFIG = "hub.yaml"
_SECTOR_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$"
)
METRICS_ROLES = ("connector", "reconciler", "serve", "run")
"""The processes that serve metrics; each has its own default port so they share a host."""
DEFAULT_METRICS_PORTS = {"connector": 9464, "reconciler": 9465, "serve": 9466, "run": 9464}


def parse_host_port(value: str, *, allow_any_port: bool = False) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port`` → (host without brackets, port); ValueError saying why.

    The host is a DNS name, an IPv4 address or a bracketed IPv6 address; the port is 1–65535
    (0, "any free port", too when ``allow_any_port``: listen addresses only).
    """
    if not isinstance(value, str):
        raise ValueError("expected a host:port string")
    text = value.strip()
    if "://" in text:
        raise ValueError(f"{value!r} is not host:port (no scheme:// prefix)")
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"{value!r} is not host:port (IPv6 as [address]:port)")
        host, port = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"{value!r} is not host:port")
        if ":" in host:
            raise ValueError(f"{value!r} is not host:port (put an IPv6 address in brackets)")
        if not host:
            raise ValueError(f"{value!r} is not host:port (empty host)")
        if not _HOSTNAME.match(host):
            raise ValueError(f"{value!r}: {host!r} is not a host name or address")
    if not port.isascii() or not port.isdigit():
        raise ValueError(f"{value!r} is not host:port (port {port!r} is not a number)")
    low = 0 if allow_any_port else 1
    if not low <= int(port) <= 65535:
        raise ValueError(f"{value!r}: port {int(port)} is outside {low}–65535")
    return host, int(port)


def parse_host_port_list(value: str) -> list[tuple[str, int]]:
    """A comma-separated list of ``host:port`` (Kafka bootstrap servers); ValueError saying why."""
    if not isinstance(value, str):
        raise ValueError("expected a comma-separated host:port string")
    items = [item.strip() for item in value.split(",")]
    if not any(items):
        raise ValueError("expected at least one host:port")
    if not all(items):
        raise ValueError(f"{value!r} has an empty entry between commas")
    return [parse_host_port(item) for item in items]


def _listen_addr(v: str) -> str:
    parse_host_port(v, allow_any_port=True)
    return v


def _server_list(v: str) -> str:
    parse_host_port_list(v)
    return ",".join(item.strip() for item in v.split(","))  # kafka-python does not strip


ListenAddress = Annotated[str, AfterValidator(_listen_addr)]
"""An address to listen on: ``host:port`` / ``[ipv6]:port``, port 0 = any free port."""
ServerList = Annotated[str, AfterValidator(_server_list)]
"""Comma-separated ``host:port`` servers to connect to (stored without spaces)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaConfig(_Model):
    """Where the broker is and how to talk to it."""

    bootstrap_servers: ServerList = "localhost:9092"
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")] = "hub"
    partitions: Annotated[int, Field(ge=1, le=1024)] = 12
    replication_factor: Annotated[int, Field(ge=1, le=16)] = 1
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                k
                for k in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password")
                if getattr(self, k) is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                )
        return self


class DatabaseConfig(_Model):
    """The hub's own PostgreSQL store."""

    url: str = "postgresql+psycopg://hub@localhost:5432/hub"
    pool_size: Annotated[int, Field(ge=1, le=200)] = 10

    _check_url = field_validator("url")(lambda cls, v: _check_db_url(v))


class ApiConfig(_Model):
    """The web server (REST API and steward UI)."""

    listen: ListenAddress = "127.0.0.1:8080"
    session_secret: SecretStr | None = None
    """Signs the UI session cookie. Unset: one secret kept in the hub database, shared by
    every ``hub serve`` process and kept across restarts."""
    cookie_secure: bool | None = None
    """``Secure`` on the session cookie: None marks it Secure when the request came over
    TLS (``https``, or ``X-Forwarded-Proto: https`` from a trusted proxy)."""
    session_idle_minutes: Annotated[float, Field(gt=0, le=7 * 24 * 60)] = 30.0
    session_max_hours: Annotated[float, Field(gt=0, le=30 * 24)] = 12.0
    login_failures_per_user: Annotated[int, Field(ge=1, le=10_000)] = 20
    """Failed logins a user name may have in a minute; more are refused before any hash."""
    login_failures_per_address: Annotated[int, Field(ge=1, le=100_000)] = 100
    """Failed logins one client address may have in a minute, across all user names."""
    login_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    """Password hashes (argon2, 64 MiB each) verified at once; more logins wait."""
    login_wait_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    """How long a login waits for a free hash slot before it is answered 503."""
    stats_retention_days: Annotated[float, Field(gt=0, le=3660)] = 30.0
    """Raw ``stats_snapshots`` older than this are pruned as new ones are written; the
    per-hour and per-day rollups the dashboard series are read from are kept."""


class MetricsListen(_Model):
    """One metrics address per process role, so every role can run on one host."""

    connector: ListenAddress = f"127.0.0.1:{DEFAULT_METRICS_PORTS['connector']}"
    reconciler: ListenAddress = f"127.0.0.1:{DEFAULT_METRICS_PORTS['reconciler']}"
    serve: ListenAddress = f"127.0.0.1:{DEFAULT_METRICS_PORTS['serve']}"
    run: ListenAddress = f"127.0.0.1:{DEFAULT_METRICS_PORTS['run']}"


class MetricsConfig(_Model):
    """Where a long-running process serves Prometheus metrics.

    ``listen`` is one ``host:port`` every process uses (one process per container), or a
    mapping by role (``connector``, ``reconciler``, ``serve``, ``run``) whose missing roles
    take their default ports 9464, 9465, 9466 and 9464.
    """

    listen: Annotated[
        Annotated[ListenAddress, Tag("str")] | Annotated[MetricsListen, Tag("by_role")],
        Discriminator(lambda v: "by_role" if isinstance(v, dict | MetricsListen) else "str"),
    ] = MetricsListen()
    path: str = "/metrics"

    def address(self, role: str) -> str:
        """The ``host:port`` the process of ``role`` serves metrics on."""
        if role not in METRICS_ROLES:
            raise ValueError(f"unknown metrics role {role!r} (known: {', '.join(METRICS_ROLES)})")
        return self.listen if isinstance(self.listen, str) else getattr(self.listen, role)

    def key(self, role: str) -> str:
        """The config key that sets ``address(role)``, for error messages."""
        return "metrics.listen" if isinstance(self.listen, str) else f"metrics.listen.{role}"


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(default=False, alias="json")


class ColumnMapping(_Model):
    """One canonical field read from a source column, with an optional value map or date format."""

    column: Annotated[str, Field(min_length=1)]
    map: dict[str, str | None] | None = None
    format: str | None = None
    default: str | None = None


class PollConfig(_Model):
    """Polling capture: timestamp + incrementing column, like Kafka Connect's JDBC source."""

    timestamp_column: Annotated[str, Field(min_length=1)]
    incrementing_column: Annotated[str, Field(min_length=1)]
    interval_s: Annotated[float, Field(gt=0, le=86400)] = 5.0
    margin_s: Annotated[float, Field(ge=0, le=3600)] = 5.0
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000


class LogicalConfig(_Model):
    """Logical decoding capture (pgoutput); names default to hub_<source>."""

    slot: str | None = None
    publication: str | None = None
    heartbeat_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000


class SnapshotConfig(_Model):
    chunk_size: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    interval_s: Annotated[float, Field(ge=0)] = 0.0


class DebeziumConfig(_Model):
    """``capture: debezium``: read an existing Debezium connector's change topics.

    ``converter`` is the Kafka Connect value converter Debezium writes with: ``json`` (with
    or without ``schemas.enable``, told apart per message) or ``avro`` (Confluent wire
    format, schemas from ``schema_registry_url``). ``bootstrap_servers`` defaults to the
    hub's own ``kafka`` settings (security settings are the hub's either way);
    ``group_id`` defaults to ``hub-debezium-<source name>``.
    """

    topics: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)]
    converter: Literal["json", "avro"] = "json"
    schema_registry_url: str | None = None
    bootstrap_servers: ServerList | None = None
    group_id: Annotated[str, Field(min_length=1)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000

    @field_validator("schema_registry_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s):// URL")
        return v

    @model_validator(mode="after")
    def _avro_needs_registry(self) -> DebeziumConfig:
        if self.converter == "avro" and not self.schema_registry_url:
            raise ValueError(
                "converter avro needs schema_registry_url (a Confluent-compatible registry)"
            )
        return self


class RulesConfig(_Model):
    """Per-sector rule switches (SPEC §5)."""

    unique_citizen: bool = False
    disabled: tuple[str, ...] = ()
    severities: dict[str, str] = Field(default_factory=dict)
    strict_script_names: bool = False
    candidate_keys: tuple[str, ...] = CANDIDATE_KEYS
    """Which blocking keys find registry candidates for this sector (default: all)."""

    @field_validator("candidate_keys")
    @classmethod
    def _known_keys(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [k for k in v if k not in CANDIDATE_KEYS]
        if unknown:
            raise ValueError(
                f"unknown candidate key {', '.join(unknown)} (known: {', '.join(CANDIDATE_KEYS)})"
            )
        return v

    @field_validator("disabled")
    @classmethod
    def _known_rules(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [r for r in v if r not in RULE_CODES]
        if unknown:
            raise ValueError(f"unknown rule {', '.join(unknown)} (known: {', '.join(RULE_CODES)})")
        return v

    @field_validator("severities")
    @classmethod
    def _known_severities(cls, v: dict[str, str]) -> dict[str, str]:
        for rule, sev in v.items():
            if rule not in RULE_CODES:
                raise ValueError(f"unknown rule {rule}")
            if sev not in SEVERITIES:
                raise ValueError(f"{rule}: severity {sev!r} is not one of {', '.join(SEVERITIES)}")
        return v


class CorrectionsConfig(_Model):
    """How a sector takes corrections: ``approval`` needs a second person (an approver who
    is not the proposer) to approve each one before it is sent."""

    approval: bool = False


class SourceConfig(_Model):
    """One captured database table: the registry or a sector."""

    url: str | None = None
    """Required except for ``capture: debezium`` (which reads topics)."""
    table: Annotated[str, Field(min_length=1)] | None = None
    """Required except for ``capture: debezium`` (default: each envelope's ``source.table``)."""
    key: str | tuple[str, ...]
    capture: Literal[CAPTURE_MODES] = "logical"
    columns: dict[str, str | ColumnMapping]
    poll: PollConfig | None = None
    debezium: DebeziumConfig | None = None
    logical: LogicalConfig = LogicalConfig()
    snapshot: SnapshotConfig = SnapshotConfig()
    rules: RulesConfig = RulesConfig()
    corrections: CorrectionsConfig = CorrectionsConfig()

    _check_url = field_validator("url")(lambda cls, v: v if v is None else _check_db_url(v))

    @field_validator("columns")
    @classmethod
    def _canonical_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        problem = _unknown_fields(v)
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _capture_settings(self) -> SourceConfig:
        problem = _capture_problem(self.capture, getattr(self, self.capture, None))
        if problem:
            raise ValueError(problem)
        return self

    @property
    def key_columns(self) -> tuple[str, ...]:
        return (self.key,) if isinstance(self.key, str) else tuple(self.key)

    def mapping(self, field: str) -> ColumnMapping | None:
        """The column mapping of a canonical field, or None when the source lacks it."""
        m = self.columns.get(field)
        if m is None or isinstance(m, ColumnMapping):
            return m
        return ColumnMapping(column=m)


class DueDays(_Model):
    """Days a steward has to work a mismatch, by severity, counted from when it was first
    seen; past that it is overdue."""

    critical: Annotated[int, Field(ge=1, le=3650)] = 3
    high: Annotated[int, Field(ge=1, le=3650)] = 7
    medium: Annotated[int, Field(ge=1, le=3650)] = 14
    low: Annotated[int, Field(ge=1, le=3650)] = 30


class SectorDueDays(_Model):
    """A sector's own due days; a severity left out takes ``queue.due_days``."""

    critical: Annotated[int, Field(ge=1, le=3650)] | None = None
    high: Annotated[int, Field(ge=1, le=3650)] | None = None
    medium: Annotated[int, Field(ge=1, le=3650)] | None = None
    low: Annotated[int, Field(ge=1, le=3650)] | None = None


# ------------------------------------------------------------------ queue: dismissal reasons

UNSPECIFIED_DISMISSAL = "unspecified"
"""What counts and filters call a dismissal without a code (dismissed before codes existed)."""
_DISMISSAL_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class DismissalReason(_Model):
    """One reason a steward may give to dismiss a mismatch: a stable ``code`` (counted,
    filtered on, stored) and the ``label`` people read. ``note_required``: the free text
    must say more (default: only for ``other``)."""

    code: str
    label: Annotated[str, Field(min_length=1, max_length=200)]
    note_required: bool = None  # type: ignore[assignment]

    @field_validator("code")
    @classmethod
    def _code_shape(cls, v: str) -> str:
        if not _DISMISSAL_CODE.match(v) or v == UNSPECIFIED_DISMISSAL:
            raise ValueError(
                f"bad code {v!r}: lower-case letters, digits and _, starting with a letter, "
                f"not {UNSPECIFIED_DISMISSAL!r}"
            )
        return v

    @model_validator(mode="after")
    def _default_note_required(self) -> DismissalReason:
        if self.note_required is None:
            object.__setattr__(self, "note_required", self.code == "other")
        return self


DEFAULT_DISMISSAL_REASONS = (
    DismissalReason(code="same_person_transliteration", label="Same person, transliteration"),
    DismissalReason(code="registry_wrong", label="Registry wrong"),
    DismissalReason(code="test_record", label="Test record"),
    DismissalReason(code="other", label="Other"),
)


class QueueConfig(_Model):
    """The steward queue: due days per severity (``due_days``), overridden per sector
    (``sector_due_days: {tax: {critical: 1}}``), and the reason codes a dismissal names."""

    due_days: DueDays = DueDays()
    sector_due_days: dict[str, SectorDueDays] = Field(default_factory=dict)

    def days(self, sector: str, severity: str) -> int:
        """Due days of a mismatch of ``severity`` in ``sector``."""
        own = self.sector_due_days.get(sector)
        days = getattr(own, severity, None) if own is not None else None
        return days if days is not None else getattr(self.due_days, severity)

    def due_table(self) -> tuple[tuple[str | None, str, int], ...]:
        """(sector or None for every other sector, severity, days) of every due rule."""
        out: list[tuple[str | None, str, int]] = [
            (None, sev, getattr(self.due_days, sev)) for sev in SEVERITIES
        ]
        for sector, own in sorted(self.sector_due_days.items()):
            for sev in SEVERITIES:
                days = getattr(own, sev)
                if days is not None:
                    out.append((sector, sev, days))
        return tuple(out)

    dismissal_reasons: Annotated[tuple[DismissalReason, ...], Field(min_length=1)] = (
        DEFAULT_DISMISSAL_REASONS
    )
    """The codes a dismissal must name, in the order the UI offers them."""

    @field_validator("dismissal_reasons")
    @classmethod
    def _unique_codes(cls, v: tuple[DismissalReason, ...]) -> tuple[DismissalReason, ...]:
        codes = [r.code for r in v]
        dup = sorted({c for c in codes if codes.count(c) > 1})
        if dup:
            raise ValueError(f"duplicate code {', '.join(dup)}")
        return v

    def dismissal_reason(self, code: str) -> DismissalReason | None:
        return next((r for r in self.dismissal_reasons if r.code == code), None)

    def dismissal_label(self, code: str | None) -> str:
        """The label of ``code`` for people; the code itself once dropped from the config."""
        if code is None:
            return "Unspecified"
        r = self.dismissal_reason(code)
        return r.label if r else code


class ReconcilerConfig(_Model):
    group_id: str = "hub-reconciler"
    max_poll_records: Annotated[int, Field(ge=1, le=100_000)] = 10_000
    strict_script_names: bool = False


class HubConfig(_Model):
    """The whole config file."""

    kafka: KafkaConfig = KafkaConfig()
    database: DatabaseConfig = DatabaseConfig()
    id_scheme: str = "vn"
    api: ApiConfig = ApiConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    reconciler: ReconcilerConfig = ReconcilerConfig()
    queue: QueueConfig = QueueConfig()
    registry: SourceConfig | None = None
    sectors: dict[str, SourceConfig] = Field(default_factory=dict)
    _file: Path | None = PrivateAttr(None)
    """The file :func:`load_config` read this config from (None: built in code)."""

    @property
    def file(self) -> Path | None:
        """The config file this config was loaded from, for :func:`reload_config`."""
        return self._file

    @field_validator("id_scheme")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if v not in SCHEMES:
            raise ValueError(f"unknown scheme {v!r} (known: {', '.join(sorted(SCHEMES))})")
        return v

    @field_validator("sectors")
    @classmethod
    def _sector_names(cls, v: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        bad = [k for k in v if not _SECTOR_NAME.match(k) or k == "registry"]
        if bad:
            raise ValueError(
                f"bad sector name {', '.join(map(repr, bad))}: lower-case letters, digits and _, "
                "starting with a letter, not 'registry'"
            )
        return v

    @model_validator(mode="after")
    def _sources_have_citizen_id(self) -> HubConfig:
        # Reported per source with its own path by _source_problems; this keeps models honest
        # when built in code rather than loaded from a file.
        for name, src in self.sources().items():
            if "citizen_id" not in src.columns:
                raise ValueError(f"{_source_path(name)}.columns.citizen_id: required")
            for key in _missing_source_keys(src.model_dump(include={"capture", "url", "table"})):
                raise ValueError(f"{_source_path(name)}.{key}: required")
        return self

    @model_validator(mode="after")
    def _queue_sectors(self) -> HubConfig:
        unknown = sorted(set(self.queue.sector_due_days) - set(self.sectors))
        if unknown:
            raise ValueError(
                f"queue.sector_due_days: unknown sector {', '.join(unknown)} "
                f"(configured: {', '.join(self.sectors) or 'none'})"
            )
        return self

    def sources(self) -> dict[str, SourceConfig]:
        """Every captured source by connector name: ``registry`` and each sector."""
        out = {"registry": self.registry} if self.registry else {}
        out.update(self.sectors)
        return out

    def redacted(self) -> dict[str, Any]:
        """The config as plain data with every secret masked, for printing."""
        data = self.model_dump(mode="json", by_alias=True)
        data["database"]["url"] = redact_url(self.database.url)
        for name, src in self.sources().items():
            path = data["registry"] if name == "registry" else data["sectors"][name]
            if src.url is not None:
                path["url"] = redact_url(src.url)
            if src.debezium is not None and src.debezium.schema_registry_url:
                path["debezium"]["schema_registry_url"] = redact_url(
                    src.debezium.schema_registry_url
                )
        return data


def _unknown_fields(columns: Mapping[Any, Any]) -> str | None:
    """Why ``columns`` names a field that is neither canonical nor ``attributes.<name>``."""
    unknown = [
        str(k)
        for k in columns
        if k not in CANONICAL_FIELDS and not str(k).startswith("attributes.")
    ]
    if not unknown:
        return None
    return (
        f"unknown canonical field {', '.join(unknown)} "
        f"(known: {', '.join(CANONICAL_FIELDS)}, or attributes.<name>)"
    )


def _source_path(name: str) -> str:
    return "registry" if name == "registry" else f"sectors.{name}"


def _check_db_url(v: str) -> str:
    if not re.match(r"^[a-z][a-z0-9+]*://", v):
        raise ValueError("not a database URL (expected e.g. postgresql+psycopg://user@host/db)")
    _check_mysql_url(v)
    return v


_MYSQL_FORM = "mysql+pymysql://user:password@host:3306/db?charset=utf8mb4"


def _check_mysql_url(v: str) -> None:
    """A MySQL/MariaDB URL names its driver (PyMySQL, the ``mysql`` extra) and, where it
    sets a character set, utf8mb4 (``utf8`` is MySQL's 3-byte subset)."""
    scheme, _, rest = v.partition("://")
    if scheme.split("+")[0] not in ("mysql", "mariadb"):
        return
    if "+" not in scheme:
        raise ValueError(f"{scheme}:// names no driver: use {_MYSQL_FORM} (the mysql extra)")
    charset = re.search(r"[?&]charset=([^&]*)", rest)
    if charset and charset.group(1).lower() != "utf8mb4":
        raise ValueError(
            f"charset={charset.group(1)} cannot hold every name: use charset=utf8mb4 ({_MYSQL_FORM})"
        )


def redact_url(url: str) -> str:
    """``scheme://user:secret@host/db`` → ``scheme://user:***@host/db``."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _format_errors(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        if "str" in loc and isinstance(e.get("input"), dict):
            continue  # a mapping given where `str | ColumnMapping` is allowed: the str branch's noise
        # Unions (str | ColumnMapping) add the member type to the path: drop it.
        loc = [p for p in loc if p not in ("str", "by_role", "ColumnMapping", "tuple[str, ...]")]
        loc = [p for p in loc if not p.startswith(("function-after", "literal["))]
        path = ".".join(loc) or "<root>"
        kind = e["type"]
        if kind == "missing":
            msg = "required"
        elif kind == "extra_forbidden":
            msg = "unknown key"
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if (
                "input" in e
                and kind in ("literal_error", "enum")
                and not isinstance(e["input"], dict)
            ):
                msg = f"{msg} (got {e['input']!r})"
        if msg.startswith(("registry.", "sectors.")) and ": " in msg:
            problems.append(msg)  # a model-level check that already names its path
        else:
            problems.append(f"{path}: {msg}")
    return list(dict.fromkeys(problems))


def _source_problems(raw: Any) -> list[str]:
    """Source checks run on the raw data, so they are reported even when a sibling key is bad.

    (pydantic skips a model's own validators once any of its fields failed.)
    """
    problems: list[str] = []
    sources: list[tuple[str, Any]] = []
    if isinstance(raw.get("registry"), dict):
        sources.append(("registry", raw["registry"]))
    if isinstance(raw.get("sectors"), dict):
        for name, src in raw["sectors"].items():
            if not _SECTOR_NAME.match(str(name)) or name == "registry":
                problems.append(
                    f"sectors: bad sector name {name!r}: lower-case letters, digits and _, "
                    "starting with a letter, not 'registry'"
                )
            sources.append((f"sectors.{name}", src))
    for path, src in sources:
        if not isinstance(src, dict):
            continue
        cols = src.get("columns")
        if isinstance(cols, dict):
            if "citizen_id" not in cols:
                problems.append(f"{path}.columns.citizen_id: required")
            problem = _unknown_fields(cols)
            if problem:
                problems.append(f"{path}.columns: {problem}")
        capture = src.get("capture")
        problem = _capture_problem(capture, src.get(capture) if isinstance(capture, str) else None)
        if problem:
            problems.append(f"{path}: {problem}")
        problems += [f"{path}.{key}: required" for key in _missing_source_keys(src)]
    return problems


def apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``HUB_DATABASE_URL`` and ``HUB_KAFKA_BOOTSTRAP`` select external servers (SPEC §9)."""
    raw = dict(raw)
    if env.get("HUB_DATABASE_URL"):
        raw["database"] = {**(raw.get("database") or {}), "url": env["HUB_DATABASE_URL"]}
    if env.get("HUB_KAFKA_BOOTSTRAP"):
        raw["kafka"] = {**(raw.get("kafka") or {}), "bootstrap_servers": env["HUB_KAFKA_BOOTSTRAP"]}
    return raw


def parse_config(
    raw: Any, *, env: Mapping[str, str] | None = None, source: str | None = None
) -> HubConfig:
    """Validate already-parsed YAML data; raise ConfigError with every problem by key path."""
    env = os.environ if env is None else env
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            ["<root>: expected a mapping of keys (kafka, database, sectors, …)"], source
        )
    raw, problems = interpolate(raw, env)
    raw = apply_env_overrides(raw, env)
    problems += _source_problems(raw)
    try:
        cfg = HubConfig.model_validate(raw)
    except ValidationError as err:
        problems += _format_errors(err)
        cfg = None
    if problems:
        raise ConfigError([_name_override(p, env) for p in dict.fromkeys(problems)], source)
    assert cfg is not None
    return cfg


_OVERRIDES = {
    "database.url: ": "HUB_DATABASE_URL",
    "kafka.bootstrap_servers: ": "HUB_KAFKA_BOOTSTRAP",
}


def _name_override(problem: str, env: Mapping[str, str]) -> str:
    """A problem of a key an environment override set says so (the file is not at fault)."""
    for key, var in _OVERRIDES.items():
        if problem.startswith(key) and env.get(var):
            return f"{problem} (value from {var})"
    return problem


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--config`` wins, then ``HUB_CONFIG``, then ``hub.yaml``."""
    return Path(explicit or os.environ.get("HUB_CONFIG") or DEFAULT_CONFIG)


def load_config(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> HubConfig:
    """Read, interpolate and validate the config file."""
    p = config_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: file not found (use --config or HUB_CONFIG)"], str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot read: {exc}"], str(p)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: YAML syntax error: {problem}"], str(p)) from None
    config = parse_config(_resolve_files(raw, p.absolute().parent), env=env, source=str(p))
    config._file = p.absolute()
    return config


def reload_config(config: HubConfig) -> HubConfig:
    """The config file ``config`` came from, read and validated again (ConfigError when it
    is now invalid; FatalError when ``config`` was not loaded from a file)."""
    if config.file is None:
        raise FatalError("the config was not loaded from a file: there is nothing to re-read")
    return load_config(config.file)


_FILE_KEYS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
"""Config values that name files: a relative one is taken from the config file's folder,
once, here, so every process finds the same file whatever its working directory."""


def _resolve_files(raw: Any, base: Path) -> Any:
    kafka = raw.get("kafka") if isinstance(raw, dict) else None
    if not isinstance(kafka, dict):
        return raw
    resolved = dict(kafka)
    for key in _FILE_KEYS:
        value = kafka.get(key)
        if isinstance(value, str) and value and "${" not in value and not Path(value).is_absolute():
            resolved[key] = str(base / value)
    return {**raw, "kafka": resolved}
