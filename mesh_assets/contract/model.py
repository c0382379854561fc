"""The data product as the platform sees it: columns with Iceberg types, quality rules, access
roles, partitioning, retention, freshness; and the Iceberg/Arrow schema derived from it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pyiceberg import types as it
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.schema import Schema

from mesh_assets.contract.partitions import DagsterPartitioning, PartitionField, iceberg_partition_spec

CLASSIFICATIONS = ("public", "internal", "confidential", "pii")
SENSITIVE = ("confidential", "pii")  # masked for readers whose roles have no clearance for it
MASKING_METHODS = ("hash", "partial", "null")
ROLE_ACCESS = ("read",)
DEFAULT_SETTLE_SECONDS = 5.0
DEFAULT_MAX_SHRINK_PERCENT = 50.0
_DURATION = re.compile(r"\s*(\d+)\s*(m|h|d|w)\s*")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: Any) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` -> timedelta; ``ValueError`` otherwise."""
    m = _DURATION.fullmatch(str(text))
    if not m:
        raise ValueError(text)
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


# --- types -------------------------------------------------------------------------------------

_SIMPLE_TYPES: dict[str, it.IcebergType] = {
    "string": it.StringType(),
    "varchar": it.StringType(),
    "text": it.StringType(),
    "char": it.StringType(),
    "boolean": it.BooleanType(),
    "bool": it.BooleanType(),
    "tinyint": it.IntegerType(),
    "smallint": it.IntegerType(),
    "int": it.IntegerType(),
    "integer": it.IntegerType(),
    "int32": it.IntegerType(),
    "bigint": it.LongType(),
    "long": it.LongType(),
    "int64": it.LongType(),
    "float": it.FloatType(),
    "real": it.FloatType(),
    "float32": it.FloatType(),
    "double": it.DoubleType(),
    "float64": it.DoubleType(),
    "date": it.DateType(),
    "time": it.TimeType(),
    "timestamp": it.TimestampType(),
    "timestamptz": it.TimestamptzType(),
    "binary": it.BinaryType(),
    "uuid": it.UUIDType(),
}
_LOGICAL_DEFAULTS: dict[str, str] = {
    "string": "string",
    "integer": "bigint",
    "number": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "time": "time",
}
_DECIMAL = re.compile(r"decimal\((\d+)\s*,\s*(\d+)\)")
_SIZED = re.compile(r"(varchar|char)\(\d+\)")


def parse_type(physical: str | None, logical: str | None) -> it.PrimitiveType:
    """The Iceberg type of a contract column; raises ``KeyError`` naming the unknown type."""
    name = (physical or _LOGICAL_DEFAULTS.get(logical or "", logical or "")).strip().lower()
    name = {"timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp"}.get(
        name, name
    )
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    if _SIZED.fullmatch(name):
        return it.StringType()
    if m := _DECIMAL.fullmatch(name):
        return it.DecimalType(int(m.group(1)), int(m.group(2)))
    raise KeyError(name)


KNOWN_TYPES = sorted(set(_SIMPLE_TYPES) | {"decimal(p,s)", "varchar(n)"})


# --- model -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: it.PrimitiveType
    required: bool = False
    description: str | None = None
    classification: str | None = None
    primary_key_position: int | None = None
    unique: bool = False
    masking: str | None = None  # hash | partial | null for readers without clearance; None: clear
    allow_non_finite: bool = False  # float/double: nan, inf and -inf are values, not errors

    @property
    def type_name(self) -> str:
        return str(self.type)


@dataclass(frozen=True)
class AccessRole:
    """An ODCS ``roles`` entry: a group of the identity provider that may read the product."""

    role: str
    access: str = "read"
    clearance: tuple[str, ...] = ()  # sensitive classifications this role sees in clear
    row_filter: str | None = None  # canonical SQL predicate (mesh_assets.contract.row_filters)
    description: str | None = None


@dataclass(frozen=True)
class QualityRule:
    """One expectation in Great Expectations' vocabulary (``type`` + ``kwargs``)."""

    name: str
    expectation: str
    kwargs: dict[str, Any]
    severity: str = "error"  # "error" blocks downstream assets, "warn" only reports
    description: str | None = None

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column")

    @property
    def columns(self) -> list[str]:
        """The columns whose values the rule judges (``column``, ``column_A``, ``column_B``,
        then ``column_list``), in that order."""
        named = [
            self.kwargs[k] for k in ("column", "column_A", "column_B") if isinstance(self.kwargs.get(k), str)
        ]
        return named + [c for c in self.kwargs.get("column_list") or [] if c not in named]


STREAM_MODES = ("append", "upsert")
STREAM_VALUE_FORMATS = ("json", "avro")
DEFAULT_STREAM_MAX_RECORDS = 10_000
DEFAULT_STREAM_MAX_SECONDS = 5.0


@dataclass(frozen=True)
class StreamSource:
    """A streaming product's source: a Kafka topic read in micro-batches
    (``source: {format: kafka, topic, key, valueFormat: json|avro, mode, maxRecords, maxSeconds}``).

    ``key`` is the contract column the message key carries (as text, typed by the same grammar
    as the value's fields); ``mode: upsert`` keeps one row per key (the primary key, which must
    be ``key``) and a message without a value (a tombstone) deletes its key's row. A batch ends
    after ``max_records`` messages or ``max_seconds`` of reading, whichever comes first."""

    topic: str
    key: str | None = None
    value_format: str = "json"
    mode: str = "append"
    max_records: int = DEFAULT_STREAM_MAX_RECORDS
    max_seconds: float = DEFAULT_STREAM_MAX_SECONDS


@dataclass(frozen=True)
class DataProduct:
    domain: str
    name: str
    version: str
    path: Path
    description: str
    owner: str
    columns: tuple[Column, ...]
    rules: tuple[QualityRule, ...]
    source: dict[str, Any] | None = None
    transform: str | None = None
    tags: tuple[str, ...] = ()
    status: str = "active"
    custom: dict[str, Any] = field(default_factory=dict)
    partitioning: tuple[PartitionField, ...] = ()
    dagster_partitions: DagsterPartitioning | None = None
    quarantine: bool = False
    retention: timedelta = timedelta(days=7)
    dbt_tests: tuple = ()  # (column or None, {test: arguments}) from engine: dbt rules
    visibility: str = "public"  # output port: public (other domains may read it) or internal
    freshness: timedelta | None = None  # from slaProperties freshness / latency
    roles: tuple[AccessRole, ...] = ()  # who may read it (ODCS roles); none: the platform only
    settle_seconds: float = DEFAULT_SETTLE_SECONDS  # source: unchanged this long = complete
    timezone: str | None = None  # source: the zone of timestamps written without one
    max_shrink_percent: float | None = None  # full-refresh ingestion: the largest drop allowed
    stream: StreamSource | None = None  # source format kafka: a streaming product

    @property
    def landing_source(self) -> bool:
        """Ingested from a file of the landing zone (not from a stream, not built by dbt)."""
        return bool(self.source) and self.stream is None

    @property
    def identifier(self) -> str:
        """Iceberg identifier and CLI name: ``domain.product``."""
        return f"{self.domain}.{self.name}"

    @property
    def table_identifier(self) -> str:
        """The Iceberg table of this major version: ``domain.product`` for majors 0 and 1,
        ``domain.product_vN`` from major 2 on (see :mod:`mesh_assets.iceberg.schema`)."""
        major = self.major_version
        return self.identifier if major <= 1 else f"{self.identifier}_v{major}"

    @property
    def asset_key_path(self) -> list[str]:
        return [self.domain, self.name]

    @property
    def primary_key(self) -> tuple[str, ...]:
        keyed = [c for c in self.columns if c.primary_key_position is not None]
        return tuple(c.name for c in sorted(keyed, key=lambda c: c.primary_key_position or 0))

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def iceberg_schema(self) -> Schema:
        fields = [
            it.NestedField(field_id=i, name=c.name, field_type=c.type, required=c.required, doc=c.description)
            for i, c in enumerate(self.columns, start=1)
        ]
        key_ids = [
            i
            for i, c in enumerate(self.columns, start=1)
            if c.primary_key_position is not None and c.required
        ]
        return Schema(*fields, identifier_field_ids=key_ids)

    def partition_spec(self):
        return iceberg_partition_spec(self.partitioning, self.iceberg_schema())

    @property
    def major_version(self) -> int:
        head = self.version.split(".", 1)[0]
        return int(head) if head.isdigit() else 0

    def arrow_schema(self):

        return schema_to_pyarrow(self.iceberg_schema(), include_field_ids=False)
