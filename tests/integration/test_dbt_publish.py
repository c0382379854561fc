"""One publish policy: a dbt-built product without a blocking contract rule is written to the
run's audit branch and published by write-audit-publish once its blocking dbt tests passed,
tagged like every other product (local target: dbt-duckdb + plugin, in a copy of the repository
whose reference domain holds the products of the test)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from string import Template

from meshtest import land

from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.commit import CONTRACT_VERSION_PROPERTY, INPUTS_PROPERTY, RUN_ID_PROPERTY
from mesh_assets.iceberg.wap import LAST_CHECKED, audit_branch_name, checked_tag_name
from mesh_assets.settings import PROJECT_DIR

MESH = Path(sys.executable).parent / "mesh"

CONTRACT = Template("""\
apiVersion: v3.1.0
kind: DataContract
id: urn:datamesh:reference:$name
version: 1.2.0
status: active
name: $name
domain: reference
dataProduct: $name
description:
  purpose: How many airports each time zone holds.
team:
  name: reference-data-team
schema:
  - name: $name
    physicalType: table
    properties:
      - name: tzone
        classification: public
        logicalType: string
        physicalType: string
        quality: $tzone_rules
      - name: airport_count
        classification: public
        logicalType: integer
        physicalType: bigint
        quality: $count_rules
    quality: $table_rules
customProperties:
  - property: transform
    value: dbt
""")

MODEL = """\
select tzone, count(*) as airport_count
from {{ source('reference', 'airports') }}
group by tzone
"""

ONLY_NEW_YORK = "implementation: {accepted_values: {values: [America/New_York]}}"

PRODUCTS = {
    # only warn rules, each kind: a dbt test and a GX expectation (both fail), a row count (passes)
    "zone_sizes": {
        "tzone_rules": f"[{{type: custom, engine: dbt, severity: warn, {ONLY_NEW_YORK}}}]",
        "count_rules": "[{type: custom, engine: great-expectations, severity: warn, implementation: "
        "{type: expect_column_values_to_be_between, kwargs: {min_value: 1000}}}]",
        "table_rules": "[{type: library, metric: rowCount, mustBeGreaterThan: 1, severity: warn}]",
    },
    "zone_counts": {"tzone_rules": "[]", "count_rules": "[]", "table_rules": "[]"},  # no rule, no checks
    # its one blocking rule is a dbt test, and it fails
    "zone_strict": {
        "tzone_rules": f"[{{type: custom, engine: dbt, {ONLY_NEW_YORK}}}]",
        "count_rules": "[]",
        "table_rules": "[]",
    },
}


def _materialize_reference(home: Path, root: Path, products: list[str]) -> subprocess.CompletedProcess:
    """``mesh materialize reference`` in a copy of the repository whose reference domain also
    holds ``products`` (each a dbt model of ``MODEL``), on the demo's airlines and airports."""
    shutil.copytree(PROJECT_DIR / "domains", root / "domains", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT_DIR / "dbt_project", root / "dbt_project", ignore=shutil.ignore_patterns("logs"))
    shutil.copyfile(PROJECT_DIR / "workspace.yaml", root / "workspace.yaml")
    for name in products:
        contract = CONTRACT.substitute(name=name, **PRODUCTS[name])
        (root / "domains" / "reference" / "products" / f"{name}.yaml").write_text(contract)
        (root / "dbt_project" / "models" / "reference" / "marts" / f"{name}.sql").write_text(MODEL)
    land(home, "reference", "airlines.csv")
    land(home, "reference", "airports.csv")
    env = {**os.environ, "MESH_PROJECT_DIR": str(root)}  # the run parses the copy's dbt project
    return subprocess.run(
        [str(MESH), "materialize", "reference"], env=env, capture_output=True, text=True, timeout=900
    )


def _refs(table) -> dict[str, tuple[str, int]]:
    return {name: (ref.snapshot_ref_type, ref.snapshot_id) for name, ref in table.metadata.refs.items()}


def test_dbt_product_without_blocking_rule_is_published_like_an_ingested_one(mesh_home, tmp_path):
    run = _materialize_reference(mesh_home, tmp_path / "repo", ["zone_sizes", "zone_counts"])
    assert run.returncode == 0, run.stdout + run.stderr
    # the warn rules failed and reported without failing the run (the checks step found the
    # snapshot its dbt step had published on main) and without holding the publication back
    assert re.search(
        r"reference\.zone_sizes +10 +\d+ +1/3 passed; FAILED: "
        r"accepted_values_zone_sizes_tzone__America_New_York, between_airport_count\n",
        run.stdout,
    ), run.stdout

    catalog = open_catalog()
    ingested = catalog.load_table("reference.airports")  # published by its blocking checks
    run_id = ingested.current_snapshot().summary.additional_properties[RUN_ID_PROPERTY]
    for table in (
        ingested,
        catalog.load_table("reference.zone_sizes"),
        catalog.load_table("reference.zone_counts"),
    ):
        head = table.current_snapshot()
        # main carries the run's publication, tagged as checked; no audit branch is left
        assert _refs(table) == {
            "main": ("branch", head.snapshot_id),
            checked_tag_name(run_id): ("tag", head.snapshot_id),
            LAST_CHECKED: ("tag", head.snapshot_id),
        }, ".".join(table.name())
        # the same provenance: the run, the contract version, the input snapshots read
        summary = head.summary.additional_properties
        assert summary[RUN_ID_PROPERTY] == run_id
        assert summary[CONTRACT_VERSION_PROPERTY] == ("1.0.0" if table is ingested else "1.2.0")
        inputs = {} if table is ingested else {"reference.airports": ingested.current_snapshot().snapshot_id}
        assert json.loads(summary[INPUTS_PROPERTY]) == inputs
        if table is not ingested:
            rows = {r["tzone"]: r["airport_count"] for r in table.scan().to_arrow().to_pylist()}
            assert rows["America/New_York"] == 519
            assert sum(rows.values()) == 1458


def test_dbt_product_is_not_published_when_its_blocking_dbt_test_fails(mesh_home, tmp_path):
    run = _materialize_reference(mesh_home, tmp_path / "repo", ["zone_strict"])
    assert run.returncode == 1, run.stdout + run.stderr  # a blocking check failed
    assert "accepted_values_zone_strict_tzone__America_New_York" in run.stdout

    table = open_catalog().load_table("reference.zone_strict")
    airports = open_catalog().load_table("reference.airports")
    run_id = airports.current_snapshot().summary.additional_properties[RUN_ID_PROPERTY]
    branch = audit_branch_name(run_id)
    refs = _refs(table)
    # main stays at the empty snapshot the audit branch started from; no tag moved
    assert set(refs) == {"main", branch}
    assert table.scan().to_arrow().num_rows == 0
    assert table.scan(snapshot_id=refs[branch][1]).to_arrow().num_rows == 10  # kept on the branch
