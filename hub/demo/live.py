"""Live changes for ``hub demo``: filings, bank transactions, deaths, names fixed at source.

Each tick makes a few changes in the demo's source databases so the queue and dashboard
move: some open mismatches (a death registered while sector records are active), some close
them (a name fixed at source to the registry's spelling).
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Mapping

import psycopg

from hub.db import psycopg_conninfo

log = logging.getLogger(__name__)


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
    ):
        self.urls = {k: psycopg_conninfo(v) for k, v in urls.items()}
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
                "UPDATE public.nguoi_nop_thue SET ngay_nop_cuoi = current_date, updated_at = now()"
                " WHERE ma_so_thue = (SELECT ma_so_thue FROM public.nguoi_nop_thue"
                " WHERE trang_thai = 'hoat_dong' OFFSET floor(random() * 1000) LIMIT 1)"
            )
        elif kind == "transaction":
            conns["banking"].execute(
                "UPDATE public.khach_hang SET ngay_giao_dich_cuoi = current_date,"
                " updated_at = clock_timestamp() WHERE id = (SELECT id FROM public.khach_hang"
                " WHERE trang_thai = 'ACTIVE' OFFSET floor(random() * 1000) LIMIT 1)"
            )
        elif kind == "death":
            conns["registry"].execute(
                "UPDATE public.citizens SET ngay_mat = current_date - 1, updated_at = now()"
                " WHERE so_dinh_danh = (SELECT so_dinh_danh FROM public.citizens"
                " WHERE ngay_mat IS NULL OFFSET floor(random() * 1000) LIMIT 1)"
            )
        elif kind == "name_fixed" and self._fixable:
            m = self._fixable.pop()
            self._fix_name(conns, m["sector"], m["record_key"])
        else:
            return
        self.counts[kind] += 1

    def _fix_name(self, conns: Mapping[str, psycopg.Connection], sector: str, key: str) -> None:
        table, key_col, id_col, name_col = {
            "tax": ("public.nguoi_nop_thue", "ma_so_thue", "so_cccd", "ten_nnt"),
            "labour": ("public.nguoi_lao_dong", "ma_so_bhxh", "so_cccd", "ho_ten"),
        }[sector]
        row = (
            conns[sector]
            .execute(f"SELECT {id_col} FROM {table} WHERE {key_col} = %s", (key,))
            .fetchone()
        )
        if not row or not row[0]:
            return
        name = (
            conns["registry"]
            .execute(
                "SELECT ho_ten FROM public.citizens WHERE so_dinh_danh = %s",
                (row[0].replace(" ", ""),),
            )
            .fetchone()
        )
        if name:
            conns[sector].execute(
                f"UPDATE {table} SET {name_col} = %s, updated_at = now() WHERE {key_col} = %s",
                (name[0], key),
            )
