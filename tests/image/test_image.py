"""The platform image itself, built from Containerfile and run with podman as OpenShift's
restricted-v2 SCC runs it: an arbitrary UID in group 0, a read-only root filesystem with only
the chart's volumes writable, every capability dropped, no privilege escalation. What it
holds: no credentials, no compilers, no dev dependencies, no test files. Its size and layer
count go to test-artifacts/image/image.json; a rebuild after a contract changed reuses the
dependency layer."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from mesh_assets import image
from mesh_assets.deploy import CHART_DIR
from mesh_assets.governance import SECRET_PATTERNS
from mesh_assets.settings import PROJECT_DIR

pytestmark = pytest.mark.image

ARTIFACTS = PROJECT_DIR / "test-artifacts" / "image"
OPENSHIFT_UID = "1000870000"  # from a namespace's range, as restricted-v2 assigns it
PATHS = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["paths"]
DOMAINS = [d["name"] for d in yaml.safe_load((CHART_DIR / "domains.yaml").read_text())["domains"]]


def run_restricted(reference: str, script: str, volumes: dict[str, Path], *, check: bool = True):
    """``sh -c script`` in the image as restricted-v2 runs a container, with ``volumes``
    (host directory -> mount path) as the only writable paths."""
    args = ["run", "--rm", "--network", "host", "--user", f"{OPENSHIFT_UID}:0"]
    args += ["--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL"]
    args += ["--security-opt", "no-new-privileges"]
    for mount, source in volumes.items():
        args += ["--volume", f"{source}:{mount}:rw"]
    return image.podman(*args, "--entrypoint", '["sh", "-c"]', reference, script, check=check)


def writable_dirs(tmp_path: Path) -> dict[str, Path]:
    """The chart's emptyDirs (MESH_HOME, /tmp) as fresh host directories, mode 1777 like the
    kubelet's."""
    dirs = {}
    for mount in (PATHS["meshHome"], "/tmp"):
        path = tmp_path / mount.strip("/").replace("/", "_")
        path.mkdir()
        path.chmod(0o1777)
        dirs[mount] = path
    return dirs


def test_its_user_and_paths_are_the_charts(platform_image):
    config = json.loads(image.podman("image", "inspect", platform_image).stdout)[0]["Config"]
    user = config["User"].split(":")[0]
    assert user.isdigit() and int(user) != 0, config["User"]  # runAsNonRoot can verify it
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["APP_DIR"] == PATHS["app"]
    assert env["DAGSTER_HOME"] == PATHS["dagsterHome"]
    assert env["MESH_HOME"] == PATHS["meshHome"]
    assert env["PATH"].startswith(f"{PATHS['app']}/.venv/bin:")  # `dagster` for the chart's commands
    # the image's default command is the chart's code server command
    assert config["Cmd"][:3] == ["dagster", "api", "grpc"]


def test_runs_as_an_arbitrary_uid_in_group_0_on_a_read_only_root(platform_image, tmp_path):
    volumes = writable_dirs(tmp_path)
    script = f"""
        id -u; id -g
        grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status
        grep NoNewPrivs /proc/self/status
        touch {PATHS["app"]}/x 2>&1 || true
        touch {PATHS["dagsterHome"]}/x 2>&1 || true
        touch {PATHS["meshHome"]}/written && touch /tmp/written && echo wrote-volumes
        mesh lint >/dev/null && echo linted
        for d in {" ".join(DOMAINS)}; do
          python -c "import domains.$d.definitions as m; print('$d', len(list(m.defs.resolve_asset_graph().get_all_asset_keys())))" || exit 1
        done
    """
    out = run_restricted(platform_image, script, volumes).stdout
    lines = out.splitlines()
    assert lines[:2] == [OPENSHIFT_UID, "0"], out
    caps = dict(re.findall(r"^(Cap\w+):\s+(\w+)$", out, re.M))
    assert caps == {"CapPrm": "0" * 16, "CapEff": "0" * 16, "CapBnd": "0" * 16}, out
    assert re.search(r"NoNewPrivs:\s+1", out), out
    for path in (PATHS["app"], PATHS["dagsterHome"]):
        assert f"touch: cannot touch '{path}/x': Read-only file system" in out, out
    assert "wrote-volumes" in lines and "linted" in lines, out
    # every domain's definitions load from the image as a code server loads them
    loaded = dict(line.split() for line in lines if re.fullmatch(r"[a-z_]+ \d+", line))
    assert set(loaded) == set(DOMAINS), out
    assert all(int(n) > 0 for n in loaded.values()), loaded
    assert {p.name for p in volumes[PATHS["meshHome"]].iterdir()} >= {"written"}


def dev_only_packages() -> set[str]:
    """The dev group's packages that no runtime dependency pulls in, from uv.lock: the closure
    of the project's dependencies against its dev group."""
    lock = tomllib.loads((PROJECT_DIR / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    project = packages["datamesh"]

    def closure(names) -> set[str]:
        seen, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += [d["name"] for d in packages[name].get("dependencies", [])]
        return seen

    runtime = closure(d["name"] for d in project.get("dependencies", []))
    dev = closure(d["name"] for d in project.get("dev-dependencies", {}).get("dev", []))
    return dev - runtime


def test_its_code_cannot_be_changed_even_on_a_writable_root(platform_image):
    """Without the chart's read-only root (plain `podman run`, another chart), the code still
    belongs to root: the arbitrary UID in group 0 cannot change it."""
    script = f"""
        for path in {PATHS["app"]}/mesh_assets/__init__.py {PATHS["app"]}/.venv/bin/dagster \\
                    {PATHS["app"]}/domains/fleet/products/planes.yaml; do
          echo x >> $path 2>/dev/null && echo "changed $path"
        done
        touch {PATHS["meshHome"]}/x && echo mesh-home-writable
    """
    args = ["run", "--rm", "--user", f"{OPENSHIFT_UID}:0", "--entrypoint", '["sh", "-c"]']
    out = image.podman(*args, platform_image, script).stdout
    assert out.split() == ["mesh-home-writable"], out


def test_holds_no_credentials_compilers_dev_dependencies_or_tests(platform_image):
    script = r"""
import importlib.metadata as md, json, os, shutil
app = os.environ["APP_DIR"]
files = []
for root, dirs, names in os.walk(app):
    dirs[:] = [d for d in dirs if not (root == app and d == ".venv")]
    files += [os.path.join(root, n) for n in names]
print(json.dumps({
    "env": dict(os.environ),
    "packages": sorted(d.metadata["Name"].lower() for d in md.distributions()),
    "compilers": [c for c in ("gcc", "cc", "c++", "g++", "clang", "make", "ld", "as") if shutil.which(c)],
    "dev_packages": sorted(
        name for name in os.listdir("/var/lib/dpkg/info")
        if name.split(":")[0].split(".")[0] in ("gcc", "cpp", "binutils", "make", "libc6-dev", "python3-dev")
    ),
    "files": files,
}))
"""
    found = json.loads(image.podman("run", "--rm", platform_image, "python", "-c", script).stdout)
    assert found["compilers"] == [] and found["dev_packages"] == []
    dev_only = dev_only_packages()
    assert {"pytest", "ruff", "import-linter", "playwright"} <= dev_only
    assert not dev_only & set(found["packages"]), dev_only & set(found["packages"])
    app = PATHS["app"]
    tests = [f for f in found["files"] if "/tests/" in f or re.search(r"/(test_[^/]*|conftest)\.py$", f)]
    assert tests == []
    for forbidden in (".git/", ".mesh/", "test-artifacts/", "bench/", ".env"):
        assert not [f for f in found["files"] if f.startswith(f"{app}/{forbidden}")], forbidden
    assert not [k for k in found["env"] if re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", k)], found["env"]
    # no credential in any text file of the app directory (what the build copied in)
    texts = [f for f in found["files"] if re.search(r"\.(py|ya?ml|json|sql|toml|md|txt|cfg|ini)$", f)]
    assert len(texts) > 100, texts
    names = " -o ".join(
        f"-name '*.{ext}'" for ext in ("yaml", "yml", "json", "sql", "toml", "cfg", "ini", "txt")
    )
    script = f"find {app} -path {app}/.venv -prune -o -type f -size -1048576c \\( {names} \\) -print0 | xargs -0 cat"
    text = image.podman("run", "--rm", "--entrypoint", '["sh", "-c"]', platform_image, script).stdout
    assert len(text) > 1_000_000  # every configuration file of the app directory, read (as mesh lint does)
    history = image.podman("history", "--no-trunc", platform_image).stdout
    inspected = image.podman("image", "inspect", platform_image).stdout
    for where, content in (("app directory", text), ("history", history), ("image config", inspected)):
        leaked = [p.pattern for p in SECRET_PATTERNS if p.search(content)]
        assert not leaked, f"{where}: text that looks like a credential ({leaked})"
    # the dbt manifests are prepared in the image (loading a code location does not parse dbt)
    for target in ("trino", "local"):
        assert f"{app}/dbt_project/target/{target}/manifest.json" in found["files"]


def test_a_rebuild_after_a_contract_change_reuses_the_dependency_layer(platform_image, tmp_path):
    context = tmp_path / "context"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_DIR,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = PROJECT_DIR / name
        if source.is_file():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / name)
    contract = context / "domains" / "reference" / "products" / "airlines.yaml"
    text = contract.read_text()
    assert "  purpose: Names of the airline carriers" in text
    contract.write_text(text.replace("  purpose: Names of", "  purpose: The names of", 1))
    before = image.layers(platform_image)
    started = time.monotonic()
    rebuilt = image.build(tag="contract-changed", context=context)
    try:
        after = image.layers(rebuilt.reference)
        seconds = time.monotonic() - started
    finally:
        image.podman("rmi", rebuilt.reference, check=False)
    assert len(after) == len(before)
    # every layer but the last (the app directory) is the same: the dependencies are reused
    assert after[:-1] == before[:-1]
    assert after[-1] != before[-1]
    (ARTIFACTS / "rebuild.json").write_text(json.dumps({"seconds_after_contract_change": round(seconds)}))
