"""Every governance rule has a failing and a passing fixture."""

import json
import shutil

import pytest
import yaml

from mesh_assets.dbt.project import prepare
from mesh_assets.governance import lint_project
from mesh_assets.settings import DOMAINS_DIR


@pytest.fixture
def project(tmp_path):
    """A small clean project: the reference and weather domains."""
    for domain in ("reference", "weather"):
        shutil.copytree(DOMAINS_DIR / domain, tmp_path / "domains" / domain)
    (tmp_path / "dbt_project" / "models" / "weather").mkdir(parents=True)
    (tmp_path / "workspace.yaml").write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"python_module": {"module_name": f"domains.{d}.definitions", "location_name": d}}
                    for d in ("reference", "weather")
                ]
            }
        )
    )
    return tmp_path


def _edit(path, change):
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _rules(project, manifest=None):
    return {v.rule for v in lint_project(project, manifest)}


def airlines(project):
    return project / "domains" / "reference" / "products" / "airlines.yaml"


def test_clean_project_passes(project):
    assert lint_project(project, json.loads(prepare().read_text())) == []


def test_the_repository_passes():
    from mesh_assets import cli

    assert cli.main(["lint"]) == 0


def test_mesh001_invalid_contract(project):
    _edit(airlines(project), lambda d: d["schema"][0]["properties"][1].update(physicalType="varchar2"))
    [v] = [v for v in lint_project(project) if v.rule == "MESH001"]
    assert "unknown type 'varchar2'" in v.message and v.line > 1


def test_mesh002_description(project):
    def strip(doc):
        doc["schema"][0].pop("description")
        doc.pop("description")

    _edit(airlines(project), strip)
    assert "MESH002" in _rules(project)


def test_mesh003_column_description(project):
    _edit(airlines(project), lambda d: d["schema"][0]["properties"][1].pop("description"))
    violation = next(v for v in lint_project(project) if v.rule == "MESH003")
    assert "column name" in violation.message
    assert airlines(project).read_text().splitlines()[violation.line - 1].strip() == "- name: name"


def test_mesh004_classification(project):
    _edit(airlines(project), lambda d: d["schema"][0]["properties"][1].pop("classification"))
    assert "MESH004" in _rules(project)


def test_mesh005_public_product_without_blocking_rule(project):
    def relax(doc):
        for prop in doc["schema"][0]["properties"]:
            prop["required"], prop["primaryKey"] = False, False
            for rule in prop.get("quality", []):
                rule["severity"] = "warn"
        for rule in doc["schema"][0]["quality"]:
            rule["severity"] = "warn"

    _edit(airlines(project), relax)
    assert {"MESH005", "MESH006"} <= _rules(project)


def test_mesh006_primary_key(project):
    _edit(airlines(project), lambda d: d["schema"][0]["properties"][0].update(primaryKey=False))
    assert "MESH006" in _rules(project)


def test_mesh007_naming(project):
    (project / "dbt_project" / "models" / "weather" / "DailyStats.sql").write_text("select 1")
    assert "MESH007" in _rules(project)


def test_mesh008_internal_product_used_across_domains(project):
    path = project / "domains" / "reference" / "products" / "airports.yaml"
    _edit(path, lambda d: d["customProperties"].append({"property": "visibility", "value": "internal"}))
    assert "MESH008" in _rules(project, json.loads(prepare().read_text()))


def test_mesh009_secret_in_config(project):
    (project / "domains" / "weather" / "extra.yaml").write_text("db:\n  password: hunter2hunter2\n")
    violation = next(v for v in lint_project(project) if v.rule == "MESH009")
    assert violation.line == 2
    (project / "domains" / "weather" / "extra.yaml").write_text(
        "db:\n  password: \"{{ env_var('DB_PASSWORD') }}\"\n  password_file: {env: DB_FILE}\n"
    )
    assert "MESH009" not in _rules(project)


def test_mesh010_workspace_lists_the_domains(project):
    (project / "workspace.yaml").write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "domains.reference.definitions",
                            "location_name": "reference",
                        }
                    },
                    {"python_module": {"module_name": "domains.ghost.definitions", "location_name": "ghost"}},
                ]
            }
        )
    )
    messages = [v.message for v in lint_project(project) if v.rule == "MESH010"]
    assert any("weather is not a code location" in m for m in messages)
    assert any("ghost has no domains/ghost/domain.yaml" in m for m in messages)
