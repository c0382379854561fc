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
import re
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

from mesh_assets.iceberg.catalog import TABLE_PROPERTIES, open_catalog

WRITER = textwrap.dedent("""
    import os, sys, time
    import pyarrow as pa
    from mesh_assets.iceberg.catalog import TABLE_PROPERTIES, open_catalog
    from mesh_assets.iceberg.commit import CommitConflictError, commit_with_retry

    writer, appends, go = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    catalog = open_catalog()
    while not os.path.exists(go):  # every writer starts at once, imports done
        time.sleep(0.01)
    for seq in range(appends):
        rows = pa.table({"writer": pa.array([writer] * 100, pa.int32()),
                         "seq": pa.array([seq] * 100, pa.int32())})
        try:
            committed = commit_with_retry(catalog, "stress.appends", lambda table: table.append(rows))
        except CommitConflictError as exc:
            print("GAVE-UP", seq, exc, flush=True)
            continue
        print("LANDED", seq, committed.attempts, flush=True)
""")

INGEST = textwrap.dedent("""
    import mesh_assets.iceberg.commit as commit
    import mesh_assets.ingest.readers as readers
    from mesh_assets.iceberg.catalog import TABLE_PROPERTIES, open_catalog
    from mesh_assets.ingest.assets import ingest
    from mesh_assets.workspace import load_contract
    from mesh_assets.settings import DOMAINS_DIR

    readers.BATCH_BYTES, commit.COMMIT_ROWS = 1 << 18, 20_000  # many files per commit
    product = load_contract(DOMAINS_DIR / "reference" / "products" / "airports.yaml")
    print("writing", flush=True)
    ingest(product, open_catalog())
    print("committed", flush=True)
""")


def concurrent_writers(tmp_path, writers: int, appends: int, env: dict | None = None) -> dict:
    """``writers`` processes append ``appends`` times each to one table, all released at once.
    Every commit a writer reports landed is in the table exactly once, and nothing else is.
    Returns what the writers reported: landed (writer, seq), attempts per landed commit, give-ups."""
    catalog = open_catalog()
    catalog.create_namespace("stress")
    schema = pa.schema([("writer", pa.int32()), ("seq", pa.int32())])
    catalog.create_table("stress.appends", schema=schema, properties=TABLE_PROPERTIES)
    script, go = tmp_path / "writer.py", tmp_path / "go"
    script.write_text(WRITER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(w), str(appends), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for w in range(writers)
    ]
    time.sleep(3)  # let the imports finish; the writers then race for the same commits
    go.touch()
    report = {"landed": set(), "attempts": [], "gave_up": []}
    for w, p in enumerate(procs):
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0 and "Traceback" not in err, err[-2000:]
        for line in out.splitlines():
            kind, seq, rest = line.split(" ", 2) if " " in line.split(" ", 1)[1] else (*line.split(" "), "")
            if kind == "LANDED":
                report["landed"].add((w, int(seq)))
                report["attempts"].append(int(rest))
            else:
                report["gave_up"].append(rest)
    table = catalog.load_table("stress.appends")
    data = table.scan().to_arrow()
    assert len(data) == len(report["landed"]) * 100  # exact: no commit lost, none doubled
    assert set(zip(data.column("writer").to_pylist(), data.column("seq").to_pylist())) == report["landed"]
    assert len(table.snapshots()) == len(report["landed"])
    return report


def test_sixteen_concurrent_writers_lose_no_commit(mesh_home, tmp_path):
    report = concurrent_writers(tmp_path, writers=16, appends=3)
    assert report["landed"] == {(w, s) for w in range(16) for s in range(3)} and not report["gave_up"]
    conflicts = sum(a - 1 for a in report["attempts"])
    print(
        f"48 commits, {conflicts} conflicts retried, most attempts for one commit: {max(report['attempts'])}"
    )
    assert conflicts > 0  # the writers did collide: the retry policy is what made every commit land


def test_writers_beaten_past_the_deadline_give_up_with_a_clear_error(mesh_home, tmp_path):
    report = concurrent_writers(tmp_path, writers=16, appends=3, env={"MESH_COMMIT_DEADLINE_S": "0"})
    print(f"{len(report['landed'])} of 48 commits landed, {len(report['gave_up'])} gave up")
    assert report["gave_up"] and report["landed"]  # some lost at their first conflict, some landed
    for message in report["gave_up"]:
        assert re.match(
            r"table stress\.appends: 1 commit attempt\(s\) over \d+\.\d s all failed because other writers "
            r"committed first \(last: CommitFailedException: (Requirement failed: branch main has changed: "
            r"|Table has been updated by another process: stress\.appends\))",
            message,
        ), message
        assert message.endswith(
            "this write changed nothing. Run it again when the other writers are done, reduce the number "
            "of concurrent writers, or allow more time with MESH_COMMIT_DEADLINE_S (now 0 s)."
        ), message


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
