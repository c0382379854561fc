"""Hostile landing files: what producers, copies and people really put in a landing zone.

Real files written by real processes: a slow writer still appending while the sensor ticks and a
run starts, files cut short (at a line end and in the middle of a row), a replacement with the
same size and modification time, symbolic links to /etc and to a file outside the landing zone, a
file swapped while a run reads it, duplicate and blank headers, compressed files, a directory
and a pipe where the file should be, BOM/CRLF/blank lines/quoted line breaks, a 20 MB field.
Each case checks what consumers read (main's snapshot and rows), the tags where they matter, and
the exact error, which never carries a byte of a file outside the landing zone.
"""

import gzip
import hashlib
import os
import subprocess
import sys
import textwrap
import time
import zipfile

import dagster as dg
import pytest
from meshtest import land
from reliability_support import ID_COLUMN, event_log_text, table_state, write_contract

from mesh_assets.contract.errors import ContractError
from mesh_assets.iceberg.catalog import IcebergCatalog, open_catalog
from mesh_assets.ingest.assets import ingest, ingestion_asset
from mesh_assets.ingest.landing import IngestionError, landing_file
from mesh_assets.ingest.sensors import landing_sensor
from mesh_assets.quality.checks import contract_checks

SETTLE = 2  # seconds: the test contracts' settleSeconds
SECRET = "TOPSECRET-d41d8cd9"  # in files outside the landing zone: must never be echoed
CHANGED = (
    "file changed while it was being read; wait until the writer finishes "
    "(use <file>.done or write-then-rename)"
)
STILL_WRITTEN = (
    f"the file is still being written (changed less than settleSeconds = {SETTLE} s ago); wait "
    "until the writer finishes (use <file>.done or write-then-rename)"
)
WRITER = textwrap.dedent("""
    import sys, time
    path, rows, every, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    with open(path, "w") as f:  # rewrites the file in place, as a slow copy does
        f.write("id,qty,note\\n")
        for i in range(rows):
            f.write(f"k{i},{i},note {i}\\n")
            if i % every == every - 1:
                f.flush()
                time.sleep(pause)
""")


def orders(folder, name: str = "orders", **extra):
    return write_contract(
        folder,
        name,
        [
            ID_COLUMN,
            {"name": "qty", "physicalType": "int", "classification": "public"},
            {"name": "note", "physicalType": "string", "classification": "pii"},
        ],
        source={"settleSeconds": SETTLE, **extra.pop("source", {})},
        **extra,
    )


def rows(n: int, start: int = 0) -> str:
    return "id,qty,note\n" + "".join(f"k{i},{i},note {i}\n" for i in range(start, start + n))


class Mesh:
    """One product's ingestion and checks in the test's Dagster instance, and its sensor."""

    def __init__(self, product):
        self.product = product
        self.defs = dg.Definitions(
            assets=[ingestion_asset(product)],
            asset_checks=[contract_checks(product)],
            resources={"catalog": IcebergCatalog()},
        )
        self.sensor = landing_sensor(product.domain, [product])
        self.cursor = None

    def materialize(self):
        with dg.DagsterInstance.get() as instance:
            result = self.defs.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance, raise_on_error=False
            )
            return result, event_log_text(instance, result.run_id)

    def tick(self) -> list:
        with dg.DagsterInstance.ephemeral() as instance:
            context = dg.build_sensor_context(cursor=self.cursor, instance=instance, definitions=self.defs)
            requests = list(self.sensor.evaluate_tick(context).run_requests)
        self.cursor = context.cursor
        return requests

    def state(self):
        return table_state(open_catalog(), self.product.table_identifier)


def failure(result) -> str:
    """The error that failed the run's step (what Dagster shows and stores)."""
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return event.event_specific_data.error.cause.message


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def summary(product) -> dict:
    return (
        open_catalog().load_table(product.table_identifier).current_snapshot().summary.additional_properties
    )


def test_a_file_still_being_written_is_never_ingested(mesh_home, tmp_path):
    """A slow writer rewrites the full-refresh file in place (its stale .done marker left
    behind): the sensor requests nothing and a run started meanwhile refuses the file, main
    unchanged; once the file has settled, one request and the whole file published."""
    mesh = Mesh(orders(tmp_path))
    path = land(mesh_home, "bad", "orders.csv", rows(100))
    assert [r.asset_selection for r in mesh.tick()] == [[dg.AssetKey(["bad", "orders"])]]
    assert mesh.materialize()[0].success
    before = mesh.state()
    assert len(before[1]) == 100

    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "1000", "50", "0.4"])
    try:
        time.sleep(0.3)
        assert mesh.tick() == []  # still being written: nothing requested
        result, logged = mesh.materialize()  # `mesh materialize` now: waits, sees it change, refuses
        assert writer.poll() is None, "the writer ended before the run looked: the test proves nothing"
    finally:
        writer.wait(timeout=60)
    assert not result.success
    assert (
        failure(result)
        == f"mesh_assets.ingest.landing.IngestionError: raw file {path}, product bad.orders: {STILL_WRITTEN}\n"
    )
    assert STILL_WRITTEN in logged
    assert mesh.state() == before  # consumers still read the old version

    assert landing_file(mesh.product).settle_left > 0
    assert mesh.tick() == []  # just finished: not settled yet
    time.sleep(landing_file(mesh.product).settle_left + 0.1)
    [request] = mesh.tick()
    assert request.tags["mesh/source_sha256"] == sha256(path)
    assert mesh.materialize()[0].success
    snapshot, published = mesh.state()
    assert len(published) == 1000 and snapshot != before[0]
    assert summary(mesh.product)["mesh.source.sha256"] == sha256(path)
    assert mesh.tick() == []  # the same bytes: nothing new


def test_files_cut_short_never_replace_the_table(mesh_home, tmp_path):
    mesh = Mesh(orders(tmp_path))
    full = rows(100)
    land(mesh_home, "bad", "orders.csv", full)
    assert mesh.materialize()[0].success
    before = mesh.state()
    table = open_catalog().load_table("bad.orders")
    checked = table.metadata.refs["last-checked"].snapshot_id
    assert checked == before[0]

    # cut at a line end: a valid CSV of 30 rows; the blocking shrink check stops it
    path = land(mesh_home, "bad", "orders.csv", full[: full.index("k30,")])
    result, _ = mesh.materialize()
    assert not result.success
    [shrink] = [e for e in result.get_asset_check_evaluations() if e.check_name == "not_shrunk"]
    assert not shrink.passed and shrink.severity == dg.AssetCheckSeverity.ERROR
    assert {
        k: shrink.metadata[k].value for k in ("observed_value", "shrink/main_rows", "shrink/min_rows")
    } == {
        "observed_value": 30,
        "shrink/main_rows": 100,
        "shrink/min_rows": 50,
    }
    assert shrink.metadata["wap/published"].value is False
    assert mesh.state() == before
    assert open_catalog().load_table("bad.orders").metadata.refs["last-checked"].snapshot_id == checked

    # cut in the middle of a row: the last line has no line break
    land(mesh_home, "bad", "orders.csv", full[: full.index("k60,") + 6])
    result, _ = mesh.materialize()
    assert failure(result) == (
        f"mesh_assets.ingest.landing.IngestionError: raw file {path}, product bad.orders: line 62: the file does not end "
        "with a line break, so its last line may be cut short (a copy that stopped, a writer "
        "still writing); land the whole file, ending with a line break\n"
    )
    assert mesh.state() == before

    # the header alone: an empty version is a 100% drop
    land(mesh_home, "bad", "orders.csv", "id,qty,note\n")
    result, _ = mesh.materialize()
    [shrink] = [e for e in result.get_asset_check_evaluations() if e.check_name == "not_shrunk"]
    assert not shrink.passed and shrink.metadata["observed_value"].value == 0
    assert mesh.state() == before


def test_a_shrink_the_contract_allows_is_published(mesh_home, tmp_path):
    mesh = Mesh(orders(tmp_path, maxShrinkPercent=80))
    land(mesh_home, "bad", "orders.csv", rows(100))
    assert mesh.materialize()[0].success
    land(mesh_home, "bad", "orders.csv", rows(25))
    assert mesh.materialize()[0].success
    assert len(mesh.state()[1]) == 25


def test_a_replacement_with_the_same_size_and_mtime_is_seen(mesh_home, tmp_path):
    mesh = Mesh(orders(tmp_path))
    path = land(mesh_home, "bad", "orders.csv", rows(10))
    [first] = mesh.tick()
    stat = path.stat()

    def replace_keeping_size_and_mtime(text: str, *, rename: bool) -> None:
        assert len(text) == stat.st_size
        if rename:  # a new inode put in place
            part = path.with_name("orders.csv.part")
            part.write_text(text)
            os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            os.replace(part, path)
        else:  # the same inode rewritten
            path.write_text(text)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
        path.with_name("orders.csv.done").touch()  # the producer says: complete

    os.utime(path)
    path.with_name("orders.csv.done").touch()
    assert mesh.tick() == []  # touched, same bytes: nothing to ingest
    replace_keeping_size_and_mtime(rows(10).replace("note 3", "note 9"), rename=False)
    [second] = mesh.tick()
    assert second.tags["mesh/source_sha256"] == sha256(path) != first.tags["mesh/source_sha256"]
    replace_keeping_size_and_mtime(rows(10).replace("note 4", "note 8"), rename=True)
    [third] = mesh.tick()
    assert third.tags["mesh/source_sha256"] == sha256(path)
    assert len({first.run_key, second.run_key, third.run_key}) == 3


def test_links_and_paths_out_of_the_landing_zone_are_refused_unread(mesh_home, tmp_path):
    mesh = Mesh(orders(tmp_path))
    outside = tmp_path / "outside.csv"
    outside.write_text(f"id,qty,note\n{SECRET},1,x\n")  # valid: it would be ingested if followed
    folder = mesh_home / "landing" / "bad"
    folder.mkdir(parents=True)
    path = folder / "orders.csv"
    for target in (outside, "/etc/passwd"):
        path.unlink(missing_ok=True)
        path.symlink_to(target)
        with pytest.raises(IngestionError) as caught:
            ingest(mesh.product, open_catalog())
        assert str(caught.value) == (
            f"raw file {path}, product bad.orders: {path} is a symbolic link; the landing zone "
            "takes regular files only (copy the file into it, do not link it)"
        )
        assert mesh.tick() == []
        result, logged = mesh.materialize()
        assert not result.success and "is a symbolic link" in logged
        for leaked in (SECRET, "root:", str(target)):
            assert leaked not in logged and leaked not in str(caught.value)
    assert not open_catalog().table_exists("bad.orders")

    # the domain's folder itself a link to a folder elsewhere
    path.unlink()
    folder.rmdir()
    folder.symlink_to(tmp_path)
    (tmp_path / "orders.csv").write_text(f"id,qty,note\n{SECRET},1,x\n")
    with pytest.raises(IngestionError, match="bad is a symbolic link") as caught:
        ingest(mesh.product, open_catalog())
    assert SECRET not in str(caught.value)

    # a contract naming a file out of the landing folder does not load, and `mesh lint` says where
    for bad in ("../../outside.csv", "/etc/passwd", ".orders.csv", "orders.csv.part"):
        with pytest.raises(ContractError, match="source file") as caught:
            orders(tmp_path / "escape", source={"file": bad})
        assert "name the file relative to the domain's landing folder" in str(caught.value)


def test_mesh_lint_names_the_line_of_an_escaping_source_file(tmp_path):
    from mesh_assets.governance import lint_project
    from mesh_assets.settings import PROJECT_DIR

    (tmp_path / "domains").mkdir()
    (tmp_path / "workspace.yaml").write_text("load_from: []\n")
    (tmp_path / "domains" / "bad").mkdir()
    (tmp_path / "domains" / "bad" / "domain.yaml").write_text("name: bad\nowner: x\ndescription: y\n")
    with pytest.raises(ContractError):
        orders(tmp_path, source={"file": "../../etc/passwd"})
    contract = tmp_path / "domains" / "bad" / "products" / "orders.yaml"
    line = next(n for n, text in enumerate(contract.read_text().splitlines(), 1) if "file:" in text)
    found = [v for v in lint_project(tmp_path) if v.rule == "MESH001"]
    assert [(v.file, v.line) for v in found] == [(contract, line)]
    assert "source file '../../etc/passwd' leaves or repeats folders" in found[0].message
    assert PROJECT_DIR.exists()


def test_file_swapped_during_a_run_is_refused_and_provenance_is_the_bytes_read(
    mesh_home, tmp_path, monkeypatch
):
    """A second process replaces the file after the run pinned it and before it parsed it: the
    run refuses (main unchanged). Otherwise the snapshot records the checksum of exactly the
    bytes its rows came from."""
    mesh = Mesh(orders(tmp_path))
    path = land(mesh_home, "bad", "orders.csv", rows(60))
    assert mesh.materialize()[0].success
    before = mesh.state()
    assert summary(mesh.product)["mesh.source.sha256"] == sha256(path)

    import mesh_assets.ingest.assets as assets

    real = assets.check_columns

    def swap_then_check(landed):
        swap = f"import os; open({str(path) + '.tmp'!r}, 'w').write({rows(80)!r}); os.replace({str(path) + '.tmp'!r}, {str(path)!r})"
        subprocess.run([sys.executable, "-c", swap], check=True)
        return real(landed)

    land(mesh_home, "bad", "orders.csv", rows(70))
    monkeypatch.setattr(assets, "check_columns", swap_then_check)
    result, logged = mesh.materialize()
    assert (
        failure(result)
        == f"mesh_assets.ingest.landing.IngestionError: raw file {path}, product bad.orders: {CHANGED}\n"
    )
    assert mesh.state() == before
    monkeypatch.setattr(assets, "check_columns", real)
    path.with_name("orders.csv.done").touch()
    assert mesh.materialize()[0].success
    assert len(mesh.state()[1]) == 80  # the swapped-in file, read whole
    assert summary(mesh.product)["mesh.source.sha256"] == sha256(path)


def test_ambiguous_headers_are_refused(mesh_home, tmp_path):
    product = orders(tmp_path)
    path = mesh_home / "landing" / "bad" / "orders.csv"
    cases = {
        "id,qty,note,qty\nk1,1,x,2\n": "line 1: the header names column 'qty' twice (columns 2 and 4); which one "
        "is meant is ambiguous, so nothing is read. Fix the header",
        "id,qty,,note\nk1,1,,x\n": "line 1: header column 3 has no name; name every column as contract "
        f"{product.path} does",
    }
    for text, problem in cases.items():
        land(mesh_home, "bad", "orders.csv", text)
        with pytest.raises(IngestionError) as caught:
            ingest(product, open_catalog())
        column = ", column qty" if "twice" in problem else ""
        assert str(caught.value) == f"raw file {path}, product bad.orders{column}: {problem}"
    assert not open_catalog().table_exists("bad.orders")


def test_compressed_files(mesh_home, tmp_path):
    data = rows(40).encode()
    gz = orders(tmp_path, "orders_gz", source={"file": "orders_gz.csv.gz"})
    packed = gzip.compress(data)
    land(mesh_home, "bad", "orders_gz.csv.gz", packed)
    result = ingest(gz, open_catalog())
    assert result.rows_written == 40
    assert sorted(result.table.scan().to_arrow().column("id").to_pylist()) == sorted(
        f"k{i}" for i in range(40)
    )
    assert summary(gz)["mesh.source.sha256"] == hashlib.sha256(packed).hexdigest()  # the bytes landed

    plain = orders(tmp_path)  # gzip bytes under a .csv name are read as gzip, not as "not UTF-8"
    path = land(mesh_home, "bad", "orders.csv", packed)
    assert ingest(plain, open_catalog()).rows_written == 40
    assert summary(plain)["mesh.source.sha256"] == hashlib.sha256(packed).hexdigest()

    land(mesh_home, "bad", "orders.csv", packed[: len(packed) // 2])  # cut short
    with pytest.raises(IngestionError) as caught:
        ingest(plain, open_catalog())
    assert str(caught.value).startswith(f"raw file {path}, product bad.orders: cannot be decompressed (")
    assert str(caught.value).endswith("); land the whole file again")

    archive = tmp_path / "orders.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("orders.csv", data)
    land(mesh_home, "bad", "orders.csv", archive.read_bytes())
    with pytest.raises(IngestionError) as caught:
        ingest(plain, open_catalog())
    assert str(caught.value) == (
        f"raw file {path}, product bad.orders: the file is a zip archive, which ingestion does not "
        "unpack; land the CSV itself (gzip, bzip2 or zstd compression is read as is)"
    )
    assert len(open_catalog().load_table("bad.orders").scan().to_arrow()) == 40


def test_what_else_lands_where_the_file_should_be(mesh_home, tmp_path):
    product = orders(tmp_path)
    path = mesh_home / "landing" / "bad" / "orders.csv"
    path.mkdir(parents=True)  # a directory named like the file
    with pytest.raises(IngestionError) as caught:
        ingest(product, open_catalog())
    assert str(caught.value) == (
        f"raw file {path}, product bad.orders: is a directory, not a file; land the file itself under this name"
    )
    path.rmdir()
    os.mkfifo(path)  # a pipe: opening it must not hang
    with pytest.raises(IngestionError) as caught:
        ingest(product, open_catalog())
    assert str(caught.value) == (
        f"raw file {path}, product bad.orders: is not a regular file (a pipe, socket or device); land a plain file"
    )


def test_text_conventions_a_producer_may_use(mesh_home, tmp_path):
    """A BOM, CRLF line ends, blank lines and quoted line breaks read as the data they are; a
    bad value after a multi-line value is reported on its real line."""
    product = orders(tmp_path)
    body = '\ufeffid,qty,note\r\nk1,1,"two\r\nlines"\r\n\r\nk2,2,"say ""hi"""\r\nk3,3,plain\r\n\r\n'
    land(mesh_home, "bad", "orders.csv", body.encode())
    result = ingest(product, open_catalog())
    data = sorted(result.table.scan().to_arrow().to_pylist(), key=lambda r: r["id"])
    assert data == [
        {"id": "k1", "qty": 1, "note": "two\r\nlines"},
        {"id": "k2", "qty": 2, "note": 'say "hi"'},
        {"id": "k3", "qty": 3, "note": "plain"},
    ]
    path = land(mesh_home, "bad", "orders.csv", body.replace("k3,3,", "k3,three,").encode())
    with pytest.raises(IngestionError) as caught:
        ingest(product, open_catalog())
    assert str(caught.value).startswith(
        f"raw file {path}, product bad.orders, column qty: line 6: value 'three' is not a valid int"
    )


def test_a_twenty_megabyte_field_is_read_whole(mesh_home, tmp_path):
    product = orders(tmp_path)
    big = "x" * (20 << 20)  # longer than the reader's 16 MB block
    land(mesh_home, "bad", "orders.csv", f"id,qty,note\nk1,1,small\nk2,2,{big}\nk3,3,after\n")
    data = ingest(product, open_catalog()).table.scan().to_arrow()
    notes = dict(zip(data.column("id").to_pylist(), data.column("note").to_pylist()))
    assert notes["k1"] == "small" and notes["k3"] == "after" and notes["k2"] == big


def test_a_direct_run_waits_for_the_settle_window(mesh_home, tmp_path):
    """Without a marker, a file written just now is read once it has been left alone for
    settleSeconds (the run waits, it does not take it half-written)."""
    product = orders(tmp_path)
    path = mesh_home / "landing" / "bad" / "orders.csv"
    path.parent.mkdir(parents=True)
    path.write_text(rows(5))
    start = time.monotonic()
    assert ingest(product, open_catalog()).rows_written == 5
    assert time.monotonic() - start >= SETTLE - 0.5
