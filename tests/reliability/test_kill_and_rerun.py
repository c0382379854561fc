"""Nothing lost under concurrency and crashes, with real processes on a real catalog.

* 16 concurrent writer processes: every commit lands exactly once;
* SIGKILL of an ingestion rewrite stopped after writing its data files, before the commit
  (``files_written``): the previous snapshot intact, the new files referenced by nothing, and a
  rerun gives the complete new version;
* SIGKILL of a real `mesh materialize reference` (a Dagster run: ingestion to the audit branch,
  checks, publish, dbt mart over ephemeral staging/intermediate stored to Iceberg) stopped at
  each decisive point by the platform's test hook (``MESH_TEST_PAUSE_AT``): during ingestion
  before the audit branch, after writing to it before the checks, after the checks before
  publishing, in the dbt process (only dbt is killed), after publishing. Each time main, the
  audit branch and the tags hold exactly what that point implies, the killed run ends FAILURE
  (marked by the next `mesh materialize`, with why), a rerun gives exactly what a clean run
  gives, and maintenance removes the audit branches the killed runs left.

Variants killed at time offsets (fixed and random) are in test_soak.py (``make soak``).
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pyarrow as pa
import pytest
from meshtest import NYCFLIGHTS, airports_version, land, point_at
from reliability_support import (
    MESH,
    REFERENCE_TABLES,
    contents,
    failure_message,
    kill_group,
    mesh_materialize,
    pause_env,
    start,
    table_state,
    wait_for,
    wait_paused,
)

from mesh_assets.iceberg.catalog import TABLE_PROPERTIES, open_catalog
from mesh_assets.iceberg.maintenance import maintain
from mesh_assets.iceberg.wap import audit_branch_name
from mesh_assets.runs import WORKER_PID_TAG
from mesh_assets.settings import DOMAINS_DIR
from mesh_assets.workspace import load_contract

WRITER = textwrap.dedent("""
    import os, sys, time
    import pyarrow as pa
    from mesh_assets.iceberg.catalog import TABLE_PROPERTIES, open_catalog
    from mesh_assets.iceberg.commit import CommitConflictError, commit_with_retry

    writer, appends, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    catalog = open_catalog()
    open(os.path.join(folder, f"ready-{writer}"), "x").close()  # imports done, catalog open
    while not os.path.exists(os.path.join(folder, "go")):  # every writer starts at once
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
    import mesh_assets.iceberg.datafiles as datafiles
    import mesh_assets.ingest.readers as readers
    from mesh_assets.iceberg.catalog import TABLE_PROPERTIES, open_catalog
    from mesh_assets.ingest.assets import ingest
    from mesh_assets.workspace import load_contract
    from mesh_assets.settings import DOMAINS_DIR

    readers.BATCH_BYTES, datafiles.FILE_ROWS = 1 << 18, 20_000  # many files per commit
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
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(w), str(appends), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for w in range(writers)
    ]

    def all_ready() -> bool:
        ended = [(w, p.returncode) for w, p in enumerate(procs) if p.poll() is not None]
        assert not ended, f"writers ended before the start: {ended}"
        return all((tmp_path / f"ready-{w}").exists() for w in range(writers))

    wait_for(all_ready, 600, f"{writers} writers ready")
    (tmp_path / "go").touch()  # the writers now race for the same commits
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
            r"|Requirement failed: branch main was created concurrently\)"
            r"|Table has been updated by another process: stress\.appends\))",
            message,
        ), message
        assert message.endswith(
            "this write changed nothing. Run it again when the other writers are done, reduce the number "
            "of concurrent writers, or allow more time with MESH_COMMIT_DEADLINE_S (now 0 s)."
        ), message


def land_a_rewrite(mesh_home, tmp_path, copies: int) -> tuple[Path, int, int]:
    """The real airports ingested (a first version, 1458 rows, to keep), then ``copies`` times
    those rows landed for a rewrite. Returns the ingestion script, the first version's snapshot
    id and the number of rows the rewrite writes."""
    lines = (NYCFLIGHTS / "airports.csv").read_text().splitlines()
    land(mesh_home, "reference", "airports.csv")
    script = tmp_path / "ingest.py"
    script.write_text(INGEST)
    assert subprocess.run([sys.executable, str(script)], capture_output=True).returncode == 0
    before = open_catalog().load_table("reference.airports").current_snapshot().snapshot_id
    land(mesh_home, "reference", "airports.csv", "\n".join([lines[0]] + lines[1:] * copies) + "\n")
    return script, before, 1458 * copies


def test_sigkill_between_writing_the_files_and_the_commit_keeps_the_old_version(mesh_home, tmp_path):
    script, before, rows = land_a_rewrite(mesh_home, tmp_path, copies=20)  # 29,160 rows, 2+ files
    catalog = open_catalog()
    table = catalog.load_table("reference.airports")
    data = Path(urlparse(table.location()).path) / "data"
    files_before, snapshots_before = set(data.rglob("*.parquet")), len(table.snapshots())

    proc = start(
        [sys.executable, str(script)],
        tmp_path / "ingest.log",
        env=pause_env("files_written:reference.airports"),
    )
    try:
        assert wait_paused("files_written", proc) == proc.pid
    finally:
        kill_group(proc)

    table = catalog.load_table("reference.airports")
    assert table.current_snapshot().snapshot_id == before and len(table.snapshots()) == snapshots_before
    assert len(table.scan().to_arrow()) == 1458  # the previous version, intact
    written = set(data.rglob("*.parquet")) - files_before  # by the killed process, committed by none
    assert written and not written & {
        Path(urlparse(t.file.file_path).path) for t in table.scan().plan_files()
    }
    # the rerun (same environment: only the first process stops at the checkpoint) commits it all
    rerun = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=pause_env("files_written:reference.airports"),
    )
    assert rerun.returncode == 0 and "committed" in rerun.stdout, rerun.stderr[-3000:]
    table = catalog.load_table("reference.airports")
    assert table.current_snapshot().snapshot_id != before
    assert len(table.scan().to_arrow()) == rows
    # the killed process had written as many files as the complete rewrite has
    assert len(written) == len(list(table.scan().plan_files()))


def kill_during_rewrite(mesh_home, tmp_path, kill_after_s: float) -> None:
    """Kill an ingestion rewrite of ~218k rows (seconds of writing) ``kill_after_s`` after it
    starts: the previous version or the complete new one, and a rerun converges (test_soak.py)."""
    script, before, rows = land_a_rewrite(mesh_home, tmp_path, copies=150)
    catalog = open_catalog()
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"  # imports done: the write starts now
    time.sleep(kill_after_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    table = catalog.load_table("reference.airports")
    found = len(table.scan().to_arrow())
    if table.current_snapshot().snapshot_id == before:
        assert found == 1458  # the kill came before the commit: previous version intact
    else:
        assert found == rows  # the commit had landed: the whole new version
    # rerunning completes without duplicates
    assert subprocess.run([sys.executable, str(script)], capture_output=True).returncode == 0
    assert len(catalog.load_table("reference.airports").scan().to_arrow()) == rows


# --- a real Dagster run, killed at each decisive point ----------------------------------------


@pytest.fixture(scope="module")
def clean_version_1(tmp_path_factory):
    """What a clean `mesh materialize reference` of version 1 (every airport altitude + 1 ft)
    produces, in a MESH_HOME of its own."""
    home = tmp_path_factory.mktemp("clean1") / "mesh"
    (home / "dagster").mkdir(parents=True)
    land(home, "reference", "airlines.csv")
    land(home, "reference", "airports.csv", airports_version(1))
    with pytest.MonkeyPatch.context() as mp:
        point_at(mp, home)
        mesh_materialize("reference")
        state = contents(open_catalog())
    assert all(state[t] for t in REFERENCE_TABLES), state
    return state


# Where `mesh materialize reference` is stopped and killed, and what main must then hold for
# airports and timezones (the ingested table and the dbt mart over it): "old" = the version
# before the run, "new" = the version the run was writing. The killed run's audit branch on
# airports holds the complete new version exactly when data was written and not published.
KILL_POINTS = {
    "before_audit_branch:reference.airports": ("old", "old", False),
    "audit_written:reference.airports": ("old", "old", True),
    "before_publish:reference.airports": ("old", "old", True),
    "dbt_store:reference.timezones": ("new", "old", False),  # dbt runs in the run's process
    "after_publish:reference.airports": ("new", "old", False),
}


def kill_at(point: str, log: Path) -> tuple[str, int]:
    """Run `mesh materialize reference` until it stops at ``point``, then SIGKILL it (the whole
    run: dbt runs in its process too). Returns the run id and the pid killed."""
    proc = start([MESH, "materialize", "reference"], log, env=pause_env(point))
    try:
        pid = wait_paused(point.split(":")[0], proc)
        with dg.DagsterInstance.get() as instance:
            [run] = instance.get_runs(limit=1)
        assert run.tags[WORKER_PID_TAG] == str(proc.pid) == str(pid)
        return run.run_id, pid
    finally:
        kill_group(proc)


def on_main_line(table, snapshot_id: int) -> bool:
    """Whether ``snapshot_id`` is main's current snapshot or one of its ancestors."""
    current = table.current_snapshot()
    ancestor = current.snapshot_id if current else None
    while ancestor is not None:
        if ancestor == snapshot_id:
            return True
        ancestor = table.snapshot_by_id(ancestor).parent_snapshot_id
    return False


def assert_tags_point_at_published_snapshots(catalog) -> None:
    """``last-checked`` and every ``checked-*`` tag name a snapshot that main holds or held."""
    for identifier in REFERENCE_TABLES:
        table = catalog.load_table(identifier)
        for name, ref in table.metadata.refs.items():
            if ref.snapshot_ref_type == "tag" and (name == "last-checked" or name.startswith("checked-")):
                assert on_main_line(table, ref.snapshot_id), (identifier, name)


def kill_and_rerun(mesh_home, clean: dict[int, dict], points: list[str]) -> None:
    """Materialize version 0, then for each kill point: land the other version, kill the run
    there, assert what main, the audit branch, the tags and the run's status are, rerun and
    assert the rerun gives exactly what a clean run gives and marked the killed run failed.
    Finally maintenance removes the audit branches the killed runs left."""
    land(mesh_home, "reference", "airlines.csv")
    land(mesh_home, "reference", "airports.csv", airports_version(0))
    mesh_materialize("reference")
    catalog = open_catalog()
    clean[0] = contents(catalog)  # a fresh MESH_HOME: this first run is a clean run of version 0
    current, left_branches = 0, set()
    for point in points:
        new = 1 - current
        before = {t: table_state(catalog, t) for t in REFERENCE_TABLES}
        land(mesh_home, "reference", "airports.csv", airports_version(new))
        run_id, pid = kill_at(point, mesh_home.parent / f"{point.split(':')[0]}.log")
        airports_side, timezones_side, branch_kept = KILL_POINTS[point]
        version = {"old": current, "new": new}
        assert contents(catalog, ["reference.airlines"]) == {
            "reference.airlines": clean[new]["reference.airlines"]
        }
        for table_name, side in (
            ("reference.airports", airports_side),
            ("reference.timezones", timezones_side),
        ):
            snapshot, rows = table_state(catalog, table_name)
            assert rows == clean[version[side]][table_name], (point, table_name, side)
            assert (snapshot == before[table_name][0]) == (side == "old"), (point, table_name)
        airports = catalog.load_table("reference.airports")
        branch = audit_branch_name(run_id)
        assert (branch in airports.metadata.refs) == branch_kept, (point, airports.metadata.refs)
        if branch_kept:  # the complete new version waits there, unpublished
            data = airports.scan().use_ref(branch).to_arrow()
            assert (
                sorted(tuple("" if v is None else str(v) for v in r.values()) for r in data.to_pylist())
                == (clean[new]["reference.airports"])
            )
            left_branches.add(branch)
        assert_tags_point_at_published_snapshots(catalog)

        with dg.DagsterInstance.get() as instance:
            status = instance.get_run_by_id(run_id).status
            failed = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
        # nobody saw the process die: the run stays STARTED until the next mesh command
        assert status == dg.DagsterRunStatus.STARTED and not failed, (point, status)

        rerun = mesh_materialize("reference")  # a rerun converges ...
        assert contents(catalog) == clean[new], point  # ... to what a clean run gives
        with dg.DagsterInstance.get() as instance:
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE, point
            assert f"run {run_id} marked failed: its worker process is gone" in rerun
            message = failure_message(instance, run_id)
            assert message.startswith(f"The run's worker process (pid {pid} on "), message
            assert "it was killed or crashed" in message, message
        for identifier in REFERENCE_TABLES:
            table = catalog.load_table(identifier)
            assert table.metadata.refs["last-checked"].snapshot_id == table.current_snapshot().snapshot_id
        current = new

    later = datetime.now(UTC) + timedelta(days=400)  # past every contract's retention
    for identifier in REFERENCE_TABLES:
        product = load_contract(DOMAINS_DIR / "reference" / "products" / f"{identifier.split('.')[1]}.yaml")
        maintain(product, catalog, now=later)
    airports = catalog.load_table("reference.airports")
    assert left_branches and not left_branches & set(airports.metadata.refs)
    assert not [
        r for t in REFERENCE_TABLES for r in catalog.load_table(t).metadata.refs if r.startswith("audit-")
    ]
    assert contents(catalog) == clean[current]  # maintenance changed no data


def test_dagster_run_killed_at_each_decisive_point_then_rerun_converges(mesh_home, clean_version_1):
    kill_and_rerun(mesh_home, {1: clean_version_1}, list(KILL_POINTS))
