"""The slow half of the reliability suite (``make soak``; excluded from ``make test`` by
``-m "not soak"``): the same invariants as the fast tests, at more points and more often.

* 32 concurrent writers x 5 commits each;
* SIGKILL during an ingestion rewrite at 12 random offsets (seeded, printed);
* SIGKILL of `mesh materialize reference` at every step boundary that matters and at random
  time offsets, each followed by a rerun that must equal a clean run;
* a mesh run killed after each of 1..8 successful steps, then re-executed from the failure.

``SOAK_SEED`` fixes the random offsets (default: a new seed each run, printed).
"""

import os
import random

import pytest
from test_kill_and_rerun import (  # noqa: F401  (clean_states is a fixture)
    clean_states,
    concurrent_writers,
    kill_and_rerun,
    kill_during_rewrite,
)
from test_reexecution import clean_run, kill_after_steps_then_reexecute  # noqa: F401

pytestmark = pytest.mark.soak

SEED = int(os.environ.get("SOAK_SEED", random.SystemRandom().randrange(1 << 30)))


def test_soak_thirty_two_concurrent_writers(mesh_home, tmp_path):
    concurrent_writers(tmp_path, writers=32, appends=5)


@pytest.mark.parametrize("i", range(12))
def test_soak_sigkill_during_a_rewrite_at_random_offsets(mesh_home, tmp_path, i):
    offset = round(random.Random(SEED + i).uniform(0.0, 2.5), 2)
    print(f"SOAK_SEED={SEED}: kill after {offset} s")
    kill_during_rewrite(mesh_home, tmp_path, offset)


def test_soak_sigkill_of_dagster_runs_at_every_point(mesh_home, clean_states):
    rng = random.Random(SEED)
    offsets = [f"at {rng.uniform(0.5, 15.0):.1f}" for _ in range(6)]
    print(f"SOAK_SEED={SEED}")
    seen = kill_and_rerun(
        mesh_home, clean_states, ["ingestion", "before publish", "dbt subprocess", "run during dbt", *offsets]
    )
    print("\n".join(seen))


@pytest.mark.parametrize("steps", range(1, 9))
def test_soak_reexecution_from_failure_after_each_step(mesh_home, clean_run, steps):
    print(kill_after_steps_then_reexecute(mesh_home, clean_run, steps_before_kill=steps))
