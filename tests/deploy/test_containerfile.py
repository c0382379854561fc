"""The Containerfile, checked statically.

This machine (and CI) has no container engine, so the image is never built here: these tests
read the Containerfile's instructions and check what OpenShift needs: a numeric non-root USER,
DAGSTER_HOME and the app directory owned by group 0 with the owner's permissions (chgrp 0,
chmod g=u) for the arbitrary UID of restricted-v2, the dbt manifest prepared at build time
(`mesh dbt prepare`), no credential in the file or the build context, and paths that match the
chart's. What they cannot show: that the build succeeds and the image starts.
"""

from __future__ import annotations

import re

import pytest
import yaml

from mesh_assets.deploy import CHART_DIR
from mesh_assets.governance import SECRET_PATTERNS
from mesh_assets.settings import PROJECT_DIR

CONTAINERFILE = PROJECT_DIR / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def env_of(stage) -> dict[str, str]:
    env = {}
    for word, rest in stage:
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def run_text(stage) -> str:
    return "\n".join(rest for word, rest in stage if word == "RUN")


def test_runtime_user_is_numeric_and_not_root():
    runtime = stages()[-1]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]}: numeric, non-root"
    # and it is the last word on the matter: nothing after it switches back
    after = runtime[[w for w, _ in runtime].index("USER") :]
    assert not any(w == "USER" and r.split(":")[0] in ("0", "root") for w, r in after)


def test_dagster_home_and_app_dir_are_group_0_with_owner_permissions():
    runtime = stages()[-1]
    env = env_of(runtime)
    dagster_home, app = env["DAGSTER_HOME"], env["APP_DIR"]
    everything = "\n".join(f"{w} {r}" for stage in stages() for w, r in stage)
    for path in (dagster_home, app, env["MESH_HOME"]):
        chgrp = re.search(rf"chgrp -R 0 [^&;]*{re.escape(path)}(?=\s|$)", everything)
        chmod = re.search(rf"chmod -R g=u [^&;]*{re.escape(path)}(?=\s|$)", everything)
        assert chgrp and chmod, f"{path}: needs chgrp -R 0 and chmod -R g=u"
    # the app directory gets them in the build stage; COPY keeps them, group 0
    copies = [r for w, r in runtime if w == "COPY" and "--from=build" in r]
    assert any(f"{app} {app}" in r and "--chown=1001:0" in r for r in copies), copies


def test_dbt_manifest_is_prepared_at_build_time_for_the_production_engine():
    build = stages()[0]
    assert "mesh dbt prepare" in run_text(build)
    engines = dict(re.findall(r"(\w+)=\"([^\"]*)\"", " ".join(r for w, r in build if w == "ARG")))
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert values["mesh"]["engine"] in engines["MESH_ENGINES"].split()
    # the lock file decides the environment
    assert "uv sync --frozen --no-dev" in run_text(build)


def test_no_credentials_in_the_image():
    text = CONTAINERFILE.read_text()
    for number, line in enumerate(text.splitlines(), 1):
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(line), f"Containerfile:{number}: {line}"
    for word, rest in instructions():
        if word in ("ENV", "ARG"):
            for name in re.findall(r"(\w+)=", rest):
                assert not re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", name), f"{word} {name}"
    # nothing copied wholesale; local state and build outputs stay out of the context
    copies = [r for w, r in instructions() if w in ("COPY", "ADD")]
    assert not any(re.fullmatch(r"(--\S+ )*\. \S+", r) for r in copies), "COPY . copies everything"
    ignore = (PROJECT_DIR / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".mesh", "dbt_project/target", ".env*"):
        assert entry in ignore, entry


@pytest.mark.parametrize("key", ["dagsterHome", "app", "meshHome"])
def test_image_paths_match_the_chart(key):
    env = env_of(stages()[-1])
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["paths"]
    expected = {"dagsterHome": env["DAGSTER_HOME"], "app": env["APP_DIR"], "meshHome": env["MESH_HOME"]}
    assert values[key] == expected[key]
    assert env["PATH"].startswith(f"{env['APP_DIR']}/.venv/bin")  # `dagster` for the run Jobs
