"""The demo's source tables: DDL, load order and hub config mapping, declared once so they agree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.db import sqlalchemy_url

SEX_VN = {"Nam": "M", "Nữ": "F"}
"""Vietnamese sex labels as sector and registry systems store them → canonical M/F."""

SEX_EG = {"ذكر": "M", "أنثى": "F"}
"""Egyptian sex labels (النوع) → canonical M/F."""


@dataclass(frozen=True)
class Column:
    """One source column: its SQL type and, when it feeds the canonical record, how.

    ``value_map`` maps stored values to canonical ones (``Nam`` → ``M``); ``date_format``
    marks a text column holding dates (``strftime`` format). Both end up verbatim in the
    hub config, and the generator uses them in reverse to write the rows.
    """

    name: str
    sql: str
    canonical: str | None = None
    value_map: Mapping[str, str] | None = None
    date_format: str | None = None

    def mapping(self) -> str | dict[str, Any]:
        """The column's entry under ``columns:`` in the hub config."""
        if self.value_map is not None:
            return {"column": self.name, "map": dict(self.value_map)}
        if self.date_format is not None:
            return {"column": self.name, "format": self.date_format}
        return self.name


@dataclass(frozen=True)
class SourceTable:
    """A demo source database's one table, as DDL and as the hub config entry reading it.

    ``after_load`` holds the constraints and indexes, run after the bulk COPY because
    building them once over loaded rows is several times faster than maintaining them
    row by row.
    """

    source: str
    table: str
    key: str
    capture: str
    columns: tuple[Column, ...]
    after_load: tuple[str, ...] = ()
    poll: Mapping[str, Any] | None = None
    rules: Mapping[str, Any] | None = None
    column_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_names", tuple(c.name for c in self.columns))

    def column_for(self, canonical: str) -> Column | None:
        """The column that feeds canonical field ``canonical``, if the table has one."""
        return next((c for c in self.columns if c.canonical == canonical), None)

    def drop_sql(self) -> str:
        return f"DROP TABLE IF EXISTS {self.table} CASCADE"

    def create_sql(self) -> str:
        """``CREATE TABLE`` without keys or indexes (those are in ``after_load``)."""
        cols = ",\n    ".join(f"{c.name} {c.sql}" for c in self.columns)
        return f"CREATE TABLE {self.table} (\n    {cols}\n)"

    def copy_sql(self) -> str:
        return f"COPY {self.table} ({', '.join(self.column_names)}) FROM STDIN"

    def ddl(self) -> list[str]:
        """Every statement that builds the empty table with all its constraints."""
        return [self.drop_sql(), self.create_sql(), *self.after_load]

    def config(self, url: str) -> dict[str, Any]:
        """This source's entry in the hub config (SPEC §8), reading from ``url``."""
        entry: dict[str, Any] = {
            "url": sqlalchemy_url(url),
            "table": self.table,
            "key": self.key,
            "capture": self.capture,
            "columns": {c.canonical: c.mapping() for c in self.columns if c.canonical},
        }
        if self.poll is not None:
            entry["poll"] = dict(self.poll)
        if self.rules is not None:
            entry["rules"] = {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in self.rules.items()
            }
        return entry


def _pk(table: str, *cols: str) -> str:
    return f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(cols)})"


def _index(table: str, col: str, *, unique: bool = False) -> str:
    name = f"{table.rpartition('.')[2]}_{col}_{'key' if unique else 'idx'}"
    return f"CREATE {'UNIQUE ' if unique else ''}INDEX {name} ON {table} ({col})"


UPDATED_AT = Column("updated_at", "timestamptz DEFAULT now()")

SECTOR_RULES: dict[str, Mapping[str, Any]] = {
    "tax": {"unique_citizen": True, "disabled": ("PROVINCE_MISMATCH",)},
    "banking": {"unique_citizen": False, "disabled": ("PROVINCE_MISMATCH",)},
    "labour": {"unique_citizen": True, "disabled": ()},
    # No province column: PROVINCE_MISMATCH can never apply here.
    "construction": {"unique_citizen": False, "disabled": ("PROVINCE_MISMATCH",)},
}
"""Each sector's rule settings in the hub config, the same for every population."""


def _sector(source: str, table: str, capture: str, key: Column, *columns: Column) -> SourceTable:
    """A sector's table: ``key`` (its primary key), ``columns``, ``updated_at``; the index on the
    column feeding ``citizen_id`` is built after the load with the key."""
    cid = next(c.name for c in columns if c.canonical == "citizen_id")
    return SourceTable(
        source=source,
        table=table,
        key=key.name,
        capture=capture,
        columns=(key, *columns, UPDATED_AT),
        after_load=(_pk(table, key.name), _index(table, cid)),
        rules=SECTOR_RULES[source],
    )


def _bank(table: str, customer_no: Column, *columns: Column) -> SourceTable:
    """A bank's customers, read by the poll connector: an ``id`` key that new customers added
    later (live changes) take the next of, a unique customer number, and the index the poll
    query walks (``WHERE (updated_at, id) > watermark ORDER BY updated_at, id``)."""
    cid = next(c.name for c in columns if c.canonical == "citizen_id")
    short = table.rpartition(".")[2]
    return SourceTable(
        source="banking",
        table=table,
        key="id",
        capture="poll",
        columns=(
            Column("id", "bigint NOT NULL"),
            customer_no,
            *columns,
            Column("updated_at", "timestamptz NOT NULL DEFAULT now()"),
        ),
        after_load=(
            _pk(table, "id"),
            f"ALTER TABLE {table} ADD CONSTRAINT {short}_{customer_no.name}_key"
            f" UNIQUE ({customer_no.name})",
            f"ALTER TABLE {table} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY",
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
            f" coalesce(max(id), 0) + 1, false) FROM {table}",
            _index(table, cid),
            f"CREATE INDEX {short}_updated_at_id_idx ON {table} (updated_at, id)",
        ),
        poll={"timestamp_column": "updated_at", "incrementing_column": "id", "interval_s": 2},
        rules=SECTOR_RULES["banking"],
    )


REGISTRY = SourceTable(
    source="registry",
    table="public.citizens",
    key="so_dinh_danh",
    capture="logical",
    columns=(
        Column("so_dinh_danh", "varchar(12) NOT NULL", "citizen_id"),
        Column("so_cmnd", "varchar(9)", "legacy_id"),
        Column("ho_ten", "text NOT NULL", "full_name"),
        Column("ngay_sinh", "date", "date_of_birth"),
        Column("gioi_tinh", "text", "sex", value_map=SEX_VN),
        Column("ma_tinh", "char(3)", "province_code"),
        Column("dia_chi", "text", "address"),
        Column("ngay_mat", "date", "date_of_death"),
        UPDATED_AT,
    ),
    after_load=(
        _pk("public.citizens", "so_dinh_danh"),
        _index("public.citizens", "so_cmnd", unique=True),
    ),
)

TAX = _sector(
    "tax",
    "public.nguoi_nop_thue",
    "logical",
    Column("ma_so_thue", "varchar(13) NOT NULL"),
    Column("so_cccd", "varchar(20)", "citizen_id"),
    Column("ten_nnt", "text", "full_name"),
    Column("ngay_sinh", "text", "date_of_birth", date_format="%d/%m/%Y"),
    Column("gioi_tinh", "text", "sex", value_map=SEX_VN),
    Column("ma_tinh", "char(3)", "province_code"),
    Column("ngay_nop_cuoi", "date", "last_activity_date"),
    Column(
        "trang_thai",
        "text",
        "status",
        value_map={"hoat_dong": "active", "ngung_hoat_dong": "closed"},
    ),
)

BANKING = _bank(
    "public.khach_hang",
    Column("ma_khach_hang", "varchar(16)"),
    Column("so_giay_to", "varchar(20)", "citizen_id"),
    Column("ho_ten", "varchar(60)", "full_name"),
    Column("ngay_sinh", "date", "date_of_birth"),
    Column("gioi_tinh", "char(1)", "sex"),
    Column("ngay_giao_dich_cuoi", "date", "last_activity_date"),
    Column("trang_thai", "text", "status", value_map={"ACTIVE": "active", "CLOSED": "closed"}),
)

LABOUR = _sector(
    "labour",
    "public.nguoi_lao_dong",
    "logical",
    Column("ma_so_bhxh", "varchar(10) NOT NULL"),
    Column("so_cccd", "varchar(20)", "citizen_id"),
    Column("ho_ten", "text", "full_name"),
    Column("ngay_sinh", "date", "date_of_birth"),
    Column("gioi_tinh", "text", "sex", value_map=SEX_VN),
    Column("ma_tinh", "char(3)", "province_code"),
    Column("ngay_dong_bhxh_cuoi", "date", "last_activity_date"),
    Column("trang_thai", "text", "status", value_map={"dang_lam": "active", "nghi_viec": "closed"}),
)

CONSTRUCTION = _sector(
    "construction",
    "public.chu_dau_tu",
    "snapshot",
    Column("so_giay_phep", "varchar(20) NOT NULL"),
    Column("cccd_chu_dau_tu", "varchar(20)", "citizen_id"),
    Column("ten_chu_dau_tu", "text", "full_name"),
    Column("ngay_sinh", "date", "date_of_birth"),
    Column("ngay_cap_phep", "date", "last_activity_date"),
    Column("trang_thai", "text", "status", value_map={"hieu_luc": "active", "het_han": "closed"}),
)

SOURCE_TABLES: dict[str, SourceTable] = {
    t.source: t for t in (REGISTRY, TAX, BANKING, LABOUR, CONSTRUCTION)
}
"""Every demo database (``registry`` and the four sectors, in this order) → its table."""

SECTORS: tuple[str, ...] = tuple(s for s in SOURCE_TABLES if s != "registry")

# -- Egypt (``hub demo --scheme eg``) ------------------------------------------------------
# The civil registry keeps Arabic column names; sector systems transliterate them, each in
# its own way (``raqam_qawmi``, the Cairene ``ragam_qawmi``, a bank's English).

EG_REGISTRY = SourceTable(
    source="registry",
    table="public.sijill_madani",
    key="الرقم_القومي",
    capture="logical",
    columns=(
        Column("الرقم_القومي", "varchar(14) NOT NULL", "citizen_id"),
        Column("الاسم", "text NOT NULL", "full_name"),
        Column("تاريخ_الميلاد", "date", "date_of_birth"),
        Column("النوع", "text", "sex", value_map=SEX_EG),
        Column("المحافظة", "char(2)", "province_code"),
        Column("العنوان", "text", "address"),
        Column("تاريخ_الوفاة", "date", "date_of_death"),
        UPDATED_AT,
    ),
    after_load=(_pk("public.sijill_madani", "الرقم_القومي"),),
)

EG_TAX = _sector(
    "tax",
    "public.momawelin",
    "logical",
    Column("raqam_tasgil", "varchar(9) NOT NULL"),
    Column("ragam_qawmi", "varchar(20)", "citizen_id"),
    Column("esm_al_momawel", "text", "full_name"),
    Column("tarikh_al_milad", "text", "date_of_birth", date_format="%d/%m/%Y"),
    Column("al_naw3", "text", "sex", value_map=SEX_EG),
    Column("al_mohafza", "char(2)", "province_code"),
    Column("akher_egrar", "date", "last_activity_date"),
    Column("al_hala", "text", "status", value_map={"نشط": "active", "متوقف": "closed"}),
)

EG_BANKING = _bank(
    "public.customers",
    Column("customer_no", "varchar(16)"),
    Column("national_id", "varchar(20)", "citizen_id"),
    Column("name_ar", "varchar(100)", "full_name"),
    Column("birth_date", "date", "date_of_birth"),
    Column("gender", "char(1)", "sex"),
    Column("last_txn_date", "date", "last_activity_date"),
    Column("status", "text", "status", value_map={"ACTIVE": "active", "CLOSED": "closed"}),
)

EG_LABOUR = _sector(
    "labour",
    "public.mo2amman_3alaihim",
    "logical",
    Column("raqam_ta2mini", "varchar(10) NOT NULL"),
    Column("raqam_qawmi", "varchar(20)", "citizen_id"),
    Column("al_esm", "text", "full_name"),
    Column("tarikh_al_milad", "date", "date_of_birth"),
    Column("al_naw3", "text", "sex", value_map=SEX_EG),
    Column("al_mohafza", "char(2)", "province_code"),
    Column("akher_eshterak", "date", "last_activity_date"),
    Column("al_hala", "text", "status", value_map={"قائم": "active", "منتهي": "closed"}),
)

EG_CONSTRUCTION = _sector(
    "construction",
    "public.tarakhis_al_bena2",
    "snapshot",
    Column("raqam_al_rokhsa", "varchar(24) NOT NULL"),
    Column("raqam_qawmi_al_malek", "varchar(20)", "citizen_id"),
    Column("esm_al_malek", "text", "full_name"),
    Column("tarikh_al_milad", "date", "date_of_birth"),
    Column("tarikh_al_esdar", "date", "last_activity_date"),
    Column("al_hala", "text", "status", value_map={"سارية": "active", "منتهية": "closed"}),
)

EG_SOURCE_TABLES: dict[str, SourceTable] = {
    t.source: t for t in (EG_REGISTRY, EG_TAX, EG_BANKING, EG_LABOUR, EG_CONSTRUCTION)
}
"""The Egyptian demo's databases (same names and order as :data:`SOURCE_TABLES`)."""

SCHEMES: tuple[str, ...] = ("vn", "eg")
"""The populations ``hub demo --scheme`` generates, named after the hub's ID schemes."""


def source_tables(scheme: str = "vn") -> dict[str, SourceTable]:
    """The demo's tables for ``scheme`` (``vn`` or ``eg``); ``ValueError`` otherwise."""
    if scheme == "vn":
        return SOURCE_TABLES
    if scheme == "eg":
        return EG_SOURCE_TABLES
    raise ValueError(f"unknown demo scheme {scheme!r} (known: {', '.join(SCHEMES)})")


def demo_config(urls: Mapping[str, str], scheme: str = "vn") -> dict[str, Any]:
    """The ``registry:`` and ``sectors:`` parts of the hub config for the demo databases.

    ``urls`` maps ``registry``, ``tax``, ``banking``, ``labour`` and ``construction`` to
    database URLs (libpq ``postgresql://`` or SQLAlchemy ``postgresql+psycopg://`` form,
    or a ``key=value`` conninfo string); the config holds them in SQLAlchemy form.
    """
    tables = source_tables(scheme)
    missing = [s for s in tables if s not in urls]
    if missing:
        raise ValueError(f"no database URL for {', '.join(missing)}")
    return {
        "registry": tables["registry"].config(urls["registry"]),
        "sectors": {s: tables[s].config(urls[s]) for s in SECTORS},
    }
