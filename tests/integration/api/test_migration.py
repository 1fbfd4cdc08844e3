"""Migration 0004 creates exactly the queue indexes hub.db.models declares, and reverts cleanly."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import hub.db.models as api_models
from hub.db import engine_for
from hub.db.migrate import alembic_config
from hub.db.models import Base

API_INDEXES = {ix.name for ix in vars(api_models).values() if type(ix).__name__ == "Index"}


def api_index_changes(diff: list) -> list[tuple]:
    flat = [op for group in diff for op in (group if isinstance(group, list) else [group])]
    return [
        op for op in flat if op[0] in ("add_index", "remove_index") and op[1].name in API_INDEXES
    ]


def test_autogenerate_sees_no_difference_for_the_api_indexes(hub_db):
    with engine_for(hub_db).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert len(API_INDEXES) == 6  # (status, sector, rule, id) went in 0017
    assert api_index_changes(diff) == []


def test_downgrade_drops_the_api_indexes_and_upgrade_restores_them(hub_db):
    def present() -> set[str]:
        insp = inspect(engine_for(hub_db))
        return {
            ix["name"]
            for table in ("mismatches", "audit_log")
            for ix in insp.get_indexes(table)
            if ix["name"] in API_INDEXES
        }

    assert present() == API_INDEXES
    command.downgrade(alembic_config(hub_db), "0003")
    assert present() == set()
    command.upgrade(alembic_config(hub_db), "head")
    assert present() == API_INDEXES
