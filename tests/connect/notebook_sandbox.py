"""Run notebooks with nbmake in a sandbox that holds no credential (bubblewrap).

A notebook in a pull request is code that CI runs: a hostile one would print whatever the
kernel can read. :func:`run_notebooks` starts ``pytest --nbmake`` (so nbclient and the kernel)
under ``bwrap`` with:

- an environment of ``PATH``, ``HOME`` (an empty folder), ``LANG`` and ``MESH_HOME`` only, and
  bwrap itself started with nothing but ``PATH`` and ``LANG`` (:func:`sandbox_environment`);
- a file system of the operating system (``/usr``, ``/etc``, ...), the Python installation and
  the project's files read-only, the project's own ``.mesh`` hidden (the stack's secrets live
  there), the demo mesh read-only, and an empty ``/tmp``: no other folder of the machine;
- its own process, network, IPC and user namespaces: no other process's environment in
  ``/proc``, no network but its own loopback (Trino is out of reach, as it should be in CI).

Debian's ``bubblewrap`` package provides ``bwrap`` (`make sandbox` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from mesh_assets.settings import PROJECT_DIR

SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64")
TIMEOUT_S = 300


def sandbox_command(
    mesh_home: Path, command: list[str], *, leak: dict[str, str] | None = None, leak_dir: Path | None = None
) -> list[str]:
    """``command`` wrapped in ``bwrap`` as described in the module's docstring. ``leak`` and
    ``leak_dir`` (an extra variable set, an extra folder shown) exist for the test that proves
    the secrets probe notices a credential when one is there."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise RuntimeError("bwrap is not installed: run `make sandbox` (Debian package bubblewrap)")
    python_home = Path(sys.base_prefix).resolve()
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
    for path in SYSTEM:
        if Path(path).exists():
            args += ["--ro-bind", path, path]
    args += ["--ro-bind", str(python_home), str(python_home)]
    # a fresh /tmp first: the project or the demo home may live under /tmp (a clone there)
    args += ["--tmpfs", "/tmp", "--dir", "/tmp/home"]
    args += ["--ro-bind", str(PROJECT_DIR), str(PROJECT_DIR), "--tmpfs", str(PROJECT_DIR / ".mesh")]
    args += ["--ro-bind", str(mesh_home), str(mesh_home)]
    if (mesh_home / "stack").exists():  # a home that also ran `mesh stack up`: its secrets stay hidden
        args += ["--tmpfs", str(mesh_home / "stack")]
    args += ["--proc", "/proc", "--dev", "/dev", "--chdir", str(PROJECT_DIR), "--clearenv"]
    env = {
        "PATH": f"{PROJECT_DIR / '.venv' / 'bin'}:/usr/bin:/bin",
        "HOME": "/tmp/home",
        "LANG": "C.UTF-8",
        "MESH_HOME": str(mesh_home),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if leak_dir is not None:
        args += ["--ro-bind", str(leak_dir), str(leak_dir)]
    for name, value in (env | (leak or {})).items():
        args += ["--setenv", name, value]
    return [*args, "--", *command]


def sandbox_environment() -> dict[str, str]:
    """The environment ``bwrap`` itself starts with. ``--clearenv`` is not enough: the sandbox's
    first process is a fork of bwrap, and ``/proc/1/environ`` shows the environment bwrap was
    started with (the probe notebook found the starting process's credentials there)."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def run_notebooks(mesh_home: Path, notebooks: list[Path], **leaks) -> subprocess.CompletedProcess:
    """``pytest --nbmake NOTEBOOKS`` in the sandbox, reading the mesh at ``mesh_home``."""
    command = [
        str(PROJECT_DIR / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "--rootdir", "/tmp", "--nbmake", *map(str, notebooks),
    ]  # fmt: skip
    return subprocess.run(
        sandbox_command(mesh_home, command, **leaks),
        env=sandbox_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
