"""Definitions load time against the size of the mesh: 1, 10, 50 domains x 20 products.

For each domain count N (``BENCH_DOMAINS``, default ``1,10,50``) a temporary project is made
(``MESH_PROJECT_DIR``, read by mesh_assets.settings): N domains scaffolded with
``mesh_assets.scaffold.new_domain`` plus 19 more products each (``new_product``: ingested CSV
products with a primary key, a range rule and a row-count rule, i.e. 4 checks), the project's
dbt macros and profile, and ``mesh dbt prepare`` (run once, untimed: production images prepare
the manifest at build time). Then, alternating, after a warm-up:

* one domain's code location in a fresh interpreter: ``from domains.d000.definitions import
  defs`` (what each gRPC code server of the Helm chart does at start), against
  ``python -c 'import dagster'`` as the floor;
* every code location in one interpreter (``import domains.<d>.definitions`` for each: the
  CPU a webserver/daemon pays, without one process per location), against N times the
  single-location load of the same round (ratio < 1: shared imports; > 1: a cost that grows
  with the mesh). Measured up to ``BENCH_DEFS_ALL_MAX`` domains (default 50); a larger N is
  recorded as skipped (its single-location figure still shows the per-location cost).

First, once: the demo project's ``reference`` location (dbt models: dagster-dbt, and with it
dbt-core, is imported) against its ``fleet`` location (no dbt model), fresh interpreters,
alternating (``definitions_load_dbt_domain``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run as bench_run

PRODUCTS_PER_DOMAIN = 20


def make_project(root: Path, domains: int) -> Path:
    from mesh_assets.scaffold import new_domain, new_product

    project = root / f"mesh-{domains}-domains"
    (project / "domains").mkdir(parents=True)
    (project / "domains" / "__init__.py").write_text("")
    dbt = project / "dbt_project"
    dbt.mkdir()
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copyfile(bench_run.ROOT / "dbt_project" / name, dbt / name)
    shutil.copytree(bench_run.ROOT / "dbt_project" / "macros", dbt / "macros")
    (dbt / "models").mkdir()
    (project / "workspace.yaml").write_text("load_from:\n")
    for d in range(domains):
        name = f"d{d:03d}"
        new_domain(project, name)
        for p in range(1, PRODUCTS_PER_DOMAIN):
            new_product(project, name, f"p{p:02d}")
    return project


def _timed(cmd: list[str], env: dict[str, str], cwd: Path):
    def run() -> float:
        start = time.perf_counter()
        proc = subprocess.run(cmd, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
        return time.perf_counter() - start

    return run


def bench_dbt_domain(repeats: int, root: Path) -> dict:
    """The demo project's ``reference`` location, which has dbt models (so dagster-dbt, and with
    it dbt-core, is imported to build its ``@dbt_assets``), against its ``fleet`` location, which
    has none (its dbt source tests are checks built without dagster-dbt)."""
    home = root / "home-demo"
    (home / "dagster").mkdir(parents=True)
    env = {"MESH_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    _timed([str(Path(sys.executable).parent / "mesh"), "dbt", "prepare"], env, bench_run.ROOT)()
    with_dbt, without = (
        _timed([sys.executable, "-c", f"from domains.{d}.definitions import defs"], env, bench_run.ROOT)
        for d in ("reference", "fleet")
    )
    print("-- the demo project: a location with dbt models vs one without", flush=True)
    xs, ys = bench_run.rounds(
        repeats, with_dbt, without, label=lambda a, b: f"reference {a:.2f} s, fleet {b:.2f} s"
    )
    return bench_run._result(
        "definitions_load_dbt_domain",
        "s",
        xs,
        "the demo's fleet location (no dbt model)",
        ys,
        note="reference: @dbt_assets from the prepared manifest; dagster-dbt imports dbt-core's "
        "adapters at import time (about 1.7 s of CPU here), paid only by locations with "
        "dbt models",
    )


def bench_definitions(repeats: int) -> list[dict]:
    counts = [int(n) for n in os.environ.get("BENCH_DOMAINS", "1,10,50").split(",") if n.strip()]
    all_max = bench_run.env_int("BENCH_DEFS_ALL_MAX", 50)
    bin_dir = Path(sys.executable).parent
    out = []
    root = Path(tempfile.mkdtemp(prefix="mesh-bench-defs-"))
    try:
        out.append(bench_dbt_domain(repeats, root))
        for n in counts:
            project = make_project(root, n)
            home = root / f"home-{n}"
            env = {
                "MESH_PROJECT_DIR": str(project),
                "MESH_HOME": str(home),
                "DAGSTER_HOME": str(home / "dagster"),
                "PYTHONPATH": str(project),
            }
            (home / "dagster").mkdir(parents=True)
            start = time.perf_counter()
            _timed([str(bin_dir / "mesh"), "dbt", "prepare"], env, project)()
            prepare_s = time.perf_counter() - start
            products = n * PRODUCTS_PER_DOMAIN
            print(
                f"-- {n} domain(s), {products} products (dbt prepare: {prepare_s:.1f} s, untimed)", flush=True
            )
            one = _timed([sys.executable, "-c", "from domains.d000.definitions import defs"], env, project)
            floor = _timed([sys.executable, "-c", "import dagster"], env, project)
            steps = [one, floor]
            if n <= all_max:
                modules = ", ".join(f"'domains.d{d:03d}.definitions'" for d in range(n))
                steps.append(
                    _timed(
                        [
                            sys.executable,
                            "-c",
                            f"import importlib\nfor m in [{modules}]:\n    importlib.import_module(m)",
                        ],
                        env,
                        project,
                    )
                )
            measured = bench_run.rounds(
                repeats,
                *steps,
                label=lambda a, b, c=None: (
                    f"one location {a:.2f} s, import dagster {b:.2f} s"
                    + (f", all {n} location(s) {c:.2f} s" if c else "")
                ),
            )
            ones, floors = measured[0], measured[1]
            out.append(
                bench_run._result(
                    f"definitions_load_one_domain_of_{n}",
                    "s",
                    ones,
                    "python -c 'import dagster'",
                    floors,
                    domains=n,
                    products=products,
                    dbt_prepare_s=round(prepare_s, 2),
                    goal="< 2 s, flat in the number of domains",
                )
            )
            if n <= all_max:
                out.append(
                    bench_run._result(
                        f"definitions_load_all_{n}_domains",
                        "s",
                        measured[2],
                        f"{n} x one location's load (same round)",
                        [n * o for o in ones],
                        domains=n,
                        products=products,
                        note="every location imported in one interpreter (one process per location "
                        "in production: the same CPU plus process starts)",
                    )
                )
            else:
                one_s = bench_run.stats(ones)["median"]
                out.append(
                    bench_run.skipped(
                        f"definitions_load_all_{n}_domains",
                        f"not measured above BENCH_DEFS_ALL_MAX={all_max} domains (set it to measure); "
                        f"one location of {n} took {one_s:.1f} s",
                        domains=n,
                        products=products,
                    )
                )
            shutil.rmtree(project, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out
