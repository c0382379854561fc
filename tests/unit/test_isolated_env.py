"""Virtual environments of their own (``tools.isolated_env``: Superset, the OpenMetadata SDK,
pyspark): made once with uv into the tools cache, renamed into place only when complete (their
scripts still run), made by one process while the others wait on the lock, nothing left behind
by a failure. No network: the one real install is a wheel written by the test, uv offline."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from mesh_assets import tools

PROBE = "meshprobe"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MESH_TOOLS_CACHE", str(folder))
    monkeypatch.setenv("UV_OFFLINE", "1")
    return folder


def probe_wheel(folder: Path) -> Path:
    """A wheel of one module and its console script (printing its environment's prefix), written
    by hand: no build backend, no package index."""
    dist = f"{PROBE}-1.0.dist-info"
    files = {
        f"{PROBE}.py": "import sys\n\n\ndef main():\n    print(sys.prefix)\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {PROBE}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": f"[console_scripts]\n{PROBE} = {PROBE}:main\n",
    }
    wheel = folder / f"{PROBE}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist}/RECORD", "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"]))
    return wheel


def leftovers(folder: Path) -> list[str]:
    """Build folders of a maker (``.<name>-*``) still in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith("."))


def no_uv(monkeypatch) -> None:
    """Any attempt to make an environment fails the test."""

    def fail():
        raise AssertionError("uv was called: the environment should have been reused")

    monkeypatch.setattr(tools, "_uv", fail)


def test_made_once_from_a_requirements_file_its_scripts_run_in_place(cache, tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{probe_wheel(tmp_path)}\n")

    python = tools.isolated_env("probe/1.0-abc", requirements, timeout_s=120)

    home = cache / "probe" / "1.0-abc"
    assert python == home / "bin" / "python"
    assert leftovers(home.parent) == []  # the build folder was renamed, the lock file stays
    done = subprocess.run([str(home / "bin" / PROBE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == home.resolve()

    no_uv(monkeypatch)
    assert tools.isolated_env("probe/1.0-abc", requirements) == python


def test_a_second_maker_waits_on_the_lock_and_uses_the_first_ones_environment(cache, monkeypatch):
    no_uv(monkeypatch)
    home = cache / "probe-2.0"
    cache.mkdir()
    got: list[Path | BaseException] = []

    def second() -> None:
        try:
            got.append(tools.isolated_env("probe-2.0", ["probe==2.0"]))
        except BaseException as exc:
            got.append(exc)

    with (cache / ".probe-2.0.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first maker, building
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive() and got == []
        (home / "bin").mkdir(parents=True)
        (home / "bin" / "python").touch()
    waiter.join(timeout=10)

    assert got == [home / "bin" / "python"]
    assert leftovers(cache) == []


def test_a_failed_install_leaves_nothing_and_names_the_command(cache, monkeypatch):
    monkeypatch.setattr(
        tools, "_uv", lambda: [sys.executable, "-c", "import sys; sys.exit('no such package')"]
    )

    with pytest.raises(tools.ToolError, match=r"venv .* failed \(exit 1\): no such package"):
        tools.isolated_env("probe-3.0", ["probe==3.0"])

    assert not (cache / "probe-3.0").exists()
    assert leftovers(cache) == []


def test_without_uv_the_error_says_how_to_install_it(cache, monkeypatch):
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    monkeypatch.setattr(tools.sys, "executable", "/bin/false")  # a Python without the uv module

    with pytest.raises(tools.ToolError, match=r"uv is not installed: run `make install`"):
        tools.isolated_env("probe-4.0", ["probe==4.0"])

    assert leftovers(cache) == []
