"""The one retry policy of every catalog mutation, on a real SQLite catalog: a writer that
another writer beat re-reads the table and re-applies its write; pyiceberg's own concurrency
failures (a conflicting commit, the sequence-number race between branches) are retried; after
the deadline the error names the table, the attempts, the time and what to do."""

import pyarrow as pa
import pytest
from pyiceberg.exceptions import CommitFailedException

from mesh_assets.iceberg.catalog import TABLE_PROPERTIES, open_catalog
from mesh_assets.iceberg.commit import CommitConflictError, commit_with_retry, is_concurrent_update
from mesh_assets.iceberg.wap import open_audit_branch

ROWS = pa.table({"n": pa.array([1], pa.int64())})


@pytest.fixture
def table(mesh_home):
    catalog = open_catalog()
    catalog.create_namespace("stress")
    created = catalog.create_table("stress.t", schema=ROWS.schema, properties=TABLE_PROPERTIES)
    created.append(ROWS)
    return created.refresh()


def test_a_writer_on_another_branch_makes_pyiceberg_raise_the_sequence_number_race(table):
    """pyiceberg's own behaviour (upstream: apache/iceberg#15001, fixed for Java's REST catalog
    in apache/iceberg#15126): a ValueError, not CommitFailedException, that no retry of
    pyiceberg covers."""
    for name in ("audit-aaaaaaaa", "audit-bbbbbbbb"):
        table = open_audit_branch(table, name)
    stale = open_catalog().load_table("stress.t")
    table.append(ROWS, branch="audit-aaaaaaaa")  # the other run commits first
    with pytest.raises(ValueError, match=r"^Cannot add snapshot with sequence number \d+ older than") as race:
        stale.append(ROWS, branch="audit-bbbbbbbb")
    assert is_concurrent_update(race.value)
    assert not is_concurrent_update(ValueError("Cannot add snapshot with sequence number 3"))
    assert not is_concurrent_update(ValueError("Snapshot with id 1 already exists"))


def test_the_sequence_number_race_is_retried_on_a_fresh_table(table):
    table = open_audit_branch(open_audit_branch(table, "audit-aaaaaaaa"), "audit-bbbbbbbb")
    stale = open_catalog().load_table("stress.t")
    seen = []

    def write(live):
        seen.append(live.metadata.last_sequence_number)
        if len(seen) == 1:  # the first attempt works on the table as it was before the other run
            table.append(ROWS, branch="audit-aaaaaaaa")
            stale.append(ROWS, branch="audit-bbbbbbbb")
        else:
            live.append(ROWS, branch="audit-bbbbbbbb")

    committed = commit_with_retry(open_catalog(), "stress.t", write)
    assert (committed.attempts, committed.conflicts) == (2, 1)
    assert seen[1] > seen[0]  # the retry re-read the table
    assert (
        committed.table.scan(snapshot_id=committed.table.metadata.refs["audit-bbbbbbbb"].snapshot_id)
        .to_arrow()
        .num_rows
        == 2
    )


def test_a_lost_commit_is_reapplied_once(table):
    attempts = []

    def write(live):
        attempts.append(live.current_snapshot().snapshot_id)
        if len(attempts) == 1:
            open_catalog().load_table("stress.t").append(ROWS)  # another writer wins the race ...
        live.append(ROWS)  # ... so this commit fails the first time: main moved

    committed = commit_with_retry(open_catalog(), "stress.t", write)
    assert committed.attempts == 2 and attempts[0] != attempts[1]
    assert committed.table.scan().to_arrow().num_rows == 3  # 1 + the other writer's + this one, once


def test_after_the_deadline_the_error_names_table_attempts_time_and_remedy(table, monkeypatch):
    monkeypatch.setenv("MESH_COMMIT_DEADLINE_S", "0.5")

    def always_beaten(live):
        open_catalog().load_table("stress.t").append(ROWS)
        live.append(ROWS)

    with pytest.raises(CommitConflictError) as gave_up:
        commit_with_retry(open_catalog(), "stress.t", always_beaten)
    err = gave_up.value
    assert err.identifier == "stress.t" and err.attempts >= 2 and err.seconds >= 0.5
    assert isinstance(err.__cause__, CommitFailedException)
    assert str(err) == (
        f"table stress.t: {err.attempts} commit attempt(s) over {err.seconds:.1f} s all failed because other "
        f"writers committed first (last: CommitFailedException: {err.__cause__}); this write changed nothing. "
        "Run it again when the other writers are done, reduce the number of concurrent writers, or allow more "
        "time with MESH_COMMIT_DEADLINE_S (now 0.5 s)."
    )
    # the other writer's commits all landed, this writer's none
    assert open_catalog().load_table("stress.t").scan().to_arrow().num_rows == 1 + err.attempts


def test_other_errors_are_not_retried(table):
    calls = []

    def broken(live):
        calls.append(1)
        raise ValueError("Snapshot with id 1 already exists")

    with pytest.raises(ValueError, match="already exists"):
        commit_with_retry(open_catalog(), "stress.t", broken)
    assert calls == [1]


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_a_bad_deadline_setting_is_refused(table, monkeypatch, value):
    monkeypatch.setenv("MESH_COMMIT_DEADLINE_S", value)
    with pytest.raises(ValueError, match=f"MESH_COMMIT_DEADLINE_S='{value}': expected a number of seconds"):
        commit_with_retry(open_catalog(), "stress.t", lambda live: None)
