"""dbt on the embedded target, run inside the Dagster step's process instead of a ``dbt``
subprocess per invocation: dbt-core's programmatic API (``dbtRunner``) with the project parsed
once per process and handed to every invocation (dbt's documented reuse of a parsed manifest,
https://docs.getdbt.com/reference/programmatic-invocations#reusing-objects).

Why: on 2 cores a dbt subprocess cost, per invocation and before any model ran, about 1.5 s of
interpreter start and imports, 1.4 s reading the partial parse and 1.1 s of exit (``make
bench``, the demo's breakdown in bench/results.md), six times per ``mesh demo``. In the step's
process dbt and its adapter are imported once and the manifest parsed once.

:class:`DbtThread` is what dagster-dbt's ``DbtCliInvocation`` reads of a ``subprocess.Popen``
(``args``, ``stdout``, ``wait``, ``returncode``, ``send_signal``): dbt's console log, in the JSON
format dagster-dbt sets (``DBT_LOG_FORMAT``), goes to a pipe through dbt's own capture hook, so
dagster-dbt turns exactly the lines the CLI would print into Dagster events, and ``dbt.log``,
``run_results.json`` and the exit code (0 success, 1 a node failed, 2 dbt failed) are the CLI's.

dbt's flags, adapters, event manager and dbt-duckdb's DuckDB environment are process globals:
one invocation at a time per process (a lock), the invocation's environment variables set for
its duration only, and dbt-duckdb's environment (its in-memory DuckDB and the Iceberg plugin)
dropped after each invocation, so nothing read by one run is seen by the next.

Only the ``local`` target runs here: the ``trino`` target logs each domain in with a password
from the environment, which must stay in a dbt subprocess's environment
(:mod:`mesh_assets.dbt.runner`).
"""

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from dbt.adapters.duckdb.connections import DuckDBConnectionManager
from dbt.cli.main import dbtRunner
from dbt.contracts.graph.manifest import Manifest
from dbt_common.events.functions import capture_stdout_logs, stop_capture_stdout_logs

_ONE_AT_A_TIME = threading.Lock()
_PARSED: dict[tuple, tuple[Manifest, Path]] = {}  # prepared parse -> the project, its manifest.json
PARTIAL_PARSE = "partial_parse.msgpack"
MANIFEST = "manifest.json"


class DbtThread:
    """One dbt invocation (``args`` as for the ``dbt`` executable, ``args[0]`` being it) in a
    thread of this process, with ``env`` added to its environment (None: unset), writing its artifacts to
    ``target_path``. The project is parsed for ``target`` in ``parse_dir`` (once per process)
    from the prepared parse in ``prepared_dir`` (``mesh dbt prepare``'s, made with the same
    ``--target``: dbt parses everything again when the arguments differ)."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str | None],
        target_path: Path,
        target: str,
        prepared_dir: Path,
        parse_dir: Path,
    ):
        self.args = list(args)
        self.returncode: int | None = None
        read, write = os.pipe()
        self.stdout = os.fdopen(read, "rb")
        self._log = os.fdopen(write, "w", buffering=1)
        self._thread = threading.Thread(
            target=self._run,
            args=(env, target_path, (target, prepared_dir, parse_dir)),
            name="dbt",
            daemon=True,
        )
        self._thread.start()

    def _run(self, env: Mapping[str, str | None], target_path: Path, parse: tuple) -> None:
        code = 2
        try:
            with _ONE_AT_A_TIME, environment(env):
                capture_stdout_logs(self._log)
                try:
                    parsed = _parsed(*parse)
                    if parsed is not None:
                        manifest, manifest_json = parsed
                        shutil.copyfile(manifest_json, target_path / MANIFEST)  # the CLI writes it
                        # a copy: dbt compiles the nodes in place (an ephemeral model's CTE
                        # injected once would be missing from the next invocation's SQL)
                        result = dbtRunner(manifest=manifest.deepcopy()).invoke(self.args[1:])
                        code = 0 if result.success else 1 if result.exception is None else 2
                finally:
                    stop_capture_stdout_logs()
                    # dbt-duckdb keeps its DuckDB environment (the in-memory database, the
                    # plugin and what it loaded) for the next invocation of the same profile
                    DuckDBConnectionManager.close_all_connections()
        except Exception as exc:  # noqa: BLE001 - reported as dbt reports its errors, below
            self._log.write(_error_line(f"dbt could not run in this process: {type(exc).__name__}: {exc}"))
        finally:
            self.returncode = code
            self._log.close()

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """dagster-dbt forwards a run's termination to dbt as SIGINT: a thread cannot be
        interrupted, so dbt ends with the step's process (its thread is a daemon)."""


def _error_line(message: str) -> str:
    """An error in dbt's JSON log format: dagster-dbt collects it into the invocation's error."""
    info = {"name": "MainEncounteredError", "code": "Z002", "level": "error", "msg": message, "ts": ""}
    return json.dumps({"info": info, "data": {}}) + "\n"


def _parsed(target: str, prepared_dir: Path, parse_dir: Path) -> tuple[Manifest, Path] | None:
    """The project and its manifest.json, parsed once per process and prepared parse: dbt
    starts from a copy of the prepared ``partial_parse.msgpack``, so only what changed since
    ``mesh dbt prepare`` is parsed. None when the parse failed (dbt logged why, as errors the
    invocation reports)."""
    prepared = prepared_dir / PARTIAL_PARSE
    key = (target, prepared, prepared.stat().st_mtime_ns if prepared.exists() else None)
    if key not in _PARSED:
        work = parse_dir / str(os.getpid())
        work.mkdir(parents=True, exist_ok=True)
        if prepared.exists():
            shutil.copyfile(prepared, work / PARTIAL_PARSE)
        result = dbtRunner().invoke(["parse", "--target", target, "--target-path", os.fspath(work)])
        if not result.success:
            return None
        _PARSED.clear()
        _PARSED[key] = (result.result, work / MANIFEST)
    return _PARSED[key]


@contextlib.contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """``values`` set in this process's environment for the block (None: unset), then what was
    there before put back: dbt reads its flags (click), the profile (``env_var``) and the
    plugin its run from the process environment."""
    changed = {k: v for k, v in values.items() if os.environ.get(k) != v}
    saved = {k: os.environ.get(k) for k in changed}
    for k, v in changed.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
