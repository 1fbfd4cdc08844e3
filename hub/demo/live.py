"""Live changes for ``hub demo``: filings, bank transactions, deaths, names fixed at source.

Each tick makes a few changes in the demo's source databases so the queue and dashboard
move: some open mismatches (a death registered while sector records are active), some close
them (a name fixed at source to the registry's spelling). The statements are built from the
demo's table declarations (:mod:`hub.demo.population`), so both populations (``vn``, ``eg``)
get the same changes in their own column names.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Mapping

import psycopg
from psycopg import sql

from hub.db import psycopg_conninfo
from hub.demo.population import SourceTable, source_tables
from hub.idschemes import get_scheme

log = logging.getLogger(__name__)


def _table(t: SourceTable) -> sql.Composed:
    schema, _, name = t.table.rpartition(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema or "public"), sql.Identifier(name))


def _col(t: SourceTable, canonical: str) -> sql.Identifier:
    column = t.column_for(canonical)
    assert column is not None, (t.source, canonical)
    return sql.Identifier(column.name)


def _stored(t: SourceTable, canonical: str, value: str) -> str:
    """The value ``t`` stores for canonical ``value`` of field ``canonical`` (``active`` →
    ``hoat_dong``)."""
    column = t.column_for(canonical)
    assert column is not None and column.value_map is not None
    return next(k for k, v in column.value_map.items() if v == value)


class LiveChanges:
    """Applies ``per_tick`` random changes every ``interval_s`` until ``stop()``."""

    def __init__(
        self,
        urls: Mapping[str, str],
        manifest: dict,
        *,
        seed: int = 1,
        interval_s: float = 1.0,
        per_tick: int = 5,
        scheme: str = "vn",
    ):
        self.urls = {k: psycopg_conninfo(v) for k, v in urls.items()}
        self.tables = source_tables(scheme)
        self.id_scheme = get_scheme(scheme)
        self.rng = random.Random(seed)
        self.interval_s = interval_s
        self.per_tick = per_tick
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._fixable = [
            m for m in manifest["mismatches"]
            if m["rule"] == "NAME_MISMATCH" and m["sector"] in ("tax", "labour")
        ]  # fmt: skip
        self.rng.shuffle(self._fixable)
        self._sql = self._statements()

    def _statements(self) -> dict[str, sql.Composed]:
        tax, bank, reg = self.tables["tax"], self.tables["banking"], self.tables["registry"]

        def touch(t: SourceTable, clock: str) -> sql.Composed:
            key = sql.Identifier(t.key)
            return sql.SQL(
                "UPDATE {t} SET {act} = current_date, updated_at = " + clock + " WHERE {key} = "
                "(SELECT {key} FROM {t} WHERE {status} = %s OFFSET floor(random() * 1000) LIMIT 1)"
            ).format(
                t=_table(t), act=_col(t, "last_activity_date"), key=key, status=_col(t, "status")
            )

        return {
            "filing": touch(tax, "now()"),
            "transaction": touch(bank, "clock_timestamp()"),
            "death": sql.SQL(
                "UPDATE {t} SET {death} = current_date - 1, updated_at = now() WHERE {key} = "
                "(SELECT {key} FROM {t} WHERE {death} IS NULL OFFSET floor(random() * 1000)"
                " LIMIT 1)"
            ).format(t=_table(reg), death=_col(reg, "date_of_death"), key=sql.Identifier(reg.key)),
        }

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Loop until stopped; a failed tick is logged and the loop goes on."""
        with (
            psycopg.connect(self.urls["registry"], autocommit=True) as registry,
            psycopg.connect(self.urls["tax"], autocommit=True) as tax,
            psycopg.connect(self.urls["banking"], autocommit=True) as banking,
            psycopg.connect(self.urls["labour"], autocommit=True) as labour,
        ):
            conns = {"registry": registry, "tax": tax, "banking": banking, "labour": labour}
            while not self._stop.wait(self.interval_s):
                for _ in range(self.per_tick):
                    try:
                        self.tick(conns)
                    except psycopg.Error as exc:
                        log.warning("live change failed: %s", exc)

    def tick(self, conns: Mapping[str, psycopg.Connection]) -> None:
        """One random change, weighted towards the everyday ones."""
        kind = self.rng.choices(
            ["filing", "transaction", "death", "name_fixed"], weights=[45, 45, 4, 6]
        )[0]
        if kind == "filing":
            conns["tax"].execute(
                self._sql["filing"], (_stored(self.tables["tax"], "status", "active"),)
            )
        elif kind == "transaction":
            conns["banking"].execute(
                self._sql["transaction"], (_stored(self.tables["banking"], "status", "active"),)
            )
        elif kind == "death":
            conns["registry"].execute(self._sql["death"])
        elif kind == "name_fixed" and self._fixable:
            m = self._fixable.pop()
            self._fix_name(conns, m["sector"], m["record_key"])
        else:
            return
        self.counts[kind] += 1

    def _fix_name(self, conns: Mapping[str, psycopg.Connection], sector: str, key: str) -> None:
        t, reg = self.tables[sector], self.tables["registry"]
        row = (
            conns[sector]
            .execute(
                sql.SQL("SELECT {id} FROM {t} WHERE {key} = %s").format(
                    id=_col(t, "citizen_id"), t=_table(t), key=sql.Identifier(t.key)
                ),
                (key,),
            )
            .fetchone()
        )
        cid = self.id_scheme.normalize(row[0]) if row and row[0] else None
        if not cid:
            return
        name = (
            conns["registry"]
            .execute(
                sql.SQL("SELECT {name} FROM {t} WHERE {id} = %s").format(
                    name=_col(reg, "full_name"), t=_table(reg), id=_col(reg, "citizen_id")
                ),
                (cid,),
            )
            .fetchone()
        )
        if name:
            conns[sector].execute(
                sql.SQL("UPDATE {t} SET {name} = %s, updated_at = now() WHERE {key} = %s").format(
                    t=_table(t), name=_col(t, "full_name"), key=sql.Identifier(t.key)
                ),
                (name[0], key),
            )
