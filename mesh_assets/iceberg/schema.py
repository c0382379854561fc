"""Schema evolution policy: what happens when a contract and its live Iceberg table differ.

Additive changes are applied automatically, in one schema commit, before the write that needs
them, and reported in the materialization metadata:

* a new optional column;
* type widening: int -> long, float -> double, decimal(P,S) -> decimal(P2,S) with P2 > P;
* a required column becoming optional;
* a new column description.

Breaking changes are refused (:class:`BreakingSchemaChange`): a dropped column, a renamed
column (seen as a drop plus an add: Iceberg cannot tell), a narrowed or incompatible type, a new
required column, an optional column becoming required. Existing consumers would break.

The one migration path for a breaking change is a new *major* contract version. Major N >= 2 of
``domain.product`` lives in its own table ``domain.product_vN``, created from the new contract;
the previous major's table stays as it was, readable by every consumer that has not moved, and
consumers move by reading the new name (``mesh_assets.read("domain.product_v2")`` or
``source('domain', 'product_v2')`` in dbt). Column reordering is not a change: Iceberg matches
columns by id and name.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyiceberg import types as it
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError

from mesh_assets.iceberg.commit import CONTRACT_VERSION_PROPERTY, commit_with_retry, transaction

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

    from mesh_assets.contract.model import Column, DataProduct


class BreakingSchemaChange(ValueError):
    """The contract changes the live table in a way that breaks its consumers."""


@dataclass(frozen=True)
class Change:
    kind: str  # add | widen | make_optional | doc | drop | add_required | retype | make_required
    column: str
    old: str | None
    new: str | None
    additive: bool

    def describe(self) -> str:
        verdict = "additive" if self.additive else "breaking"
        text = {
            "add": f"+ column {self.column} ({self.new}, optional)",
            "add_required": f"+ column {self.column} ({self.new}, required)",
            "drop": f"- column {self.column} ({self.old}) dropped",
            "widen": f"~ column {self.column}: {self.old} -> {self.new}",
            "retype": f"~ column {self.column}: {self.old} -> {self.new}",
            "make_optional": f"~ column {self.column}: required -> optional",
            "make_required": f"~ column {self.column}: optional -> required",
            "doc": f"~ column {self.column}: description changed",
        }[self.kind]
        return f"{text}: {verdict}"


@dataclass(frozen=True)
class SchemaDiff:
    changes: tuple[Change, ...]

    @property
    def additive(self) -> list[Change]:
        return [c for c in self.changes if c.additive]

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if not c.additive]

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def describe(self) -> list[str]:
        return [c.describe() for c in self.changes]

    def as_metadata(self) -> list[dict[str, Any]]:
        return [
            {"kind": c.kind, "column": c.column, "old": c.old, "new": c.new, "additive": c.additive}
            for c in self.changes
        ]


def _widens(old: it.IcebergType, new: it.IcebergType) -> bool:
    if isinstance(old, it.IntegerType) and isinstance(new, it.LongType):
        return True
    if isinstance(old, it.FloatType) and isinstance(new, it.DoubleType):
        return True
    return (
        isinstance(old, it.DecimalType)
        and isinstance(new, it.DecimalType)
        and new.scale == old.scale
        and new.precision > old.precision
    )


def diff(schema: "Schema", product: "DataProduct") -> SchemaDiff:
    """What applying ``product``'s contract to a table with ``schema`` would change."""
    live = {f.name: f for f in schema.fields}
    wanted: dict[str, Column] = {c.name: c for c in product.columns}
    changes: list[Change] = []
    for name, f in live.items():
        if name not in wanted:
            changes.append(Change("drop", name, str(f.field_type), None, False))
    for name, c in wanted.items():
        f = live.get(name)
        if f is None:
            kind = "add_required" if c.required else "add"
            changes.append(Change(kind, name, None, str(c.type), not c.required))
            continue
        if f.field_type != c.type:
            widen = _widens(f.field_type, c.type)
            changes.append(
                Change("widen" if widen else "retype", name, str(f.field_type), str(c.type), widen)
            )
        if f.required and not c.required:
            changes.append(Change("make_optional", name, "required", "optional", True))
        elif not f.required and c.required:
            changes.append(Change("make_required", name, "optional", "required", False))
        if (c.description or None) != (f.doc or None):
            changes.append(Change("doc", name, f.doc, c.description, True))
    return SchemaDiff(tuple(changes))


def table_identifier(product: "DataProduct") -> str:
    """Iceberg table of the contract's major version: ``domain.product`` for major 0 and 1,
    ``domain.product_vN`` from major 2 on."""
    return product.table_identifier


def breaking_error(product: "DataProduct", table: str, d: SchemaDiff) -> BreakingSchemaChange:
    lines = "; ".join(c.describe() for c in d.breaking)
    renamed = any(c.kind == "drop" for c in d.breaking) and any(
        c.kind in ("add", "add_required") for c in d.changes
    )
    hint = " (a rename shows as a drop plus an add: Iceberg cannot tell them apart)" if renamed else ""
    columns = ", ".join(sorted({c.column for c in d.breaking}))
    return BreakingSchemaChange(
        f"contract {product.path}, product {product.identifier}, column(s) {columns}: breaking "
        f"change(s) to table {table}: {lines}{hint}. Make the change additive (a new optional "
        f"column, a wider type, optional instead of required), or publish it as a new major "
        f"version: set version {product.major_version + 1}.0.0 in the contract; it is written "
        f"to {product.identifier}_v{max(product.major_version + 1, 2)} while {table} stays "
        "readable for consumers who have not moved (see `mesh contract diff`)."
    )


def evolve(catalog, product: "DataProduct", *, properties: dict[str, str] | None = None):
    """The product's table, created or evolved to match the contract before a write.

    Returns ``(table, applied)`` where ``applied`` describes the additive changes made now.
    Raises :class:`BreakingSchemaChange` and changes nothing when the contract would break
    the live table. Concurrent writers of a new table share the one that was created first;
    each change is committed through the retry policy, computed again on the table as it is."""
    identifier = table_identifier(product)
    try:
        catalog.create_namespace(product.domain)
    except NamespaceAlreadyExistsError:
        pass
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        try:
            table = catalog.create_table(
                identifier,
                schema=product.iceberg_schema(),
                partition_spec=product.partition_spec(),
                properties={**(properties or {}), CONTRACT_VERSION_PROPERTY: product.version},
            )
            return table, []
        except TableAlreadyExistsError:  # a concurrent first write created it meanwhile
            table = catalog.load_table(identifier)
    d = diff(table.schema(), product)
    if d.breaking:
        raise breaking_error(product, identifier, d)
    applied: list[str] = []
    steps = []
    if d.additive:
        steps.append(lambda t: applied.extend(_apply(t, product)))
    if partition_fields(table.spec(), table.schema()) != partition_fields(
        product.partition_spec(), table.schema()
    ):
        steps.append(lambda t: applied.extend(_evolve_partitioning(t, product)))
    if table.properties.get(CONTRACT_VERSION_PROPERTY) != product.version:
        steps.append(lambda t: _set_contract_version(t, product))
    for step in steps:
        table = commit_with_retry(catalog, identifier, step).table
    return table, applied


def _set_contract_version(table: "Table", product: "DataProduct") -> None:
    if table.properties.get(CONTRACT_VERSION_PROPERTY) != product.version:
        with transaction(table) as tx:
            tx.set_properties({CONTRACT_VERSION_PROPERTY: product.version})


def _apply(table: "Table", product: "DataProduct") -> list[str]:
    """Commit the additive changes the contract makes to ``table``'s schema; their descriptions."""
    d = diff(table.schema(), product)
    if d.breaking:  # a concurrent writer with another contract version changed the table
        raise breaking_error(product, ".".join(table.name()), d)
    changes = d.additive
    if not changes:
        return []
    columns = {c.name: c for c in product.columns}
    with table.update_schema() as update:
        for c in changes:
            col = columns[c.column]
            if c.kind == "add":
                update.add_column(c.column, col.type, doc=col.description, required=False)
            elif c.kind == "widen":
                update.update_column(c.column, field_type=col.type)
            elif c.kind == "make_optional":
                update.make_column_optional(c.column)
            elif c.kind == "doc":
                update.update_column(c.column, doc=col.description)
    return [c.describe() for c in changes]


def partition_fields(spec, schema) -> list[tuple[str, str]]:
    """(source column, transform) of each partition field, in order."""
    return [(schema.find_column_name(f.source_id), str(f.transform)) for f in spec.fields]


def _evolve_partitioning(table: "Table", product: "DataProduct") -> list[str]:
    """Iceberg partition evolution when the contract's partitioning changed: metadata only.
    Existing files keep their layout; new writes use the new spec (reads see both)."""
    wanted = product.partition_spec()
    live = partition_fields(table.spec(), table.schema())
    target = partition_fields(wanted, table.schema())
    if live == target:
        return []
    with table.update_spec() as update:
        for field in table.spec().fields:
            update.remove_field(field.name)
        for field in wanted.fields:
            update.add_field(table.schema().find_column_name(field.source_id), field.transform, field.name)
    return [f"~ partitioning: {live or 'unpartitioned'} -> {target or 'unpartitioned'}: additive"]


def contract_diff(catalog, product: "DataProduct") -> SchemaDiff | None:
    """The changes the contract would make to its table; None when there is no table yet."""
    try:
        table = catalog.load_table(table_identifier(product))
    except NoSuchTableError:
        return None
    return diff(table.schema(), product)
