"""Partitioning: Iceberg hidden partitioning and Dagster partitions, both from the contract.

Iceberg partition fields use the ODCS column flags ``partitioned: true`` and
``partitionKeyPosition``, with the transform in the column's customProperties
(``partitionTransform``: ``identity`` (default), ``year``, ``month``, ``day``, ``hour``,
``bucket[N]``, ``truncate[N]``).

Dagster partitions are a product-level customProperty::

    dagsterPartitions: {type: daily | monthly | static, column: <column>,
                        start: 2013-01-01, end: 2014-01-01, values: [...]}

A Dagster partition key (or a range of keys, for a single-run backfill) becomes one Iceberg
row filter on ``column``: the rows that materialization replaces, atomically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg import types as it
from pyiceberg.expressions import And, GreaterThanOrEqual, In, LessThan
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionSpec
from pyiceberg.partitioning import PartitionField as IcebergField
from pyiceberg.transforms import parse_transform

from mesh_assets.contract.errors import ContractError

_TRANSFORM = re.compile(r"(identity|year|month|day|hour|void)|(bucket|truncate)\[(\d+)\]")
_TIME_TYPES = (it.DateType, it.TimestampType, it.TimestamptzType)


@dataclass(frozen=True)
class PartitionField:
    column: str
    transform: str = "identity"


@dataclass(frozen=True)
class DagsterPartitioning:
    kind: str  # daily | monthly | static
    column: str
    start: str | None = None
    end: str | None = None
    values: tuple[str, ...] = ()


def parse_partition_fields(path: Path, product: str, table: dict, columns: dict) -> tuple:

    fields = []
    for position, prop in enumerate(table.get("properties") or []):
        if not prop.get("partitioned"):
            continue
        name = prop["name"]
        custom = {c["property"]: c.get("value") for c in prop.get("customProperties") or []}
        transform = str(custom.get("partitionTransform", "identity")).strip().lower()
        if not _TRANSFORM.fullmatch(transform):
            raise ContractError(
                path,
                f"unknown partitionTransform '{transform}'",
                product=product,
                column=name,
                hint="use identity, year, month, day, hour, bucket[N] or truncate[N]",
            )
        if transform in ("year", "month", "day", "hour") and not isinstance(columns[name].type, _TIME_TYPES):
            raise ContractError(
                path,
                f"partitionTransform {transform} needs a date or timestamp column, not {columns[name].type}",
                product=product,
                column=name,
            )
        order = prop.get("partitionKeyPosition") or (1000 + position)
        fields.append((order, PartitionField(name, transform)))
    return tuple(f for _, f in sorted(fields, key=lambda x: x[0]))


def parse_dagster_partitions(
    path: Path, product: str, value: Any, columns: dict
) -> DagsterPartitioning | None:

    if value is None:
        return None
    if not isinstance(value, dict):
        raise ContractError(path, "dagsterPartitions must be a mapping", product=product)
    kind, column = value.get("type"), value.get("column")
    if kind not in ("daily", "monthly", "static"):
        raise ContractError(
            path,
            f"dagsterPartitions type '{kind}' is not supported",
            product=product,
            hint="use daily, monthly or static",
        )
    if column not in columns:
        raise ContractError(
            path, "dagsterPartitions column is not declared in the schema", product=product, column=column
        )
    if kind == "static":
        values = tuple(str(v) for v in value.get("values") or ())
        if not values:
            raise ContractError(path, "static dagsterPartitions need 'values'", product=product)
        return DagsterPartitioning(kind, column, values=values)
    if not isinstance(columns[column].type, _TIME_TYPES):
        raise ContractError(
            path, f"{kind} dagsterPartitions need a date or timestamp column", product=product, column=column
        )
    if not value.get("start"):
        raise ContractError(path, f"{kind} dagsterPartitions need a 'start' date", product=product)
    return DagsterPartitioning(
        kind, column, start=str(value["start"]), end=str(value["end"]) if value.get("end") else None
    )


# --- Iceberg -----------------------------------------------------------------------------------


def iceberg_partition_spec(fields: tuple[PartitionField, ...], schema):
    """The Iceberg PartitionSpec of ``fields`` against the Iceberg ``schema``."""

    if not fields:
        return UNPARTITIONED_PARTITION_SPEC
    out = []
    for i, f in enumerate(fields):
        source = schema.find_field(f.column)
        transform = parse_transform(f.transform)
        suffix = "" if f.transform == "identity" else "_" + re.sub(r"\W", "", f.transform)
        out.append(
            IcebergField(
                source_id=source.field_id, field_id=1000 + i, transform=transform, name=f"{f.column}{suffix}"
            )
        )
    return PartitionSpec(*out)


# --- Dagster -----------------------------------------------------------------------------------


def dagster_partitions_def(p: DagsterPartitioning | None):

    if p is None:
        return None
    if p.kind == "static":
        return dg.StaticPartitionsDefinition(list(p.values))
    cls = dg.DailyPartitionsDefinition if p.kind == "daily" else dg.MonthlyPartitionsDefinition
    return cls(start_date=p.start, end_date=p.end)


@dataclass(frozen=True)
class PartitionSelection:
    """The rows one materialization replaces: ``[start, end)`` of a time column, or a value set."""

    column: str
    start: datetime | None = None
    end: datetime | None = None
    values: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.values:
            return f"{self.column} in ({', '.join(self.values)})"
        return f"{self.start.isoformat()} <= {self.column} < {self.end.isoformat()}"

    def _literal(self, moment: datetime, col_type) -> Any:
        if isinstance(col_type, it.DateType):
            return moment.date().isoformat()
        if isinstance(col_type, it.TimestamptzType):
            return moment.astimezone(UTC).isoformat()
        return moment.replace(tzinfo=None).isoformat()

    def iceberg_filter(self, col_type):

        if self.values:
            return In(self.column, set(self.values))
        return And(
            GreaterThanOrEqual(self.column, self._literal(self.start, col_type)),
            LessThan(self.column, self._literal(self.end, col_type)),
        )

    def arrow_mask(self, batch: pa.RecordBatch) -> pa.Array:
        column = batch.column(self.column)
        if self.values:
            return pc.fill_null(pc.is_in(column, value_set=pa.array(self.values, column.type)), False)
        typ = column.type
        if pa.types.is_date(typ):
            lo, hi = pa.scalar(self.start.date(), typ), pa.scalar(self.end.date(), typ)
        else:
            tz = typ.tz
            start = self.start if tz else self.start.replace(tzinfo=None)
            end = self.end if tz else self.end.replace(tzinfo=None)
            lo, hi = pa.scalar(start, typ), pa.scalar(end, typ)
        return pc.fill_null(pc.and_(pc.greater_equal(column, lo), pc.less(column, hi)), False)


def selection_for(p: DagsterPartitioning, context) -> PartitionSelection:
    """The partition key (or key range of a single-run backfill) of ``context`` as rows."""
    if p.kind == "static":
        return PartitionSelection(p.column, values=tuple(context.partition_keys))
    window = context.partition_time_window
    return PartitionSelection(p.column, start=_utc(window.start), end=_utc(window.end))


def selection_for_keys(p: DagsterPartitioning, first: str, last: str) -> PartitionSelection:
    """Rows of the key range ``first``..``last`` (inclusive), outside of a Dagster run."""
    if p.kind == "static":
        keys = list(p.values)
        return PartitionSelection(p.column, values=tuple(keys[keys.index(first) : keys.index(last) + 1]))
    start = datetime.fromisoformat(first).replace(tzinfo=UTC)
    last_start = datetime.fromisoformat(last).replace(tzinfo=UTC)
    end = last_start + timedelta(days=1) if p.kind == "daily" else _next_month(last_start)
    return PartitionSelection(p.column, start=start, end=end)


def whole_range(p: DagsterPartitioning) -> PartitionSelection:
    """The rows any partition of ``p`` can hold."""
    keys = dagster_partitions_def(p).get_partition_keys()
    return selection_for_keys(p, keys[0], keys[-1])


def _next_month(d: datetime) -> datetime:
    return d.replace(year=d.year + d.month // 12, month=d.month % 12 + 1, day=1)


def _utc(d: datetime | date) -> datetime:
    if not isinstance(d, datetime):
        d = datetime(d.year, d.month, d.day)
    return d.astimezone(UTC) if d.tzinfo else d.replace(tzinfo=UTC)
