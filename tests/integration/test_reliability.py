"""Nothing lost under concurrency and crashes, with real processes on a real catalog."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

from meshtest import NYCFLIGHTS, land
from mesh_assets.catalog import open_catalog

WRITER = textwrap.dedent("""
    import sys
    import pyarrow as pa
    from mesh_assets.catalog import commit_with_retry, open_catalog

    writer, appends = int(sys.argv[1]), int(sys.argv[2])
    catalog = open_catalog()
    for seq in range(appends):
        rows = pa.table({"writer": pa.array([writer] * 100, pa.int32()),
                         "seq": pa.array([seq] * 100, pa.int32())})
        commit_with_retry(catalog, "stress.appends", lambda table: table.append(rows))
""")

INGEST = textwrap.dedent("""
    import mesh_assets.ingestion as ingestion
    from mesh_assets.catalog import open_catalog
    from mesh_assets.contracts import load_contract
    from mesh_assets.settings import DOMAINS_DIR

    ingestion.BATCH_BYTES, ingestion.COMMIT_ROWS = 1 << 18, 20_000  # many files per commit
    product = load_contract(DOMAINS_DIR / "reference" / "products" / "airports.yaml")
    print("writing", flush=True)
    ingestion.ingest(product, open_catalog())
    print("committed", flush=True)
""")


def test_sixteen_concurrent_writers_lose_no_commit(mesh_home, tmp_path):
    catalog = open_catalog()
    catalog.create_namespace("stress")
    catalog.create_table("stress.appends", schema=pa.schema([("writer", pa.int32()), ("seq", pa.int32())]))
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    writers, appends = 16, 3
    procs = [subprocess.Popen([sys.executable, str(script), str(w), str(appends)],
                              stderr=subprocess.PIPE, text=True) for w in range(writers)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    table = catalog.load_table("stress.appends")
    data = table.scan().to_arrow()
    assert len(data) == writers * appends * 100  # exact: no commit lost, none doubled
    pairs = set(zip(data.column("writer").to_pylist(), data.column("seq").to_pylist()))
    assert pairs == {(w, s) for w in range(writers) for s in range(appends)}
    assert len(table.snapshots()) == writers * appends


# The rewrite takes about 1.2 s here: kills land before, during and around the commit.
@pytest.mark.parametrize("kill_after_s", [0.0, 0.3, 0.6, 0.9, 1.2, 1.5])
def test_sigkill_during_a_write_leaves_a_consistent_table(mesh_home, tmp_path, kill_after_s):
    lines = (NYCFLIGHTS / "airports.csv").read_text().splitlines()
    # the real airports twice: a first version to keep, then a large rewrite to interrupt
    land(mesh_home, "reference", "airports.csv")
    script = tmp_path / "ingest.py"
    script.write_text(INGEST)
    assert subprocess.run([sys.executable, str(script)], capture_output=True).returncode == 0
    catalog = open_catalog()
    before = catalog.load_table("reference.airports").current_snapshot().snapshot_id
    big = [lines[0]] + lines[1:] * 150  # ~218k rows: seconds of writing
    land(mesh_home, "reference", "airports.csv", "\n".join(big) + "\n")

    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"  # imports done: the write starts now
    time.sleep(kill_after_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    table = catalog.load_table("reference.airports")
    rows = len(table.scan().to_arrow())
    if table.current_snapshot().snapshot_id == before:
        assert rows == 1458  # the kill came before the commit: previous version intact
    else:
        assert rows == len(big) - 1  # the commit had landed: the whole new version
    # rerunning completes without duplicates
    assert subprocess.run([sys.executable, str(script)], capture_output=True).returncode == 0
    assert len(catalog.load_table("reference.airports").scan().to_arrow()) == len(big) - 1
