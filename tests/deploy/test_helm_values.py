"""`mesh helm values`: the chart's domain list (helm/datamesh/domains.yaml) is generated from
domains/*/domain.yaml, and the committed file is in sync with the domains."""

from __future__ import annotations

import shutil

import pytest
import yaml

from mesh_assets import cli
from mesh_assets.deploy import (
    DOMAINS_FILE,
    DeployError,
    check_domains_file,
    domain_entries,
    render_domains_file,
)
from mesh_assets.settings import DOMAINS_DIR


def test_committed_domain_list_is_in_sync_with_domains():
    diff = check_domains_file()
    assert not diff, "helm/datamesh/domains.yaml is stale: run `mesh helm values`\n" + "\n".join(diff)


def test_mesh_helm_values_check_passes_on_the_repository(capsys):
    assert cli.main(["helm", "values", "--check"]) == 0
    assert "in sync with" in capsys.readouterr().out


def test_every_domain_folder_is_listed_with_its_module():
    listed = yaml.safe_load(DOMAINS_FILE.read_text())["domains"]
    folders = sorted(p.parent.name for p in DOMAINS_DIR.glob("*/domain.yaml"))
    assert [d["name"] for d in listed] == folders
    for entry in listed:
        assert entry["module"] == f"domains.{entry['name']}.definitions"
        assert (DOMAINS_DIR / entry["name"] / "definitions.py").exists()


@pytest.fixture
def domains_copy(tmp_path):
    target = tmp_path / "domains"
    for name in ("reference", "fleet"):
        shutil.copytree(DOMAINS_DIR / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_check_reports_a_new_domain_until_the_file_is_rewritten(domains_copy, tmp_path, monkeypatch, capsys):
    out = tmp_path / "domains.yaml"
    monkeypatch.setattr("mesh_assets.deploy.DOMAINS_DIR", domains_copy)
    assert cli.main(["helm", "values", "--check", "--output", str(out)]) == 1  # no file yet
    assert cli.main(["helm", "values", "--output", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert cli.main(["helm", "values", "--check", "--output", str(out)]) == 0
    # a team adds a domain (snake_case name: Kubernetes names get kebab-case)
    shutil.copytree(domains_copy / "fleet", domains_copy / "air_cargo")
    (domains_copy / "air_cargo" / "domain.yaml").write_text(
        "name: air_cargo\ndescription: Freight.\nowner: cargo-team\ntype: source-aligned\n"
    )
    capsys.readouterr()
    assert cli.main(["helm", "values", "--check", "--output", str(out)]) == 1
    captured = capsys.readouterr()
    assert "+- name: air_cargo" in captured.out and "is stale" in captured.err
    assert cli.main(["helm", "values", "--output", str(out)]) == 0
    entries = yaml.safe_load(out.read_text())["domains"]
    assert {"name": "air_cargo", "resourceName": "air-cargo"}.items() <= next(
        e for e in entries if e["name"] == "air_cargo"
    ).items()


def test_generation_is_deterministic_and_refuses_bad_domains(domains_copy):
    assert render_domains_file(domains_copy) == render_domains_file(domains_copy)
    (domains_copy / "fleet" / "definitions.py").unlink()
    with pytest.raises(DeployError, match="no definitions.py"):
        domain_entries(domains_copy)
    with pytest.raises(DeployError, match="no domains"):
        domain_entries(domains_copy / "nothing-here")
