"""A corpus of bad raw files: each gives a clear error (file, product, column where there is
one, and what to do) or, with ``quarantine: true``, sets the bad rows aside; a refused file
changes nothing (same snapshot, same rows), and every good row lands exactly once.

Malformed CSV, wrong types, missing and extra columns, latin-1 bytes (in a value and in the
header), an empty file, a 10 MB field (as a valid string and as a bad integer), a missing
required value, duplicated primary keys (caught by the blocking uniqueness check under
write-audit-publish: main is not touched).
"""

import textwrap

import dagster as dg
import pytest
from meshtest import land

from mesh_assets.iceberg.catalog import IcebergCatalog, open_catalog
from mesh_assets.ingest.assets import ingest, ingestion_asset
from mesh_assets.ingest.quarantine import QUARANTINE_SUFFIX
from mesh_assets.ingest.readers import IngestionError
from mesh_assets.quality.checks import contract_checks
from mesh_assets.workspace import load_contract

HEADER = "id,qty,price,label,day"
GOOD = [f"k{i},{i},{i}.5,label {i},2024-01-{i + 1:02d}" for i in range(5)]
BIG = 10 << 20  # a 10 MB field


def contract(folder, name: str, *, quarantine: bool):
    text = textwrap.dedent(f"""\
        apiVersion: v3.1.0
        kind: DataContract
        id: urn:datamesh:bad:{name}
        version: 1.0.0
        status: active
        domain: bad
        dataProduct: {name}
        team:
          name: platform-team
        schema:
          - name: {name}
            physicalType: table
            properties:
              - name: id
                logicalType: string
                physicalType: string
                required: true
                primaryKey: true
              - name: qty
                logicalType: integer
                physicalType: int
              - name: price
                logicalType: number
                physicalType: double
              - name: label
                logicalType: string
                physicalType: string
              - name: day
                logicalType: date
                physicalType: date
        customProperties:
          - property: source
            value: {{format: csv, file: {name}.csv}}
        """)
    if quarantine:
        text += "  - property: quarantine\n    value: true\n"
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return load_contract(path)


def write_raw(home, name: str, data: bytes) -> None:
    land(home, "bad", f"{name}.csv", data)


def csv_bytes(*lines: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


# (case, raw bytes, column the error must name or None, words the message must contain)
REFUSED = [
    (
        "malformed: unterminated quote",
        csv_bytes('k9,1,1.5,"no end quote,2024-01-01', *GOOD[:2]),
        None,
        ["not valid CSV", "line 2", "expected 5 fields"],
    ),
    (
        "malformed: too many fields",
        csv_bytes(*GOOD[:2], "k9,1,1.5,x,2024-01-01,surplus"),
        None,
        ["not valid CSV", "line 4", "found 6"],
    ),
    (
        "wrong type",
        csv_bytes(*GOOD[:3], "k9,seven,1.5,x,2024-01-01"),
        "qty",
        ["line 5", "'seven' is not a valid int"],
    ),
    (
        "wrong type: date",
        csv_bytes("k9,1,1.5,x,2024-13-45", *GOOD[:1]),
        "day",
        ["line 2", "'2024-13-45' is not a valid date"],
    ),
    (
        "missing column",
        csv_bytes("k9,1,1.5,2024-01-01", header="id,qty,price,day"),
        "label",
        ["has no column 'label'"],
    ),
    (
        "extra column",
        csv_bytes("k9,1,1.5,x,2024-01-01,z", header=HEADER + ",comment"),
        "comment",
        ["has column 'comment'", "does not declare"],
    ),
    (
        "latin-1 value",
        ("\n".join([HEADER, *GOOD[:2], "k9,1,1.5,café crème,2024-01-01"]) + "\n").encode("latin-1"),
        "label",
        ["line 4", "not UTF-8", "0xe9", "iconv"],
    ),
    (
        "latin-1 header",
        ("id,qty,price,label,day,é\n" + "k9,1,1.5,x,2024-01-01,z\n").encode("latin-1"),
        None,
        ["line 1", "not UTF-8"],
    ),
    ("empty file", b"", None, ["the file is empty"]),
    (
        "10 MB field in an integer column",
        csv_bytes(*GOOD[:1], "k9," + "9" * BIG + ",1.5,x,2024-01-01"),
        "qty",
        ["line 3", "is not a valid int", "characters"],
    ),
    (
        "missing required value",
        csv_bytes(*GOOD[:2], ",1,1.5,x,2024-01-01"),
        "id",
        ["line 4", "required value is missing"],
    ),
]


def state(catalog, identifier: str):
    if not catalog.table_exists(identifier):
        return None, None
    table = catalog.load_table(identifier)
    snap = table.current_snapshot()
    return (snap.snapshot_id if snap else None), sorted(table.scan().to_arrow().column("id").to_pylist())


@pytest.mark.parametrize("quarantine", [False, True], ids=["strict", "quarantine"])
def test_refused_files_name_the_problem_and_change_nothing(mesh_home, tmp_path, quarantine):
    name = "items_q" if quarantine else "items"
    product = contract(tmp_path, name, quarantine=quarantine)
    catalog = open_catalog()
    write_raw(mesh_home, name, csv_bytes(*GOOD))
    assert ingest(product, catalog).rows_written == len(GOOD)
    before = state(catalog, product.table_identifier)
    assert before[1] == [f"k{i}" for i in range(5)]
    quarantine_table = product.table_identifier + QUARANTINE_SUFFIX
    assert not catalog.table_exists(quarantine_table)
    cases = (
        REFUSED
        if not quarantine
        else [
            c
            for c in REFUSED  # these are whole-file problems: refused in quarantine mode too
            if c[0].startswith(("malformed", "missing column", "extra column", "latin-1", "empty"))
        ]
    )
    for case, raw, column, words in cases:
        write_raw(mesh_home, name, raw)
        with pytest.raises(IngestionError) as caught:
            ingest(product, catalog)
        message = str(caught.value)
        assert f"raw file {mesh_home / 'landing' / 'bad' / f'{name}.csv'}" in message, (case, message)
        assert f"product bad.{name}" in message, (case, message)
        if column:
            assert f"column {column}:" in message, (case, message)
        for word in words:
            assert word in message, (case, word, message)
        assert len(message) < 2000, (case, len(message))  # a 10 MB value is not echoed whole
        assert state(catalog, product.table_identifier) == before, case  # nothing committed
        assert not catalog.table_exists(quarantine_table), case


def test_a_ten_megabyte_string_field_lands_whole(mesh_home, tmp_path):
    product = contract(tmp_path, "items", quarantine=False)
    write_raw(mesh_home, "items", csv_bytes(*GOOD, "k9,1,1.5," + "x" * BIG + ",2024-01-01"))
    result = ingest(product, open_catalog())
    assert result.rows_written == len(GOOD) + 1
    data = result.table.scan().to_arrow()
    labels = dict(zip(data.column("id").to_pylist(), data.column("label").to_pylist()))
    assert len(labels["k9"]) == BIG and sorted(labels) == sorted([f"k{i}" for i in range(5)] + ["k9"])


def test_quarantine_sets_bad_rows_aside_and_every_good_row_lands_once(mesh_home, tmp_path):
    product = contract(tmp_path, "items_q", quarantine=True)
    catalog = open_catalog()
    bad = [
        "b1,seven,1.5,x,2024-01-01",  # wrong type
        ",1,1.5,x,2024-01-01",  # missing required id
        "b3,1,1.5,x,2024-13-45",  # impossible date
        "b4," + "9" * BIG + ",1.5,x,2024-01-01",
    ]  # a 10 MB integer
    lines = [GOOD[0], bad[0], GOOD[1], bad[1], GOOD[2], bad[2], GOOD[3], bad[3], GOOD[4]]
    write_raw(mesh_home, "items_q", csv_bytes(*lines))
    for attempt in range(2):  # a rerun of the same file converges: no row twice anywhere
        result = ingest(product, catalog)
        assert (result.rows_written, result.rows_quarantined) == (len(GOOD), len(bad))
        ids = catalog.load_table(product.table_identifier).scan().to_arrow().column("id").to_pylist()
        assert sorted(ids) == [f"k{i}" for i in range(5)], attempt  # each good row exactly once
        parked = catalog.load_table(product.table_identifier + QUARANTINE_SUFFIX).scan().to_arrow()
        rows = sorted(
            parked.select(["_line", "_reason", "_source_file"]).to_pylist(), key=lambda r: r["_line"]
        )
        assert [r["_line"] for r in rows] == [3, 5, 7, 9], attempt
        assert {r["_source_file"] for r in rows} == {"items_q.csv"}
        assert "column qty: value 'seven' is not a valid int" in rows[0]["_reason"]
        assert "column id: required value is missing" in rows[1]["_reason"]
        assert "column day: value '2024-13-45' is not a valid date" in rows[2]["_reason"]
        assert "column qty" in rows[3]["_reason"] and len(rows[3]["_reason"]) < 300
        # the bad row itself is kept whole, as raw text
        raw_qty = dict(zip(parked.column("_line").to_pylist(), parked.column("qty").to_pylist()))
        assert len(raw_qty[9]) == BIG and raw_qty[3] == "seven"


def test_duplicated_primary_keys_are_refused_by_the_blocking_check_and_main_is_untouched(mesh_home, tmp_path):
    product = contract(tmp_path, "items", quarantine=False)
    defs = dg.Definitions(
        assets=[ingestion_asset(product)],
        asset_checks=[contract_checks(product)],
        resources={"catalog": IcebergCatalog()},
    )
    job = defs.resolve_implicit_global_asset_job_def()
    catalog = open_catalog()

    def materialize():
        with dg.DagsterInstance.get() as instance:
            return job.execute_in_process(instance=instance, raise_on_error=False)

    write_raw(mesh_home, "items", csv_bytes(*GOOD))
    assert materialize().success
    before = state(catalog, product.table_identifier)

    write_raw(mesh_home, "items", csv_bytes(*GOOD, GOOD[1], GOOD[3].replace("label 3", "other")))
    result = materialize()
    assert not result.success
    unique = [c for c in result.get_asset_check_evaluations() if c.check_name == "unique_id"]
    assert len(unique) == 1 and not unique[0].passed
    metadata = unique[0].metadata
    assert metadata["wap/published"].value is False
    branch = metadata["wap/branch"].value
    assert state(catalog, product.table_identifier) == before  # consumers never saw the duplicates
    table = catalog.load_table(product.table_identifier)
    held = table.scan(snapshot_id=table.metadata.refs[branch].snapshot_id).to_arrow()
    assert held.num_rows == len(GOOD) + 2  # the rejected data is kept on its audit branch

    write_raw(mesh_home, "items", csv_bytes(*GOOD))  # the fixed file
    assert materialize().success
    assert state(catalog, product.table_identifier)[1] == [f"k{i}" for i in range(5)]
