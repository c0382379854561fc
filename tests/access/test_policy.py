"""The committed Rego policy over the data generated from the demo contracts, evaluated by the
real ``opa`` binary with the inputs Trino's OPA access control sends (Trino 476 format)."""

from __future__ import annotations

import pytest

from mesh_assets.access.opa import evaluate
from mesh_assets.access.policy_data import build

TRINO = {"trinoVersion": "476"}
DUCKDB = {"duckdbVersion": "1.5.5"}
GROUPS = {
    "mesh": [],
    "alice": ["analyst"],
    "bob": [],
    "carol": ["analyst", "pii_reader"],
    "mallory": ["pii_reader"],
    "domain-analytics": ["domain_analytics"],
    "domain-fleet": ["domain_fleet"],
}


@pytest.fixture(scope="module")
def policy(tmp_path_factory, opa_binary):
    directory = tmp_path_factory.mktemp("access")
    build(directory)

    def ask(rule: str, user: str, action: dict, stack: dict = TRINO):
        input_doc = {
            "context": {"identity": {"user": user, "groups": GROUPS.get(user, [])}, "softwareStack": stack},
            "action": action,
        }
        return evaluate(rule, input_doc, data_dir=directory).value

    return ask


def table(schema="operations", name="flights", catalog="iceberg", **extra):
    return {"catalogName": catalog, "schemaName": schema, "tableName": name, **extra}


def column(name, type_="varchar", schema="operations", table_name="flights"):
    return {"column": {**table(schema, table_name), "columnName": name, "columnType": type_}}


WRITES = [
    "CreateTable",
    "DropTable",
    "InsertIntoTable",
    "DeleteFromTable",
    "TruncateTable",
    "RenameTable",
    "SetTableProperties",
    "AddColumn",
    "DropColumn",
    "ExecuteTableProcedure",
    "CreateView",
]


@pytest.mark.parametrize("operation", WRITES)
def test_the_platform_user_may_do_anything_readers_may_not(policy, operation):
    action = {"operation": operation, "resource": {"table": table()}}
    assert policy("trino/allow", "mesh", action) is True
    assert policy("trino/allow", "carol", action) is False


@pytest.mark.parametrize(
    "operation,resource",
    [
        ("CreateSchema", {"schema": {"catalogName": "iceberg", "schemaName": "x"}}),
        ("DropSchema", {"schema": {"catalogName": "iceberg", "schemaName": "operations"}}),
        (
            "ExecuteProcedure",
            {
                "function": {
                    "catalogName": "iceberg",
                    "schemaName": "system",
                    "functionName": "rollback_to_snapshot",
                }
            },
        ),
        ("ReadSystemInformation", None),
    ],
)
def test_ddl_and_procedures_are_the_platform_s(policy, operation, resource):
    action = {"operation": operation, **({"resource": resource} if resource else {})}
    assert policy("trino/allow", "mesh", action) is True
    assert policy("trino/allow", "alice", action) is False


def test_reading_a_product_needs_a_role_of_its_contract(policy):
    select = {"operation": "SelectFromColumns", "resource": {"table": table(columns=["origin"])}}
    assert policy("trino/allow", "alice", select) is True
    assert policy("trino/allow", "carol", select) is True
    assert policy("trino/allow", "bob", select) is False
    assert policy("trino/allow", "nobody-known", select) is False
    # tables that are not products (quarantine, Iceberg metadata tables) and other catalogs
    for name in ("flights__quarantine", "flights$snapshots"):
        action = {"operation": "SelectFromColumns", "resource": {"table": table(name=name)}}
        assert policy("trino/allow", "carol", action) is False
    other = {"operation": "SelectFromColumns", "resource": {"table": table(catalog="postgres")}}
    assert policy("trino/allow", "carol", other) is False


def test_readers_may_call_system_functions_not_the_catalog_s(policy):
    """iceberg.system.table_changes reads a table's rows without its filters and masks."""

    def call(catalog, schema, name):
        return {
            "operation": "ExecuteFunction",
            "resource": {"function": {"catalogName": catalog, "schemaName": schema, "functionName": name}},
        }

    assert policy("trino/allow", "alice", call("system", "builtin", "sha256")) is True
    assert policy("trino/allow", "alice", call("iceberg", "system", "table_changes")) is False
    assert policy("trino/allow", "mesh", call("iceberg", "system", "table_changes")) is True


def test_every_user_may_run_queries_and_see_what_they_can_read(policy):
    assert policy("trino/allow", "bob", {"operation": "ExecuteQuery"}) is True
    tables = {
        "operation": "FilterTables",
        "filterResources": [
            {"table": table(name=n)} for n in ("flights", "flights__quarantine", "daily_performance")
        ],
    }
    assert policy("trino/batch", "alice", tables) == [0, 2]
    assert policy("trino/batch", "bob", tables) == []
    assert policy("trino/batch", "mesh", tables) == [0, 1, 2]
    schemas = {
        "operation": "FilterSchemas",
        "filterResources": [
            {"schema": {"catalogName": "iceberg", "schemaName": s}}
            for s in ("operations", "information_schema", "stack_test_x")
        ],
    }
    assert policy("trino/batch", "alice", schemas) == [0, 1]
    assert policy("trino/batch", "bob", schemas) == [1]
    catalogs = {
        "operation": "FilterCatalogs",
        "filterResources": [{"catalog": {"name": c}} for c in ("iceberg", "system", "postgres")],
    }
    assert policy("trino/batch", "alice", catalogs) == [0, 1]


def test_column_listing_shows_every_column_of_a_readable_table(policy):
    """FilterColumns comes as one table and its column names; the answer is column indexes (a
    SQL client such as Superset lists a table's columns this way)."""
    columns = {
        "operation": "FilterColumns",
        "filterResources": [{"table": table(columns=["year", "origin", "tailnum"])}],
    }
    assert policy("trino/batch", "alice", columns) == [0, 1, 2]
    assert policy("trino/batch", "mesh", columns) == [0, 1, 2]
    assert policy("trino/batch", "bob", columns) == []
    comments = {
        "operation": "SelectFromColumns",
        "resource": {"table": table("metadata", "table_comments", "system")},
    }
    assert policy("trino/allow", "bob", comments) is True  # its rows: the tables FilterTables leaves
    other = {"operation": "SelectFromColumns", "resource": {"table": table("runtime", "queries", "system")}}
    assert policy("trino/allow", "alice", other) is False


def test_row_filters_by_role(policy):
    action = {"operation": "GetRowFilters", "resource": {"table": table()}}
    assert policy("trino/rowFilters", "alice", action) == [{"expression": "(\"origin\" = 'JFK')"}]
    assert policy("trino/rowFilters", "carol", action) == []  # pii_reader has no filter
    assert policy("trino/rowFilters", "mesh", action) == []
    planes = {"operation": "GetRowFilters", "resource": {"table": table("fleet", "planes")}}
    assert policy("trino/rowFilters", "alice", planes) == []


def test_column_masks_by_clearance_rendered_for_the_engine_that_asks(policy):
    tailnum = {"operation": "GetColumnMask", "resource": column("tailnum")}
    assert policy("trino/columnMask", "alice", tailnum) == {
        "expression": 'lower(to_hex(sha256(to_utf8("tailnum"))))'
    }
    assert policy("trino/columnMask", "alice", tailnum, DUCKDB) == {"expression": 'sha256("tailnum")'}
    assert policy("trino/columnMask", "carol", tailnum) is None  # cleared for pii
    assert policy("trino/columnMask", "mesh", tailnum) is None
    origin = {"operation": "GetColumnMask", "resource": column("origin")}
    assert policy("trino/columnMask", "alice", origin) is None  # public
    cancelled = {
        "operation": "GetColumnMask",
        "resource": column("cancelled", "bigint", table_name="daily_performance"),
    }
    # carol's pii clearance does not cover confidential columns
    assert policy("trino/columnMask", "carol", cancelled) == {"expression": "CAST(NULL AS bigint)"}
    batch = {"operation": "GetColumnMask", "filterResources": [column("origin"), column("tailnum")]}
    assert policy("trino/batchColumnMasks", "alice", batch) == [
        {"index": 1, "viewExpression": {"expression": 'lower(to_hex(sha256(to_utf8("tailnum"))))'}}
    ]
    assert policy("trino/batchColumnMasks", "carol", batch) == []


def test_only_the_platform_may_impersonate(policy):
    action = {"operation": "ImpersonateUser", "resource": {"user": {"user": "alice"}}}
    assert policy("trino/allow", "mesh", action) is True
    for user in ("carol", "domain-analytics", "bob"):
        assert policy("trino/allow", user, action) is False, user


@pytest.mark.parametrize("operation", WRITES)
def test_a_domain_pipeline_writes_its_own_schema_only(policy, operation):
    own = {"operation": operation, "resource": {"table": table("fleet", "planes__staging")}}
    other = {"operation": operation, "resource": {"table": table("operations", "flights")}}
    assert policy("trino/allow", "domain-fleet", own) is True
    assert policy("trino/allow", "domain-fleet", other) is False
    assert policy("trino/allow", "domain-analytics", own) is False


def test_a_domain_pipeline_cannot_rename_or_create_out_of_its_schema(policy):
    rename = {
        "operation": "RenameTable",
        "resource": {"table": table("fleet", "planes")},
        "targetResource": {"table": table("operations", "planes")},
    }
    assert policy("trino/allow", "domain-fleet", rename) is False
    rename["targetResource"] = {"table": table("fleet", "planes__backup")}
    assert policy("trino/allow", "domain-fleet", rename) is True
    for schema in ("fleet", "operations"):
        create = {
            "operation": "CreateSchema",
            "resource": {"schema": {"catalogName": "iceberg", "schemaName": schema}},
        }
        assert policy("trino/allow", "domain-fleet", create) is (schema == "fleet")
    other_catalog = {"operation": "CreateTable", "resource": {"table": table("fleet", "t", catalog="system")}}
    assert policy("trino/allow", "domain-fleet", other_catalog) is False


def test_a_domain_pipeline_reads_other_domains_public_products_whole(policy):
    select = {"operation": "SelectFromColumns", "resource": {"table": table(columns=["origin", "tailnum"])}}
    assert policy("trino/allow", "domain-analytics", select) is True
    rows = {"operation": "GetRowFilters", "resource": {"table": table()}}
    assert policy("trino/rowFilters", "domain-analytics", rows) == []
    assert policy("trino/rowFilters", "alice", rows) != []
    mask = {"operation": "GetColumnMask", "resource": column("tailnum")}
    assert policy("trino/columnMask", "domain-analytics", mask) is None
    assert policy("trino/columnMask", "alice", mask) is not None
    schemas = {
        "operation": "FilterSchemas",
        "resource": {"schema": {"catalogName": "iceberg", "schemaName": "operations"}},
    }
    assert policy("trino/allow", "domain-analytics", schemas) is True


def test_a_domain_pipeline_is_refused_another_domains_internal_product(
    tmp_path, opa_binary, write_contract, planes_doc
):
    from mesh_assets.access.policy_data import load_users
    from mesh_assets.workspace import load_contract

    planes_doc.setdefault("customProperties", []).append({"property": "visibility", "value": "internal"})
    build(tmp_path, products=[load_contract(write_contract(planes_doc))], users=load_users())

    def allowed(user: str, groups: list[str]) -> bool:
        select = {
            "operation": "SelectFromColumns",
            "resource": {"table": table("fleet", "planes", columns=["tailnum"])},
        }
        input_doc = {
            "context": {"identity": {"user": user, "groups": groups}, "softwareStack": TRINO},
            "action": select,
        }
        return evaluate("trino/allow", input_doc, data_dir=tmp_path).value

    assert allowed("domain-analytics", ["domain_analytics"]) is False
    assert allowed("domain-fleet", ["domain_fleet"]) is True  # its own
    assert allowed("mesh", []) is True


def test_local_table_decision_is_trinos_three_questions(tmp_path, opa_binary):
    build(tmp_path)

    def ask(user):  # the local read path's input carries the table instead of an action
        return evaluate(
            "trino/local_table_decision",
            {
                "context": {"identity": {"user": user, "groups": GROUPS[user]}, "softwareStack": DUCKDB},
                "table": {
                    **table(),
                    "columns": [
                        {"name": "tailnum", "type": "VARCHAR"},
                        {"name": "origin", "type": "VARCHAR"},
                    ],
                },
            },
            data_dir=tmp_path,
        ).value

    assert ask("alice") == {
        "allow": True,
        "rowFilters": ["(\"origin\" = 'JFK')"],
        "columnMasks": {"tailnum": 'sha256("tailnum")'},
    }
    assert ask("carol") == {"allow": True, "rowFilters": [], "columnMasks": {}}
    assert ask("bob")["allow"] is False
    assert ask("mesh") == {"allow": True, "rowFilters": [], "columnMasks": {}}


def test_decision_log_drops_only_allowed_bookkeeping(tmp_path, opa_binary):
    build(tmp_path)

    def dropped(operation, result):
        event = {"input": {"action": {"operation": operation}}, "result": result}
        return evaluate("system/log/drop", event, data_dir=tmp_path).value is True

    assert dropped("ExecuteQuery", True) and dropped("FilterTables", [0, 1])
    assert not dropped("ExecuteQuery", False)  # denials are always kept
    assert not dropped("FilterTables", [])
    assert not dropped("SelectFromColumns", True)  # reads are kept
    assert not dropped("CreateTable", True)


def test_the_policy_passes_opa_check_strict_and_is_formatted(opa_binary):
    import subprocess

    from mesh_assets.access.policy_data import POLICY_DIR

    check = subprocess.run(
        [str(opa_binary), "check", "--strict", str(POLICY_DIR)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run([str(opa_binary), "fmt", "--list", str(POLICY_DIR)], capture_output=True, text=True)
    assert fmt.returncode == 0 and fmt.stdout.strip() == "", fmt.stdout
