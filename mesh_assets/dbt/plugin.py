"""dbt-duckdb plugin: dbt sources read from, and dbt models stored to, the mesh's Iceberg catalog.

Configured in ``dbt_project/profiles.yml`` (target ``local``) under the alias ``mesh_iceberg``.

* ``load``: a source ``<domain>.<product>`` is the current snapshot of that Iceberg table; the
  snapshot id read is remembered for provenance.
* ``store``: the ``external`` materialization has written the model to a Parquet file, which
  :func:`mesh_assets.dbt.outputs.store_model_output` conforms to the contract and commits.

This runs inside the dbt process, which inherits the mesh settings from the environment.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig, TargetConfig
from pyiceberg.exceptions import NoSuchTableError

from mesh_assets.dbt.outputs import store_model_output
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.wap import audit_branch_name, branch_head
from mesh_assets.settings import dbt_run_context, load_settings, pause_at


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]):
        self._catalog = open_catalog()
        self._snapshots: dict[str, int] = {}
        parents_file = dbt_run_context().parents_file
        self._parents = (
            json.loads(open(parents_file).read()) if parents_file and os.path.exists(parents_file) else None
        )

    def default_materialization(self):
        return "view"

    def configure_connection(self, conn):
        conn.execute("SET TimeZone = 'UTC'")  # casts of timestamptz to date are UTC days
        # dbt's DuckDB is in memory (profiles.yml): what exceeds its memory limit spills here, one
        # folder per process (DuckDB's temp files are not to be shared), not to its default `.tmp`
        # in the working directory, the project folder (read-only in the image)
        spill = str(load_settings().dbt_dir / "spill" / str(os.getpid())).replace("'", "''")
        conn.execute(f"SET temp_directory = '{spill}'")

    def load(self, source_config: SourceConfig):
        identifier = f"{source_config.schema}.{source_config.identifier}"
        try:
            table = self._catalog.load_table(identifier)
        except NoSuchTableError:
            raise RuntimeError(
                f"dbt source {identifier}: the data product has no Iceberg table "
                f"yet; materialize [{source_config.schema}, "
                f"{source_config.identifier}] first"
            ) from None
        # Within a Dagster run, a product this run wrote and has not published yet is read on
        # the run's audit branch: its dbt source tests check exactly the data being audited.
        run_id = dbt_run_context().run_id
        branch = audit_branch_name(run_id) if run_id else None
        head = branch_head(table, branch if branch in table.metadata.refs else None)
        if head is None:
            return table.schema().as_arrow().empty_table()
        self._snapshots[identifier] = head
        return table.scan(snapshot_id=head).to_arrow()

    def store(self, target_config: TargetConfig):
        relation = target_config.relation
        pause_at("dbt_store", f"{relation.schema}.{relation.identifier}")  # a test hook, see pause_at
        identifier, snapshot = store_model_output(
            self._catalog,
            relation.schema,
            relation.identifier,
            _without_empty_marker(pq.read_table(target_config.location.path)),
            inputs=self._snapshots,
            parents=self._parents,
            strategy=target_config.config.get("incremental_strategy"),
            unique_key=target_config.config.get("unique_key"),
        )
        self._snapshots[identifier] = snapshot


def _without_empty_marker(data: pa.Table) -> pa.Table:
    """dbt-duckdb's external materialization writes a model that returned no row as one row of
    nulls (its macro ``external.sql``: "if relation is empty, write a non-empty table"); that
    row is not data (a model over a streaming product not read yet returns none)."""
    if data.num_rows == 1 and all(column.null_count == 1 for column in data.columns):
        return data.slice(0, 0)
    return data
