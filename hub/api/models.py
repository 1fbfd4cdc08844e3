"""Indexes the API's queries need at millions of rows, declared on the shared tables so
Alembic autogenerate sees them (migration 0004 creates them)."""

from __future__ import annotations

from sqlalchemy import Index, text

from hub.config import SEVERITIES
from hub.db.models import AuditLog, Mismatch

# Severity as a number (critical highest), as SQL with literal constants: queries must spell
# it exactly like this for PostgreSQL to use the index below (and migration 0004).
SEVERITY_RANK_SQL = (
    "CASE severity "
    + " ".join(f"WHEN '{s}' THEN {i + 1}" for i, s in enumerate(SEVERITIES))
    + " ELSE 0 END"
)

# Keyset pages of the usual queue filters, newest first, without a sort.
QUEUE_KEYSET = Index(
    "ix_mismatches_status_sector_rule_id",
    Mismatch.status,
    Mismatch.sector,
    Mismatch.rule,
    Mismatch.id,
)
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
