"""dbt-duckdb plugin: dbt sources read from, and dbt models stored to, the mesh's Iceberg catalog.

Configured in ``dbt_project/profiles.yml`` (target ``local``) under the alias ``mesh_iceberg``.

* ``load``: a source ``<domain>.<product>`` is the current snapshot of that Iceberg table; the
  snapshot id read is remembered for provenance.
* ``store``: the ``external`` materialization has written the model to a Parquet file; the file
  is conformed to the model's contract (types and nullability; a model without contract keeps
  the types DuckDB inferred, all nullable) and committed to ``<domain>.<model>`` as one
  overwrite whose snapshot summary records the input snapshots (``mesh.inputs``).

This runs inside the dbt process, which inherits the mesh settings from the environment.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig, TargetConfig
from pyiceberg.exceptions import NoSuchTableError

from mesh_assets.catalog import (
    INPUTS_PROPERTY,
    SCHEMA_CHANGES_PROPERTY,
    audit_branch_name,
    branch_head,
    evolve_table,
    open_audit_branch,
    open_catalog,
)
from mesh_assets.contracts import DataProduct, load_contract
from mesh_assets.ingestion import replace_rows
from mesh_assets.partitions import PartitionSelection
from mesh_assets.settings import (
    DOMAINS_DIR,
    PARENTS_FILE_ENV,
    PARTITION_END_ENV,
    PARTITION_START_ENV,
    RUN_ID_ENV,
)



class DbtContractError(ValueError):
    """A dbt model's output does not fit its data contract."""


def model_contract(domain: str, model: str) -> DataProduct | None:
    path = DOMAINS_DIR / domain / "products" / f"{model}.yaml"
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
        raise DbtContractError(f"{where}, column {col}: the model {what} this column; make the "
                               "model's SELECT and the contract's schema agree")
    for field in target:
        if not field.nullable and data.column(field.name).null_count:
            raise DbtContractError(f"{where}, column {field.name}: "
                                   f"{data.column(field.name).null_count} null value(s) in a "
                                   "required column")
    try:
        return data.select(target.names).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DbtContractError(f"{where}: the model's column types do not fit the contract: "
                               f"{exc}") from None


def _partition_window(product: DataProduct | None) -> PartitionSelection | None:
    start, end = os.environ.get(PARTITION_START_ENV), os.environ.get(PARTITION_END_ENV)
    if product is None or product.dagster_partitions is None or not (start and end):
        return None
    return PartitionSelection(product.dagster_partitions.column,
                              start=datetime.fromisoformat(start), end=datetime.fromisoformat(end))


def write_model_output(table, data: pa.Table, properties: dict[str, str], *, row_filter=None,
                       strategy: str | None = None, unique_key=None,
                       branch: str | None = None) -> None:
    """Commit a model's output: ``merge`` upserts on ``unique_key`` (rows of other keys stay);
    every other strategy replaces the rows of ``row_filter`` (the partition being built), or
    the whole table when there is none."""
    if strategy == "merge":
        keys = [unique_key] if isinstance(unique_key, str) else list(unique_key or [])
        if not keys:
            raise DbtContractError(f"dbt model {'.'.join(table.name())}: incremental_strategy "
                                   "merge needs a unique_key")
        if table.current_snapshot() is None:
            table.append(data, snapshot_properties=properties, branch=branch or "main")
        else:
            table.upsert(data, join_cols=keys, snapshot_properties=properties,
                         branch=branch or "main")
        return
    replace_rows(table, data.to_batches(), data.schema, properties, row_filter, branch)


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]):
        self._catalog = open_catalog()
        self._snapshots: dict[str, int] = {}
        parents_file = os.environ.get(PARENTS_FILE_ENV)
        self._parents = (json.loads(open(parents_file).read())
                         if parents_file and os.path.exists(parents_file) else None)

    def default_materialization(self):
        return "view"

    def configure_connection(self, conn):
        conn.execute("SET TimeZone = 'UTC'")  # casts of timestamptz to date are UTC days

    def load(self, source_config: SourceConfig):
        identifier = f"{source_config.schema}.{source_config.identifier}"
        try:
            table = self._catalog.load_table(identifier)
        except NoSuchTableError:
            raise RuntimeError(f"dbt source {identifier}: the data product has no Iceberg table "
                               f"yet; materialize [{source_config.schema}, "
                               f"{source_config.identifier}] first") from None
        # Within a Dagster run, a product this run wrote and has not published yet is read on
        # the run's audit branch: its dbt source tests check exactly the data being audited.
        run_id = os.environ.get(RUN_ID_ENV)
        branch = audit_branch_name(run_id) if run_id else None
        head = branch_head(table, branch if branch in table.metadata.refs else None)
        if head is None:
            return table.schema().as_arrow().empty_table()
        self._snapshots[identifier] = head
        return table.scan(snapshot_id=head).to_arrow()

    def store(self, target_config: TargetConfig):
        relation = target_config.relation
        domain, model = relation.schema, relation.identifier
        identifier = f"{domain}.{model}"
        data = pq.read_table(target_config.location.path)
        product = model_contract(domain, model)
        applied: list[str] = []
        if product is not None:
            data = conform_to_contract(data, product)
            table, applied = evolve_table(self._catalog, product)
            identifier = product.table_identifier
        else:
            try:
                table = self._catalog.load_table(identifier)
            except NoSuchTableError:
                self._catalog.create_namespace_if_not_exists(domain)
                table = self._catalog.create_table(identifier, schema=data.schema)
        inputs = self._snapshots
        if self._parents is not None and identifier in self._parents:
            inputs = {t: s for t, s in inputs.items() if t in self._parents[identifier]}
        properties = {
            INPUTS_PROPERTY: json.dumps(inputs, sort_keys=True),
            "mesh.producer": "dbt",
        }
        if os.environ.get(RUN_ID_ENV):
            properties["mesh.dagster.run_id"] = os.environ[RUN_ID_ENV]
        if product is not None:
            properties["mesh.contract.version"] = product.version
        if applied:
            properties[SCHEMA_CHANGES_PROPERTY] = json.dumps(applied)
        row_filter = None
        window = _partition_window(product)
        if window is not None:
            properties["mesh.partition"] = window.describe()
            row_filter = window.iceberg_filter(product.column(window.column).type)
            outside = len(data) - len(data.filter(window.arrow_mask(data)))
            if outside:
                raise DbtContractError(
                    f"dbt model {product.identifier}: {outside} row(s) fall outside the partition "
                    f"being built ({window.describe()}); filter the model's input with "
                    "{{ mesh_partition_filter(...) }}")
        # Write-audit-publish: under Dagster the output waits on the run's audit branch until
        # the product's blocking checks pass (mesh_assets.quality publishes it).
        run_id = os.environ.get(RUN_ID_ENV)
        branch = audit_branch_name(run_id) if run_id and product is not None and any(
            r.severity == "error" for r in product.rules) else None
        if branch is not None:
            table = open_audit_branch(table, branch)
        write_model_output(table, data, properties, row_filter=row_filter, branch=branch,
                           strategy=target_config.config.get("incremental_strategy"),
                           unique_key=target_config.config.get("unique_key"))
        self._snapshots[identifier] = branch_head(table.refresh(), branch)
