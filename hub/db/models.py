"""Tables of the hub's store and their indexes. Alembic migrations in ``hub/db/migrations``
create them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hub.vocabulary import SEVERITIES

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("viewer", "steward", "approver", "operator", "admin")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class RegistryCitizen(Base):
    """The reconciler's replica of the population registry, keyed by normalized citizen ID."""

    __tablename__ = "registry_citizens"

    citizen_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    legacy_id: Mapped[str | None] = mapped_column(String(32))
    full_name: Mapped[str | None] = mapped_column(Text)
    name_folded: Mapped[str | None] = mapped_column(Text)
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(1))
    province_code: Mapped[str | None] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(Text)
    date_of_death: Mapped[date | None] = mapped_column(Date)
    attributes: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    source_position: Mapped[str | None] = mapped_column(String(64))
    # The registry row's own key (its primary key as text): updates and deletes find the
    # replica row by it, even when the change's before-image lacks the citizen ID.
    record_key: Mapped[str | None] = mapped_column(String(256))
    # Source position of the state held (LSN / commit time): an older change is ignored.
    source_lsn: Mapped[int | None] = mapped_column(BigInteger)
    source_ts: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index("ix_registry_citizens_record_key", "record_key", unique=True),
        Index("ix_registry_citizens_legacy_id", "legacy_id"),
        # Candidate suggestions: same birth date, then folded-name similarity; the citizen
        # ID in the key makes the candidate read an index-only scan.
        Index("ix_registry_citizens_dob_name_id", "date_of_birth", "name_folded", "citizen_id"),
        # Candidates by name key within a year, and by sorted full name in a province
        # (migration 0008 defines the IMMUTABLE functions hub_name_key / hub_name_sorted).
        Index(
            "ix_registry_citizens_name_key_dob",
            text("hub_name_key(name_folded)"),
            "date_of_birth",
            postgresql_include=["citizen_id", "name_folded"],
        ),
        Index(
            "ix_registry_citizens_name_province",
            text("hub_name_sorted(name_folded)"),
            "province_code",
            "citizen_id",
            postgresql_include=["name_folded"],
        ),
    )


class SectorRecord(Base):
    """The last known state of one sector record, as mapped onto the canonical record."""

    __tablename__ = "sector_records"

    sector: Mapped[str] = mapped_column(String(40), primary_key=True)
    record_key: Mapped[str] = mapped_column(String(256), primary_key=True)
    citizen_id_raw: Mapped[str | None] = mapped_column(String(64))
    citizen_id: Mapped[str | None] = mapped_column(String(32))  # normalized; None if unusable
    legacy_id: Mapped[str | None] = mapped_column(String(32))
    full_name: Mapped[str | None] = mapped_column(Text)
    name_folded: Mapped[str | None] = mapped_column(Text)
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(1))
    province_code: Mapped[str | None] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(String(64))
    last_activity_date: Mapped[date | None] = mapped_column(Date)
    attributes: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    verified: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), nullable=False)
    source_ts: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source_lsn: Mapped[int | None] = mapped_column(BigInteger)  # an older change is ignored
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        # A registry change fans out to every sector record carrying the citizen ID.
        Index("ix_sector_records_citizen_id", "citizen_id"),
        # The queue's name search: prefixes of folded words (migration 0014).
        Index(
            "ix_sector_records_name_words",
            text("to_tsvector('simple'::regconfig, coalesce(name_folded, ''))"),
            postgresql_using="gin",
        ),
    )


class Mismatch(Base):
    """One finding per (sector, record, rule, field); reopened rather than duplicated."""

    __tablename__ = "mismatches"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    sector: Mapped[str] = mapped_column(String(40), nullable=False)
    record_key: Mapped[str] = mapped_column(String(256), nullable=False)
    rule: Mapped[str] = mapped_column(String(40), nullable=False)
    field: Mapped[str] = mapped_column(String(40), nullable=False, server_default="")
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="open")
    resolution: Mapped[str | None] = mapped_column(String(32))
    citizen_id: Mapped[str | None] = mapped_column(String(64))  # as the sector holds it
    province_code: Mapped[str | None] = mapped_column(String(16))
    sector_value: Mapped[str | None] = mapped_column(Text)
    registry_value: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)
    suggestions: Mapped[list | None] = mapped_column(JSONB)
    values_hash: Mapped[str | None] = mapped_column(String(64))  # dismissal holds while equal
    assignee: Mapped[str | None] = mapped_column(String(128))
    # The configured reason code of a steward's dismissal (migration 0015); NULL while not
    # dismissed and for dismissals made before codes existed.
    dismissal_code: Mapped[str | None] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime] = _now()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _now()
    # The correction whose value the source came to carry (migration 0010): set when the
    # reconciler confirms it, so a ``fixed_at_source`` resolution names what fixed it.
    correction_id: Mapped[int | None] = mapped_column(
        ForeignKey("corrections.id", ondelete="SET NULL", use_alter=True)
    )

    __table_args__ = (
        UniqueConstraint("sector", "record_key", "rule", "field"),
        Index("ix_mismatches_status_sector_rule", "status", "sector", "rule"),
        Index("ix_mismatches_status_severity_id", "status", "severity", "id"),
        # (citizen_id) went in migration 0017: ix_mismatches_citizen_id_prefix serves it.
        Index("ix_mismatches_record_key", "record_key"),
        Index("ix_mismatches_first_seen_at", "first_seen_at"),
        # The working queue (open and in review) oldest or newest first (migration 0018):
        # through the index above, a page first walks past the closed mismatches at the
        # old end (38,885 on the bench store, 80 ms).
        Index(
            "ix_mismatches_active_first_seen_at",
            "first_seen_at",
            "id",
            postgresql_where=text("status IN ('open', 'in_review')"),
        ),
        Index(
            "ix_mismatches_dismissed_code",
            "sector",
            "dismissal_code",
            postgresql_where=text("status = 'dismissed'"),
        ),
        # "Which records does the hub suggest this citizen for": containment in the
        # candidates (migration 0011).
        Index(
            "ix_mismatches_suggestions",
            "suggestions",
            postgresql_using="gin",
            postgresql_ops={"suggestions": "jsonb_path_ops"},
            postgresql_where=text("suggestions IS NOT NULL"),
        ),
    )


class MismatchHistory(Base):
    """Every transition and comment: who, when, why."""

    __tablename__ = "mismatch_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    mismatch_id: Mapped[int] = mapped_column(
        ForeignKey("mismatches.id", ondelete="CASCADE"), nullable=False
    )
    at: Mapped[datetime] = _now()
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    dismissal_code: Mapped[str | None] = mapped_column(String(64))  # a dismissal's reason code

    __table_args__ = (Index("ix_mismatch_history_mismatch_id", "mismatch_id", "id"),)


class Correction(Base):
    """What a steward asks a sector to change on one mismatch's record (migration 0010):
    ``candidate`` (the record should carry citizen ID ``proposed_value``) or ``value`` (the
    field should hold ``proposed_value``). Statuses and transitions:
    :data:`reconciliation.corrections.CORRECTION_TRANSITIONS`."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    mismatch_id: Mapped[int] = mapped_column(
        ForeignKey("mismatches.id", ondelete="CASCADE"), nullable=False
    )
    sector: Mapped[str] = mapped_column(String(40), nullable=False)
    record_key: Mapped[str] = mapped_column(String(256), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    field: Mapped[str] = mapped_column(String(40), nullable=False)
    current_value: Mapped[str | None] = mapped_column(Text)
    proposed_value: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="proposed")
    proposed_by: Mapped[str] = mapped_column(String(128), nullable=False)
    approved_by: Mapped[str | None] = mapped_column(String(128))
    agency_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index("ix_corrections_sector_status_id", "sector", "status", "id"),
        Index("ix_corrections_mismatch_id", "mismatch_id"),
        # One live correction per mismatch: a second proposal waits for the first to end.
        Index(
            "ix_corrections_live_mismatch",
            "mismatch_id",
            unique=True,
            postgresql_where=text("status IN ('proposed', 'approved', 'sent')"),
        ),
        # The reconciler looks up the confirmable corrections of a batch's records.
        Index(
            "ix_corrections_confirmable_record",
            "sector",
            "record_key",
            postgresql_where=text("status IN ('sent', 'acknowledged')"),
        ),
    )


class CorrectionHistory(Base):
    """Every step of a correction: who, when, which action, why."""

    __tablename__ = "correction_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    correction_id: Mapped[int] = mapped_column(
        ForeignKey("corrections.id", ondelete="CASCADE"), nullable=False
    )
    at: Mapped[datetime] = _now()
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_correction_history_correction_id", "correction_id", "id"),)


class ConsumerOffset(Base):
    """The truth about what a consumer group has applied: next offset per partition."""

    __tablename__ = "consumer_offsets"

    group_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    topic: Mapped[str] = mapped_column(String(249), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = _now()


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    password_hash: Mapped[str | None] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), nullable=False)
    created_at: Mapped[datetime] = _now()
    # The console's language the user chose (en, vi, ar); NULL: the browser's.
    locale: Mapped[str | None] = mapped_column(String(16))


class ApiToken(Base):
    """Bearer tokens, stored as a SHA-256 of 256 random bits (shown once at creation)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = _now()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UiSession(Base):
    """A steward's login: the cookie carries a random token, the hub keeps its SHA-256, so
    logout, disabling the user and expiry end it for every copy of the cookie."""

    __tablename__ = "ui_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    created_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_ui_sessions_user_id", "user_id"),)


class LoginFailure(Base):
    """A failed login (never the password), counted per user name and per address to throttle
    guessing before any hash is computed; pruned after an hour."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = _now()
    user_name: Mapped[str] = mapped_column(String(128), nullable=False)
    address: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (
        Index("ix_login_failures_at", "at"),
        Index("ix_login_failures_user_name_at", "user_name", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )


class SavedFilter(Base):
    """A steward's named queue filter: the queue page's query string (migration 0014)."""

    __tablename__ = "saved_filters"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    query: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (UniqueConstraint("user_id", "name"),)


class HubSetting(Base):
    """Values the hub's processes share, kept in the database (the UI session secret when
    the config sets none, so restarts and replicas keep sessions)."""

    __tablename__ = "hub_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()


class AuditLog(Base):
    """Every action and every view of a citizen's record details."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = _now()
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(256))
    detail: Mapped[dict | None] = mapped_column(JSONB)

    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor_at", "actor", "at"),
    )


class ConnectorState(Base):
    """What a connector last reported: state, position, lag, counts."""

    __tablename__ = "connector_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    capture: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, server_default="stopped")
    position: Mapped[str | None] = mapped_column(String(128))
    snapshot_done: Mapped[bool] = mapped_column(
        Boolean, server_default=text("false"), nullable=False
    )
    snapshot_progress: Mapped[dict | None] = mapped_column(JSONB)
    rows_captured: Mapped[int] = mapped_column(BigInteger, server_default=text("0"), nullable=False)
    lag_bytes: Mapped[int | None] = mapped_column(BigInteger)
    lag_seconds: Mapped[float | None] = mapped_column(Float)
    last_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()


class ConnectorRequest(Base):
    """An operator's request (pause, resume, restart, resnapshot), handled by the connector."""

    __tablename__ = "connector_requests"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    connector: Mapped[str] = mapped_column(String(64), nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    requested_by: Mapped[str] = mapped_column(String(128), nullable=False)
    requested_at: Mapped[datetime] = _now()
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[str | None] = mapped_column(Text)
    """How the connector handled it: ``applied: …``, ``unchanged``, ``refused: <why>``."""

    __table_args__ = (Index("ix_connector_requests_pending", "connector", "handled_at"),)


class DlqReplay(Base):
    """A connector dead letter ``hub dlq replay`` published again, so a second replay skips
    it (migration 0009). ``letter`` is the SHA-256 of the letter's content, which survives a
    re-created topic whose offsets start again at 0; no citizen value is kept."""

    __tablename__ = "dlq_replays"

    letter: Mapped[str] = mapped_column(String(64), primary_key=True)
    connector: Mapped[str] = mapped_column(String(64), nullable=False)
    kafka_partition: Mapped[int] = mapped_column(Integer, nullable=False)
    kafka_offset: Mapped[int] = mapped_column(BigInteger, nullable=False)
    replayed_at: Mapped[datetime] = _now()


class StatsSnapshot(Base):
    """Per-sector figures over time, for the dashboard charts."""

    __tablename__ = "stats_snapshots"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = _now()
    sector: Mapped[str] = mapped_column(String(40), nullable=False)
    records_seen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    records_verified: Mapped[int] = mapped_column(BigInteger, nullable=False)
    open_by_rule: Mapped[dict] = mapped_column(JSONB, nullable=False)

    __table_args__ = (Index("ix_stats_snapshots_sector_at", "sector", "at"),)


class StatsRollup(Base):
    """The last ``stats_snapshots`` row of each hour and each UTC day per sector, kept by a
    statement trigger as snapshots are written (migration 0017): the dashboard series are
    read from here, and raw snapshots older than ``api.stats_retention_days`` are pruned."""

    __tablename__ = "stats_rollups"

    grain: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(40), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    records_seen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    records_verified: Mapped[int] = mapped_column(BigInteger, nullable=False)
    open_by_rule: Mapped[dict] = mapped_column(JSONB, nullable=False)

    __table_args__ = (CheckConstraint("grain IN ('hour', 'day')", name="grain"),)


class ConnectorOffset(Base):
    """A connector's machine-readable resume position (e.g. the poll watermark), written only
    after Kafka acknowledged every message before it."""

    __tablename__ = "connector_offsets"

    connector: Mapped[str] = mapped_column(String(64), primary_key=True)
    offset: Mapped[dict] = mapped_column(JSONB, nullable=False)
    updated_at: Mapped[datetime] = _now()


class ConnectorSnapshotKey(Base):
    """One source row seen by a ``snapshot`` connector: a key missing from a later full read
    was deleted at the source. ``run`` is the snapshot run that last saw it."""

    __tablename__ = "connector_snapshot_keys"

    connector: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_key: Mapped[str] = mapped_column(String(256), primary_key=True)
    citizen_id: Mapped[str | None] = mapped_column(String(64))  # as the source holds it
    row_hash: Mapped[str | None] = mapped_column(String(32))
    run: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("ix_connector_snapshot_keys_connector_run", "connector", "run"),)


class ConnectorRecordId(Base):
    """The Kafka key (normalized citizen ID, else ``<connector>:<record key>``) a logical
    connector's record last carried, kept where the source's deletes and updates do not say
    it (replica identity other than FULL): the connector keys the record's delete, or the
    retraction of a changed ID, by it (migration 0013). Written per acknowledged batch."""

    __tablename__ = "connector_record_ids"

    connector: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_key: Mapped[str] = mapped_column(String(256), primary_key=True)
    kafka_key: Mapped[str] = mapped_column(String(320), nullable=False)


class ReconcilerTombstone(Base):
    """A record the reconciler saw deleted, with the delete's source position: a change
    older than the delete (re-delivered, or overtaken across partitions) does not revive it.
    ``source`` is ``registry`` or a sector name."""

    __tablename__ = "reconciler_tombstones"

    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    record_key: Mapped[str] = mapped_column(String(256), primary_key=True)
    source_lsn: Mapped[int | None] = mapped_column(BigInteger)
    source_ts: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime] = _now()


class ReconcilerLegacyLock(Base):
    """One row per legacy ID number a reconciler batch read across partitions through: a
    batch locks the rows of its legacy numbers (sorted) before it reads the sector records
    carrying them or the citizens holding them, so two reconcilers applying the two sides
    at once take turns (:func:`reconciliation.store.records.lock_legacy_ids`, migration 0006)."""

    __tablename__ = "reconciler_legacy_locks"

    legacy_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class ReconcilerOutbox(Base):
    """Messages (mismatch events, dead letters) written in the batch's transaction and
    produced to Kafka after it commits; a crash in between re-sends them at the next start."""

    __tablename__ = "reconciler_outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(249), nullable=False)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = _now()


class FigureCount(Base):
    """Running counts of the gauges: per sector (``rule`` = ``severity`` = '') the records
    and verified records, per (sector, rule, severity) the open and in-review mismatches
    and, apart, the in-review ones (migration 0018).

    Statement-level triggers on ``sector_records`` and ``mismatches`` (migration 0005) add
    one delta row per statement and key, in the writer's transaction, so the sums are exact
    at every snapshot without counting the big tables; readers fold the deltas back into one
    row per key (:func:`reconciliation.store.figures.figure_counts`)."""

    __tablename__ = "figure_counts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    sector: Mapped[str] = mapped_column(String(40), nullable=False)
    rule: Mapped[str] = mapped_column(String(40), nullable=False, server_default="")
    severity: Mapped[str] = mapped_column(String(16), nullable=False, server_default="")
    records: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    verified: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    open_mismatches: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # The part of open_mismatches in review (migration 0018): open alone is the difference.
    in_review_mismatches: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default="0"
    )


# ---------------------------------------------------------------- indexes of the steward queue
# The API's queries at millions of rows; declared here so Alembic autogenerate sees them
# (migration 0004 creates them).

# Severity as a number (critical highest), as SQL with literal constants: queries must spell
# it exactly like this for PostgreSQL to use the index below (and migration 0004).
SEVERITY_RANK_SQL = (
    "CASE severity "
    + " ".join(f"WHEN '{s}' THEN {i + 1}" for i, s in enumerate(SEVERITIES))
    + " ELSE 0 END"
)

# (status, sector, rule, id), the keyset of the usual filters, went in migration 0017:
# ix_mismatches_status_sector_rule serves those pages nearly as fast at a tenth the size.
# The queue sorted by severity, critical first.
SEVERITY_RANK = Index(
    "ix_mismatches_severity_rank_id",
    # Line breaks where PostgreSQL prints them back, so Alembic autogenerate sees no change.
    text(
        "(\n"
        + SEVERITY_RANK_SQL.replace(" WHEN", "\nWHEN")
        .replace(" ELSE", "\nELSE")
        .replace(" END", "\nEND")
        + ")"
    ),
    Mismatch.id,
)
# A province's queue and its count.
PROVINCE = Index(
    "ix_mismatches_province_status_id",
    Mismatch.province_code,
    Mismatch.status,
    Mismatch.id,
)
# Prefix search (LIKE 'abc%') on the record key and the citizen ID as the sector holds it,
# whatever the database collation.
RECORD_KEY_PREFIX = Index(
    "ix_mismatches_record_key_prefix",
    Mismatch.record_key,
    postgresql_ops={"record_key": "varchar_pattern_ops"},
)
CITIZEN_ID_PREFIX = Index(
    "ix_mismatches_citizen_id_prefix",
    Mismatch.citizen_id,
    postgresql_ops={"citizen_id": "varchar_pattern_ops"},
)
# "Who viewed or acted on this mismatch": the audit log by target.
AUDIT_TARGET = Index(
    "ix_audit_log_target",
    AuditLog.target_type,
    AuditLog.target_id,
    AuditLog.id,
)
# "Who viewed or acted on this citizen's records".
AUDIT_CITIZEN = Index(
    "ix_audit_log_citizen_id",
    AuditLog.detail["citizen_id"].astext,
    postgresql_where=AuditLog.detail["citizen_id"].astext.is_not(None),
)
