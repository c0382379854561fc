"""The slow half of the reliability suite (``make soak``; excluded from ``make test`` by
``-m "not soak"``): the same invariants as the fast tests, more often and at random moments.

* 32 concurrent writers x 5 commits each;
* SIGKILL during an ingestion rewrite at fixed offsets (0-1.5 s, before, during and around the
  commit on a 2-core machine, where the rewrite takes about 1.2 s) and at 12 random offsets
  (seeded, printed);
* SIGKILL of `mesh materialize reference` at random time offsets: every table at its previous
  version or the new complete one, and a rerun equals a clean run;
* a mesh run killed at each checkpoint of the platform, then re-executed from the failure.

``SOAK_SEED`` fixes the random offsets (default: a new seed each run, printed).
"""

import os
import random
import time

import pytest
from meshtest import airports_version, land
from reliability_support import (
    MESH,
    REFERENCE_TABLES,
    contents,
    kill_group,
    mesh_materialize,
    start,
    table_state,
)
from test_kill_and_rerun import (  # noqa: F401  (clean_version_1 is a fixture)
    clean_version_1,
    concurrent_writers,
    kill_during_rewrite,
)
from test_reexecution import TABLES, clean_run, kill_at, land_all, run_job  # noqa: F401

from mesh_assets.iceberg.catalog import open_catalog

pytestmark = pytest.mark.soak

SEED = int(os.environ.get("SOAK_SEED", random.SystemRandom().randrange(1 << 30)))


def test_soak_thirty_two_concurrent_writers(mesh_home, tmp_path):
    concurrent_writers(tmp_path, writers=32, appends=5)


@pytest.mark.parametrize("kill_after_s", [0.0, 0.3, 0.6, 0.9, 1.2, 1.5])
def test_soak_sigkill_during_a_rewrite_at_fixed_offsets(mesh_home, tmp_path, kill_after_s):
    kill_during_rewrite(mesh_home, tmp_path, kill_after_s)


@pytest.mark.parametrize("i", range(12))
def test_soak_sigkill_during_a_rewrite_at_random_offsets(mesh_home, tmp_path, i):
    offset = round(random.Random(SEED + i).uniform(0.0, 2.5), 2)
    print(f"SOAK_SEED={SEED}: kill after {offset} s")
    kill_during_rewrite(mesh_home, tmp_path, offset)


def test_soak_sigkill_of_dagster_runs_at_random_offsets(mesh_home, clean_version_1):
    rng = random.Random(SEED)
    print(f"SOAK_SEED={SEED}")
    land(mesh_home, "reference", "airlines.csv")
    land(mesh_home, "reference", "airports.csv", airports_version(0))
    mesh_materialize("reference")
    catalog = open_catalog()
    clean = {0: contents(catalog), 1: clean_version_1}
    current = 0
    for i in range(6):
        new, offset = 1 - current, rng.uniform(0.5, 15.0)
        before = {t: table_state(catalog, t) for t in REFERENCE_TABLES}
        land(mesh_home, "reference", "airports.csv", airports_version(new))
        proc = start([MESH, "materialize", "reference"], mesh_home.parent / f"offset{i}.log")
        time.sleep(offset)
        kill_group(proc)
        for t in REFERENCE_TABLES:
            snapshot, rows = table_state(catalog, t)
            expected = clean[current][t] if snapshot == before[t][0] else clean[new][t]
            assert rows == expected, (offset, t, "half-written or wrong version")
        mesh_materialize("reference")
        assert contents(catalog) == clean[new], offset
        current = new


@pytest.mark.parametrize(
    "point",
    [
        "before_audit_branch:reference.airports",
        "audit_written:reference.airports",
        "before_publish:reference.airports",
        "after_publish:reference.airports",
        "dbt_store:reference.timezones",
        "audit_written:fleet.planes",
    ],
)
def test_soak_reexecution_from_failure_after_a_kill_at_each_checkpoint(mesh_home, clean_run, point):
    land_all(mesh_home)
    killed = kill_at(point, mesh_home.parent / "killed.log")
    _, success = run_job(parent_run_id=killed)
    assert success
    assert contents(open_catalog(), TABLES) == clean_run[0]
