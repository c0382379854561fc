"""A corpus of bad raw files: each gives a clear error (file, product, column where there is
one, and what to do) or, with ``quarantine: true``, sets the bad rows aside; a refused file
changes nothing (same snapshot, same rows), and every good row lands exactly once.

Malformed CSV, wrong types, missing and extra columns, latin-1 bytes (in a value and in the
header), an empty file, a 10 MB field (as a valid string and as a bad integer), a missing
required value, duplicated primary keys (caught by the blocking uniqueness check under
write-audit-publish: main is not touched).
"""

import datetime as dt
import math
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from meshtest import land
from reliability_support import ID_COLUMN, event_log_text, write_contract

from mesh_assets.iceberg.catalog import IcebergCatalog, open_catalog
from mesh_assets.ingest.assets import ingest, ingestion_asset
from mesh_assets.ingest.quarantine import QUARANTINE_SUFFIX
from mesh_assets.ingest.readers import IngestionError
from mesh_assets.quality.checks import contract_checks

HEADER = "id,qty,price,label,day"
GOOD = [f"k{i},{i},{i}.5,label {i},2024-01-{i + 1:02d}" for i in range(5)]
BIG = 10 << 20  # a 10 MB field


def contract(folder, name: str, *, quarantine: bool):
    """Items: a public key, quantity, price and day, and a ``label`` classified pii (its values
    never appear in an error)."""
    return write_contract(
        folder,
        name,
        [
            ID_COLUMN,
            {"name": "qty", "physicalType": "int", "classification": "public"},
            {"name": "price", "physicalType": "double", "classification": "public"},
            {"name": "label", "physicalType": "string", "classification": "pii"},
            {"name": "day", "physicalType": "date", "classification": "public"},
        ],
        **({"quarantine": True} if quarantine else {}),
    )


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


# --- the literal grammar: every class of literal per type, the same on both paths -------------

LITERAL_COLUMNS = [
    ("i", "int"),
    ("l", "long"),
    ("d", "double"),
    ("dn", "double"),  # allowNonFinite: true
    ("dec", "decimal(5,2)"),
    ("b", "boolean"),
    ("dt", "date"),
    ("ts", "timestamp"),
    ("tz", "timestamptz"),
    ("t", "time"),
]
UTC = dt.UTC
# (column, literal, the value stored); each literal is one row of its own
ACCEPTED = [
    ("i", "42", 42),
    ("i", "-7", -7),
    ("i", "+3", 3),
    ("i", "007", 7),
    ("i", "-0", 0),
    ("i", "2147483647", 2147483647),
    ("l", "9223372036854775807", 9223372036854775807),
    ("d", "1.5", 1.5),
    ("d", "-2e-3", -0.002),
    ("d", ".5", 0.5),
    ("d", "5.", 5.0),
    ("d", "+1e5", 100000.0),
    ("dn", "inf", math.inf),
    ("dn", "-inf", -math.inf),
    ("dn", "1e400", math.inf),
    ("dec", "12.50", Decimal("12.50")),
    ("dec", "-3", Decimal("-3.00")),
    ("dec", "1e2", Decimal("100.00")),
    ("dec", ".5", Decimal("0.50")),
    ("b", "true", True),
    ("b", "FALSE", False),
    ("b", "1", True),
    ("b", "0", False),
    ("dt", "2024-02-29", dt.date(2024, 2, 29)),
    ("ts", "2024-01-05T10:00:00", dt.datetime(2024, 1, 5, 10)),
    ("ts", "2024-01-05 10:00", dt.datetime(2024, 1, 5, 10)),
    ("ts", "2024-01-05", dt.datetime(2024, 1, 5)),
    ("ts", "2024-01-05T10:00:00.123456", dt.datetime(2024, 1, 5, 10, 0, 0, 123456)),
    ("tz", "2024-01-05T10:00:00Z", dt.datetime(2024, 1, 5, 10, tzinfo=UTC)),
    ("tz", "2024-01-05T10:00:00+01:00", dt.datetime(2024, 1, 5, 9, tzinfo=UTC)),
    ("t", "10:00:00", dt.time(10)),
    ("t", "23:59:59.5", dt.time(23, 59, 59, 500000)),
]
INT_RULE = "optionally signed decimal digits within the {} range (no hex, underscores, exponent or fraction)"
WHY = {
    "i": "is not a valid int (" + INT_RULE.format("int") + ")",
    "l": "is not a valid long (" + INT_RULE.format("long") + ")",
    "d": "is not a valid double (a finite decimal number; nan and infinities need allowNonFinite: true on the column)",
    "dec": "is not a valid decimal(5, 2) (decimal notation that fits exactly, never rounded)",
    "b": "is not a valid boolean (true, false, 1 or 0)",
    "dt": "is not a valid date (YYYY-MM-DD, a real calendar date)",
    "ts": "is not a valid timestamp (ISO 8601 without a time zone, e.g. 2024-01-31T13:45:00)",
    "tz": "has no time zone; write it with one (Z or +hh:mm) or set source timezone in the contract",
    "t": "is not a valid time (hh:mm:ss[.ffffff])",
}
REFUSED_LITERALS = [
    ("i", "0x10"),  # Arrow's own cast reads it as 16
    ("i", "0X1f"),
    ("i", "1_000"),
    ("i", "1e3"),
    ("i", "1.0"),
    ("i", " 5"),
    ("i", "5 "),
    ("i", "+-5"),
    ("i", "2147483648"),
    ("i", "١٢"),  # Arabic-Indic digits
    ("l", "9223372036854775808"),
    ("d", "nan"),
    ("d", "inf"),
    ("d", "-Infinity"),
    ("d", "1e400"),  # overflows to infinity
    ("d", "0x1p3"),
    ("d", " 1.5"),
    ("dec", "1.234"),  # would be rounded
    ("dec", "1234.5"),  # more integer digits than decimal(5,2) holds
    ("dec", "nan"),
    ("b", "yes"),
    ("b", "t"),
    ("dt", "2023-02-29"),
    ("dt", "2024-1-5"),
    ("dt", "20240105"),
    ("ts", "2024-01-05T10:00:00Z"),  # a zone in a column without one
    ("ts", "2024-01-05T10:00:00.1234567"),  # nanoseconds would be cut
    ("ts", "05/01/2024"),
    ("tz", "2024-01-05T10:00:00"),  # no zone, and the contract names none: never guessed
    ("tz", "2024-01-05 10:00"),
    ("t", "10:00"),
    ("t", "25:00:00"),
]


def literals_contract(folder, name: str, *, quarantine: bool = False, timezone: str | None = None):
    columns = [{"name": "id", "physicalType": "string", "primaryKey": True, "classification": "public"}]
    for column, kind in LITERAL_COLUMNS:
        spec = {"name": column, "physicalType": kind, "classification": "public"}
        if column == "dn":
            spec["customProperties"] = [{"property": "allowNonFinite", "value": True}]
        columns.append(spec)
    return write_contract(
        folder,
        name,
        columns,
        source={"timezone": timezone} if timezone else None,
        **({"quarantine": True} if quarantine else {}),
    )


def literal_rows(cases) -> bytes:
    """One row per (column, literal): the literal in its column (quoted), the others empty."""
    names = [c for c, _ in LITERAL_COLUMNS]
    lines = [",".join(["id", *names])]
    for n, (column, literal, *_) in enumerate(cases):
        lines.append(",".join([f"r{n}", *(f'"{literal}"' if c == column else "" for c in names)]))
    return ("\n".join(lines) + "\n").encode()


def stored(table, cases) -> list:
    rows = {r["id"]: r for r in table.to_pylist()}
    return [rows[f"r{n}"][column] for n, (column, *_) in enumerate(cases)]


def test_every_literal_class_per_type_strict(mesh_home, tmp_path):
    product = literals_contract(tmp_path, "lits")
    catalog = open_catalog()
    land(mesh_home, "bad", "lits.csv", literal_rows(ACCEPTED))
    table = ingest(product, catalog).table.scan().to_arrow()
    assert stored(table, ACCEPTED) == [value for *_, value in ACCEPTED]
    before = state(catalog, product.table_identifier)
    path = mesh_home / "landing" / "bad" / "lits.csv"
    for column, literal in REFUSED_LITERALS:
        land(mesh_home, "bad", "lits.csv", literal_rows([(column, literal)]))
        with pytest.raises(IngestionError) as caught:
            ingest(product, catalog)
        assert str(caught.value) == (
            f"raw file {path}, product bad.lits, column {column}: line 2: value {literal!r} "
            f"{WHY[column]}; fix the file, or set 'quarantine: true' in the contract to set such rows aside"
        )
        assert state(catalog, product.table_identifier) == before  # nothing committed


def test_every_literal_class_per_type_quarantine(mesh_home, tmp_path):
    """The same literals through the quarantine: exactly the same ones accepted (with the same
    values), exactly the same ones refused (with the same reasons), none converted."""
    product = literals_contract(tmp_path, "lits_q", quarantine=True)
    catalog = open_catalog()
    cases = [*ACCEPTED, *((c, v, None) for c, v in REFUSED_LITERALS)]
    land(mesh_home, "bad", "lits_q.csv", literal_rows(cases))
    result = ingest(product, catalog)
    assert (result.rows_written, result.rows_quarantined) == (len(ACCEPTED), len(REFUSED_LITERALS))
    assert stored(result.table.scan().to_arrow(), ACCEPTED) == [value for *_, value in ACCEPTED]
    parked = catalog.load_table(product.table_identifier + QUARANTINE_SUFFIX).scan().to_arrow()
    parked = sorted(parked.to_pylist(), key=lambda r: r["_line"])
    assert [(r["_line"], r["_reason"]) for r in parked] == [
        (len(ACCEPTED) + 2 + n, f"column {column}: value {literal!r} {WHY[column]}")
        for n, (column, literal) in enumerate(REFUSED_LITERALS)
    ]
    assert [r[column] for r, (column, _) in zip(parked, REFUSED_LITERALS)] == [v for _, v in REFUSED_LITERALS]


def test_local_times_follow_the_contract_timezone_never_a_guess(mesh_home, tmp_path):
    product = literals_contract(tmp_path, "lits_ny", quarantine=True, timezone="America/New_York")
    cases = [
        ("tz", "2024-01-05T10:00:00", dt.datetime(2024, 1, 5, 15, tzinfo=UTC)),  # EST = UTC-5
        ("tz", "2024-07-05 10:00", dt.datetime(2024, 7, 5, 14, tzinfo=UTC)),  # EDT = UTC-4
        ("tz", "2024-01-05T10:00:00Z", dt.datetime(2024, 1, 5, 10, tzinfo=UTC)),  # its own zone wins
        ("tz", "2024-03-10T02:30:00", None),  # skipped by the change to summer time
        ("tz", "2024-11-03T01:30:00", None),  # happens twice
    ]
    land(mesh_home, "bad", "lits_ny.csv", literal_rows(cases))
    result = ingest(product, open_catalog())
    assert stored(result.table.scan().to_arrow(), cases[:3]) == [v for *_, v in cases[:3]]
    parked = open_catalog().load_table(product.table_identifier + QUARANTINE_SUFFIX).scan().to_arrow()
    assert sorted(parked.column("_reason").to_pylist()) == [
        f"column tz: value {v!r} is no valid local time in America/New_York (not ISO 8601, or "
        "skipped or repeated there)"
        for _, v, _ in cases[3:]
    ]


def test_classified_values_never_reach_the_error_or_the_event_log(mesh_home, tmp_path):
    """A refused value of a pii column is named by its classification and length only, in the
    exception, the Dagster event log and the quarantine reason."""
    secret = "4111-1111-1111-1111"
    product = write_contract(
        tmp_path,
        "cards",
        [
            ID_COLUMN,
            {"name": "holder", "physicalType": "string", "classification": "pii"},
            {"name": "card", "physicalType": "long", "classification": "pii"},
        ],
    )
    land(
        mesh_home,
        "bad",
        "cards.csv",
        f"id,holder,card\nk1,Ada Lovelace,4111111111111111\nk2,Alan Turing,{secret}\n",
    )
    with pytest.raises(IngestionError) as caught:
        ingest(product, open_catalog())
    assert str(caught.value).endswith(
        "product bad.cards, column card: line 3: value <pii: 19 chars> is not a valid long ("
        + INT_RULE.format("long")
        + "); fix the file, or set 'quarantine: true' in the contract to set such rows aside"
    )
    defs = dg.Definitions(assets=[ingestion_asset(product)], resources={"catalog": IcebergCatalog()})
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert not result.success
        logged = event_log_text(instance, result.run_id)
    assert "<pii: 19 chars>" in logged
    for leaked in (secret, "Alan Turing", "Ada Lovelace", "4111111111111111"):
        assert leaked not in logged


def test_classified_values_never_reach_check_metadata_or_the_report(mesh_home, tmp_path):
    """Failed checks on pii and confidential columns show the unexpected values and the observed
    aggregates by classification and length only, in the Dagster event log and in the HTML
    report, whichever engine (SQL pushdown or Great Expectations) judged them; a public column's
    values stay readable."""

    def rule(expectation: str, **kwargs) -> dict:
        implementation = {"type": expectation, "kwargs": kwargs}
        return {"type": "custom", "engine": "great-expectations", "implementation": implementation}

    product = write_contract(
        tmp_path,
        "people",
        [
            {
                "name": "email",
                "physicalType": "string",
                "primaryKey": True,
                "classification": "pii",
                "quality": [
                    rule("expect_column_values_to_not_match_regex", regex="secret"),
                    rule("expect_column_distinct_values_to_be_in_set", value_set=["x"]),
                    rule("expect_column_most_common_value_to_be_in_set", value_set=["x"]),
                ],
            },
            {
                "name": "salary",
                "physicalType": "long",
                "classification": "confidential",
                "quality": [
                    rule("expect_column_max_to_be_between", max_value=100),
                    rule(
                        "expect_column_quantile_values_to_be_between",
                        quantile_ranges={"quantiles": [0.5], "value_ranges": [[0, 10]]},
                    ),
                ],
            },
            {
                "name": "n",
                "physicalType": "int",
                "classification": "public",
                "quality": [rule("expect_column_values_to_be_between", max_value=2)],
            },
        ],
    )
    land(
        mesh_home,
        "bad",
        "people.csv",
        "email,salary,n\nalice.secret@example.com,987654,1\nalice.secret@example.com,50,2\nbob@example.com,60,3\n",
    )
    defs = dg.Definitions(
        assets=[ingestion_asset(product)],
        asset_checks=[contract_checks(product)],
        resources={"catalog": IcebergCatalog()},
    )
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, raise_on_error=False
        )
        logged = event_log_text(instance, result.run_id)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {name: e.passed for name, e in evaluations.items()} == {
        "unique_email": False,
        "not_match_regex_email": False,
        "distinct_values_to_be_in_set_email": False,
        "most_common_value_to_be_in_set_email": False,
        "max_between_salary": False,
        "quantile_values_to_be_between_salary": False,
        "between_n": False,
        "not_shrunk": True,
    }
    shown = {name: {k: v.value for k, v in e.metadata.items()} for name, e in evaluations.items()}
    assert shown["unique_email"]["unexpected_sample"] == ["<pii: 24 chars>"]
    assert shown["not_match_regex_email"]["unexpected_sample"] == ["<pii: 24 chars>"]
    assert shown["distinct_values_to_be_in_set_email"]["unexpected_sample"] == [
        "<pii: 24 chars>",
        "<pii: 15 chars>",
    ]
    assert shown["most_common_value_to_be_in_set_email"]["observed_value"] == ["<pii: 24 chars>"]
    quantiles = shown["quantile_values_to_be_between_salary"]
    assert (quantiles["observed_value"], quantiles["gx/details"]) == (
        "<confidential: 36 chars>",
        "<confidential: 28 chars>",
    )
    assert shown["max_between_salary"]["observed_value"] == "<confidential: 6 chars>"
    assert shown["between_n"]["unexpected_sample"] == ["3"]
    report = Path(shown["between_n"]["quality/report"]).read_text()
    for leaked in ("alice.secret", "bob@example.com", "987654", "'values': [60]"):
        assert leaked not in logged
        assert leaked not in report
    assert "&lt;pii: 24 chars&gt;" in report and "&lt;confidential: 6 chars&gt;" in report
