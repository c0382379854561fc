"""dbt model outputs committed to Iceberg, the same way on both engines.

A model's rows (from the Parquet file dbt-duckdb wrote, or from the staging table dbt-trino
wrote) are conformed to the product's contract (types and nullability; a model without a
contract keeps its inferred types, all nullable) and committed to ``<domain>.<model>`` as one
overwrite (or the rows of the partition being built, or a merge) whose snapshot summary
records the input snapshots (``mesh.inputs``). Under Dagster the commit goes to the run's
audit branch, always; the product's checks publish it, or, for a product without a blocking
contract rule, the dbt step once none of the model's blocking dbt tests failed
(:func:`publish_checked_models`). A plain ``dbt build`` outside Dagster (no run id) commits to
main, unaudited and untagged.

No dbt import here: the Trino path runs in the Dagster process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError

from mesh_assets.contract.model import DataProduct
from mesh_assets.contract.partitions import PartitionSelection
from mesh_assets.dbt.project import is_ephemeral
from mesh_assets.engine import trino_connection, trino_table
from mesh_assets.iceberg.catalog import IcebergCatalog, evolve_table, snapshot_metadata
from mesh_assets.iceberg.commit import (
    CONTRACT_VERSION_PROPERTY,
    INPUTS_PROPERTY,
    PARTITION_PROPERTY,
    PRODUCER_PROPERTY,
    RUN_ID_PROPERTY,
    SCHEMA_CHANGES_PROPERTY,
    commit_with_retry,
    replace_rows,
)
from mesh_assets.iceberg.wap import audit_branch_name, branch_head, open_audit_branch, publish_unless_audited
from mesh_assets.settings import dbt_run_context
from mesh_assets.workspace import contract_path, load_contract


class DbtContractError(ValueError):
    """A dbt model's output does not fit its data contract."""


def model_contract(domain: str, model: str) -> DataProduct | None:
    path = contract_path(domain, model)
    return load_contract(path, domain=domain) if path.exists() else None


def conform_to_contract(data: pa.Table, product: DataProduct) -> pa.Table:
    """``data`` with the contract's column order, types and nullability, or a clear error."""
    target = product.arrow_schema()
    where = f"dbt model {product.identifier} (contract {product.path})"
    missing = [n for n in target.names if n not in data.column_names]
    extra = [n for n in data.column_names if n not in target.names]
    if missing or extra:
        col = (missing or extra)[0]
        what = "does not produce" if missing else "produces undeclared"
        raise DbtContractError(
            f"{where}, column {col}: the model {what} this column; make the "
            "model's SELECT and the contract's schema agree"
        )
    for field in target:
        if not field.nullable and data.column(field.name).null_count:
            raise DbtContractError(
                f"{where}, column {field.name}: "
                f"{data.column(field.name).null_count} null value(s) in a "
                "required column"
            )
    try:
        return data.select(target.names).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DbtContractError(f"{where}: the model's column types do not fit the contract: {exc}") from None


def _partition_window(
    product: DataProduct | None, bounds: tuple[str, str] | None
) -> PartitionSelection | None:
    run = dbt_run_context()
    start, end = bounds or (run.partition_start, run.partition_end)
    if product is None or product.dagster_partitions is None or not (start and end):
        return None
    return PartitionSelection(
        product.dagster_partitions.column,
        start=datetime.fromisoformat(start),
        end=datetime.fromisoformat(end),
    )


def write_model_output(
    table,
    data: pa.Table,
    properties: dict[str, str],
    *,
    row_filter=None,
    strategy: str | None = None,
    unique_key=None,
    branch: str | None = None,
) -> None:
    """Commit a model's output: ``merge`` upserts on ``unique_key`` (rows of other keys stay);
    every other strategy replaces the rows of ``row_filter`` (the partition being built), or
    the whole table when there is none."""
    if strategy == "merge":
        keys = [unique_key] if isinstance(unique_key, str) else list(unique_key or [])
        if not keys:
            raise DbtContractError(
                f"dbt model {'.'.join(table.name())}: incremental_strategy merge needs a unique_key"
            )
        if table.current_snapshot() is None:
            table.append(data, snapshot_properties=properties, branch=branch or "main")
        else:
            table.upsert(data, join_cols=keys, snapshot_properties=properties, branch=branch or "main")
        return
    replace_rows(table, data.to_batches(), data.schema, properties, row_filter, branch)


def store_model_output(
    catalog,
    domain: str,
    model: str,
    data: pa.Table,
    *,
    inputs: dict[str, int],
    parents: dict[str, list[str]] | None = None,
    strategy: str | None = None,
    unique_key=None,
    run_id: str | None = None,
    bounds: tuple[str, str] | None = None,
) -> tuple[str, int | None]:
    """Commit the output of model ``domain.model``; returns its table and new snapshot id.

    ``run_id`` (the Dagster run: the commit goes to its audit branch; without one, to main) and
    ``bounds`` (ISO start/end of the partition being built) default to what the dbt asset put
    in the dbt process's environment."""
    run_id = run_id or dbt_run_context().run_id
    identifier = f"{domain}.{model}"
    product = model_contract(domain, model)
    applied: list[str] = []
    if product is not None:
        data = conform_to_contract(data, product)
        table, applied = evolve_table(catalog, product)
        identifier = product.table_identifier
    else:
        try:
            table = catalog.load_table(identifier)
        except NoSuchTableError:
            catalog.create_namespace_if_not_exists(domain)
            try:
                table = catalog.create_table(identifier, schema=data.schema)
            except TableAlreadyExistsError:  # a concurrent first write created it meanwhile
                table = catalog.load_table(identifier)
    if parents is not None and identifier in parents:
        inputs = {t: s for t, s in inputs.items() if t in parents[identifier]}
    properties = {
        INPUTS_PROPERTY: json.dumps(inputs, sort_keys=True),
        PRODUCER_PROPERTY: "dbt",
    }
    if run_id:
        properties[RUN_ID_PROPERTY] = run_id
    if product is not None:
        properties[CONTRACT_VERSION_PROPERTY] = product.version
    if applied:
        properties[SCHEMA_CHANGES_PROPERTY] = json.dumps(applied)
    row_filter = None
    window = _partition_window(product, bounds)
    if window is not None:
        properties[PARTITION_PROPERTY] = window.describe()
        row_filter = window.iceberg_filter(product.column(window.column).type)
        outside = len(data) - len(data.filter(window.arrow_mask(data)))
        if outside:
            raise DbtContractError(
                f"dbt model {product.identifier}: {outside} row(s) fall outside the partition "
                f"being built ({window.describe()}); filter the model's input with "
                "{{ mesh_partition_filter(...) }}"
            )
    # Write-audit-publish: under Dagster the output waits on the run's audit branch until its
    # blocking checks passed (published by the product's checks, or by the dbt step when it
    # has none). A plain `dbt build` (no run: bench's by-hand baseline) writes main.
    branch = audit_branch_name(run_id) if run_id else None
    if branch is not None:
        table = open_audit_branch(table, branch)
    committed = commit_with_retry(
        catalog,
        identifier,
        lambda live: write_model_output(
            live,
            data,
            properties,
            row_filter=row_filter,
            branch=branch,
            strategy=strategy,
            unique_key=unique_key,
        ),
    )
    return identifier, branch_head(committed.table, branch)


def table_of(node: Mapping[str, Any], products: Mapping[str, DataProduct]) -> str:
    """The Iceberg table a model or source node reads or writes (for a product's model: the
    product's table, not the staging relation dbt-trino builds)."""
    name = node.get("identifier") or node.get("alias") or node["name"]
    product = products.get(f"{node['schema']}.{node['name']}") if node["resource_type"] == "model" else None
    return product.table_identifier if product else f"{node['schema']}.{name}"


def publish_staged_model(
    catalog: IcebergCatalog,
    node: Mapping[str, Any],
    inputs: set[str],
    *,
    run_id: str,
    bounds: Mapping[str, str],
) -> str:
    """Trino mode: the rows dbt-trino built into ``<model>__staging`` are committed to the
    product's table the same way the DuckDB plugin commits them (contract conformance,
    partition replacement or merge, audit branch, recorded inputs)."""

    staging = f"{node['schema']}.{node['alias']}"
    data = catalog.load_table(staging).scan().to_arrow()
    branch = audit_branch_name(run_id)
    snapshots = {}
    for identifier in inputs:
        table = catalog.load_table(identifier)
        head = branch_head(table, branch if branch in table.metadata.refs else None)
        if head is not None:
            snapshots[identifier] = head
    config = node.get("config") or {}
    identifier, _ = store_model_output(
        catalog.catalog(),
        node["schema"],
        node["name"],
        data,
        inputs=snapshots,
        strategy=config.get("incremental_strategy"),
        unique_key=config.get("unique_key"),
        run_id=run_id,
        bounds=(bounds["mesh_partition_start"], bounds["mesh_partition_end"]) if bounds else None,
    )
    return identifier


def publish_checked_models(
    catalog: IcebergCatalog, products: Iterable[DataProduct], branch: str, run_id: str
) -> list[str]:
    """The dbt step's publication: each of ``products`` (models it committed to ``branch``
    whose blocking dbt tests passed) goes to main through
    :func:`~mesh_assets.iceberg.wap.publish_unless_audited`, tagged ``checked-<run_id>`` and
    ``last-checked``, unless it has a blocking contract rule (its checks publish it). Returns
    the identifiers of the products published."""
    published = []
    for product in products:
        table = catalog.load_table(product.table_identifier)
        if publish_unless_audited(product, table, branch, run_id)[1]:
            published.append(product.identifier)
    return published


def drop_staging(domain: str, staged: Sequence[str]) -> None:
    """Drop the staging relations of ``domain``'s Trino run (through Trino, which deletes their
    files), as the domain's service account."""

    if not staged:
        return
    cursor = trino_connection(domain=domain).cursor()
    for identifier in staged:
        cursor.execute(f"DROP TABLE IF EXISTS {trino_table(identifier)}")
        cursor.fetchall()


def parent_tables(
    manifest: Mapping[str, Any], unique_id: str, products: Mapping[str, DataProduct]
) -> set[str]:
    """The tables a model reads: its sources and table models, and those an ephemeral model it
    reads (inlined into its SQL, no table of its own) reads in turn."""
    out: set[str] = set()
    queue = list(manifest["nodes"][unique_id].get("depends_on", {}).get("nodes", []))
    seen: set[str] = set()
    while queue:
        parent = queue.pop()
        if parent in seen:
            continue
        seen.add(parent)
        node = manifest["sources"].get(parent) or manifest["nodes"].get(parent)
        if not node or node["resource_type"] not in ("source", "model"):
            continue
        if is_ephemeral(node):
            queue += node.get("depends_on", {}).get("nodes", [])
        else:
            out.add(table_of(node, products))
    return out


def iceberg_output_metadata(
    catalog: IcebergCatalog, identifier: str, parents: set[str], branch: str
) -> dict[str, Any]:
    """Metadata of the snapshot the model wrote: the audit branch head when it is waiting for
    its checks, else main."""
    table = catalog.load_table(identifier)
    audited = branch in table.metadata.refs
    snapshot = table.snapshot_by_id(branch_head(table, branch if audited else None))
    recorded = {}
    if snapshot is not None and snapshot.summary:
        recorded = json.loads(snapshot.summary.additional_properties.get(INPUTS_PROPERTY, "{}"))
    inputs = {ident: snap for ident, snap in recorded.items() if ident in parents}
    metadata = snapshot_metadata(table, inputs=inputs, snapshot_id=snapshot.snapshot_id if snapshot else None)
    if audited:
        metadata["wap/branch"] = branch
    return metadata
