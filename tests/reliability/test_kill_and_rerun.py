"""Nothing lost under concurrency and crashes, with real processes on a real catalog.

* 16 concurrent writer processes: every commit lands exactly once;
* SIGKILL during an ingestion rewrite, at several points: the previous snapshot or the new
  complete one, never a half-written table, and a rerun converges;
* SIGKILL of a real `mesh materialize reference` (a Dagster run: ingestion to the audit branch,
  checks, publish, dbt mart over ephemeral staging/intermediate stored to Iceberg) while it ingests and
  while dbt builds, and of the dbt subprocess alone: every product table is at its previous
  version or at the new complete one, and a rerun gives exactly what a clean run gives.

Slower variants (more kill points, random offsets) are in test_soak.py (``make soak``).
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import pyarrow as pa
import pytest
from meshtest import NYCFLIGHTS, land
from reliability_support import (
    MESH,
    REFERENCE_TABLES,
    airports_version,
    contents,
    descendants,
    kill_group,
    mesh_materialize,
    start,
    step_event,
    table_state,
    wait_for,
)

from mesh_assets.iceberg.catalog import open_catalog

WRITER = textwrap.dedent("""
    import sys
    import pyarrow as pa
    from mesh_assets.iceberg.catalog import open_catalog
    from mesh_assets.iceberg.commit import commit_with_retry

    writer, appends = int(sys.argv[1]), int(sys.argv[2])
    catalog = open_catalog()
    for seq in range(appends):
        rows = pa.table({"writer": pa.array([writer] * 100, pa.int32()),
                         "seq": pa.array([seq] * 100, pa.int32())})
        commit_with_retry(catalog, "stress.appends", lambda table: table.append(rows))
""")

INGEST = textwrap.dedent("""
    import mesh_assets.iceberg.commit as commit
    import mesh_assets.ingest.readers as readers
    from mesh_assets.iceberg.catalog import open_catalog
    from mesh_assets.ingest.assets import ingest
    from mesh_assets.workspace import load_contract
    from mesh_assets.settings import DOMAINS_DIR

    readers.BATCH_BYTES, commit.COMMIT_ROWS = 1 << 18, 20_000  # many files per commit
    product = load_contract(DOMAINS_DIR / "reference" / "products" / "airports.yaml")
    print("writing", flush=True)
    ingest(product, open_catalog())
    print("committed", flush=True)
""")


def concurrent_writers(tmp_path, writers: int, appends: int) -> None:
    catalog = open_catalog()
    catalog.create_namespace("stress")
    catalog.create_table("stress.appends", schema=pa.schema([("writer", pa.int32()), ("seq", pa.int32())]))
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(w), str(appends)], stderr=subprocess.PIPE, text=True
        )
        for w in range(writers)
    ]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-2000:]
    table = catalog.load_table("stress.appends")
    data = table.scan().to_arrow()
    assert len(data) == writers * appends * 100  # exact: no commit lost, none doubled
    pairs = set(zip(data.column("writer").to_pylist(), data.column("seq").to_pylist()))
    assert pairs == {(w, s) for w in range(writers) for s in range(appends)}
    assert len(table.snapshots()) == writers * appends


def test_sixteen_concurrent_writers_lose_no_commit(mesh_home, tmp_path):
    concurrent_writers(tmp_path, writers=16, appends=3)


def kill_during_rewrite(mesh_home, tmp_path, kill_after_s: float) -> None:
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


# The rewrite takes about 1.2 s here: kills land before, during and around the commit.
@pytest.mark.parametrize("kill_after_s", [0.0, 0.3, 0.6, 0.9, 1.2, 1.5])
def test_sigkill_during_a_write_leaves_a_consistent_table(mesh_home, tmp_path, kill_after_s):
    kill_during_rewrite(mesh_home, tmp_path, kill_after_s)


# --- a real Dagster run, killed -------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_states(tmp_path_factory):
    """What clean runs of `mesh materialize reference` produce: version 0 (the real files) and
    version 1 (every airport altitude + 1 ft), each in its own MESH_HOME."""
    states = {}
    for version in (0, 1):
        home = tmp_path_factory.mktemp(f"clean{version}") / "mesh"
        env = {"MESH_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
        (home / "dagster").mkdir(parents=True)
        land(home, "reference", "airlines.csv")
        land(home, "reference", "airports.csv", airports_version(version))
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            mesh_materialize("reference")
            states[version] = contents(open_catalog())
        assert all(states[version][t] for t in REFERENCE_TABLES), states[version]
    assert states[0] != states[1]
    for t in ("reference.airports", "reference.timezones"):
        assert states[0][t] != states[1][t], t  # both the ingested table and the mart change
    return states


def _run_and_kill(scenario: str, instance) -> str:
    """Start `mesh materialize reference` and kill it at the scenario's point; returns what was
    killed."""
    step = {"ingestion": "ingest_airports", "before publish": "check_airports"}.get(scenario)
    started = step_event(instance, step) if step else None  # knows the runs before this one
    proc = start([MESH, "materialize", "reference"])
    if scenario.startswith("at "):  # a time offset from the start
        time.sleep(float(scenario.split()[1]))
        kill_group(proc)
        return "run"
    if step:
        wait_for(started, 300, f"step {step} to start", proc, interval=0.02)
        kill_group(proc)
        return "run"
    # dbt: wait for the dbt subprocess of the run, let it work, then kill it or the whole run
    dbt = wait_for(
        lambda: [p for p, cmd in descendants(proc.pid) if "/dbt " in cmd and " build " in cmd],
        300,
        "the dbt build subprocess",
        proc,
        interval=0.02,
    )
    time.sleep(0.5)
    if scenario == "dbt subprocess":
        killed = 0
        for pid in dbt:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:  # dbt was already done: nothing was interrupted
                pass
        out, _ = proc.communicate(timeout=600)  # the run goes on and must fail, not hang
        if killed:
            assert proc.returncode != 0, out[-3000:]
            assert "dbt" in out, out[-3000:]
        return "dbt" if killed else "nothing (dbt had finished)"
    kill_group(proc)  # "run during dbt"
    return "run"


def kill_and_rerun(mesh_home, clean_states, scenarios: list[str]) -> list[str]:
    """Materialize version 0, then for each scenario: land the other version, kill the run at
    that point, check every table is at the old or the new complete version, rerun and check
    the result equals a clean run. Returns what each kill found (old/new per table)."""
    land(mesh_home, "reference", "airlines.csv")
    land(mesh_home, "reference", "airports.csv", airports_version(0))
    mesh_materialize("reference")
    catalog = open_catalog()
    assert contents(catalog) == clean_states[0]
    current, seen = 0, []
    for scenario in scenarios:
        new = 1 - current
        before = {t: table_state(catalog, t) for t in REFERENCE_TABLES}
        land(mesh_home, "reference", "airports.csv", airports_version(new))
        with dg.DagsterInstance.get() as instance:
            _run_and_kill(scenario, instance)
        after = {t: table_state(catalog, t) for t in REFERENCE_TABLES}
        found = []
        for t in REFERENCE_TABLES:
            snapshot, rows = after[t]
            if snapshot == before[t][0]:
                assert rows == before[t][1] == clean_states[current][t], (scenario, t)
                found.append(f"{t}=old")
            else:  # a new snapshot on main: exactly the new version, complete
                assert rows == clean_states[new][t], (scenario, t, "half-written or wrong version")
                found.append(f"{t}=new")
        seen.append(f"{scenario}: {', '.join(found)}")
        mesh_materialize("reference")  # a rerun converges ...
        assert contents(catalog) == clean_states[new], scenario  # ... to what a clean run gives
        current = new
    return seen


def test_sigkill_of_a_dagster_run_and_of_dbt_then_rerun_converges(mesh_home, clean_states):
    seen = kill_and_rerun(mesh_home, clean_states, ["ingestion", "dbt subprocess", "run during dbt"])
    print("\n".join(seen))
