"""Guards of the platform's shape that import-linter cannot express: environment variables are
read only in settings.py, and the contract package's forbidden list names the whole platform."""

import ast
import tomllib
from pathlib import Path

from mesh_assets.settings import PROJECT_DIR

PLATFORM = PROJECT_DIR / "mesh_assets"

# (module, function) -> why it may read os.environ although it is not settings.py
ALLOWED_READS = {
    ("mesh_assets/dbt/inprocess.py", "environment"): (
        "saves the variables it sets for a dbt invocation and puts them back afterwards: it "
        "reads back its own writes, no configuration"
    ),
}
# Not reads: handing the whole environment to a child process (``{**os.environ, ...}``,
# ``env=os.environ``), and writes (``os.environ[k] = v``, ``del``, ``pop``, ``setdefault``,
# ``update``: e.g. quality/gx.py turns GX's own analytics off before GX loads). Code that runs in
# another program is text here and not scanned: the Superset config and admin scripts of
# stack/superset.py read Superset's environment, in Superset's process.
WRITES = {"pop", "setdefault", "update", "clear"}


def _environment_reads(path: Path) -> list[tuple[int, str]]:
    """``(line, enclosing function)`` of every read of the environment in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def function_of(node) -> str:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node.name
        return "<module>"

    def is_os(node, name: str) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == name and getattr(node.value, "id", "") == "os"

    reads = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and is_os(node.func, "getenv"):
            reads.append((node.lineno, function_of(node)))
        if not is_os(node, "environ"):
            continue
        parent = parents[node]
        if isinstance(parent, ast.Dict) and any(
            k is None and v is node for k, v in zip(parent.keys, parent.values)
        ):
            continue  # {**os.environ, ...}: the environment of a child process
        if isinstance(parent, ast.keyword) and parent.arg == "env":
            continue  # env=os.environ: the same
        if isinstance(parent, ast.Subscript) and not isinstance(parent.ctx, ast.Load):
            continue  # os.environ[k] = v, del os.environ[k]
        if isinstance(parent, ast.Attribute) and parent.attr in WRITES:
            continue
        reads.append((node.lineno, function_of(node)))
    return reads


def test_no_module_but_settings_reads_the_environment():
    found = {}
    for path in sorted(PLATFORM.rglob("*.py")):
        module = path.relative_to(PROJECT_DIR).as_posix()
        if module == "mesh_assets/settings.py":
            continue
        for line, function in _environment_reads(path):
            found.setdefault((module, function), []).append(line)
    unexplained = {
        f"{m}:{lines[0]} in {f}()" for (m, f), lines in found.items() if (m, f) not in ALLOWED_READS
    }
    assert not unexplained, (
        "environment variables are read in mesh_assets/settings.py only (a MeshSettings field or a "
        f"function there); move these reads there: {sorted(unexplained)}"
    )
    # the allow list holds no stale entry
    assert set(ALLOWED_READS) <= set(found), set(ALLOWED_READS) - set(found)


def test_the_scan_sees_reads_and_lets_writes_and_child_environments_pass(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "A = os.environ.get('A')\n"
        "def f():\n"
        "    return os.getenv('B'), os.environ['C'], 'D' in os.environ\n"
        "def g(cmd):\n"
        "    os.environ['E'] = '1'\n"
        "    os.environ.setdefault('F', '0')\n"
        "    os.environ.pop('E', None)\n"
        "    return {**os.environ, 'G': '1'}\n"
    )
    assert _environment_reads(sample) == [(2, "<module>"), (4, "f"), (4, "f"), (4, "f")]


def test_the_contract_package_is_forbidden_every_other_part_of_the_platform():
    config = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c.get("source_modules") == ["mesh_assets.contract"]]
    platform = {
        f"mesh_assets.{p.stem if p.suffix == '.py' else p.name}"
        for p in PLATFORM.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert contract["type"] == "forbidden"
    assert set(contract["forbidden_modules"]) == platform - {"mesh_assets.contract"}
