"""Self-service scaffolding: a new domain (a complete code location) or a new data product.

``mesh new domain NAME`` writes ``domains/NAME/`` (package, ``domain.yaml``, ``definitions.py``,
a sample contract with sample data so the domain materializes at once), the dbt folder
``dbt_project/models/NAME/``, a test, and registers the code location in ``workspace.yaml``.
``mesh new product DOMAIN NAME [--dbt]`` adds a contract (and, with ``--dbt``, its model).
Existing files are never overwritten.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mesh_assets.deploy import write_domains_file

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ScaffoldError(ValueError):
    pass


def _write(path: Path, text: str) -> Path:
    if path.exists():
        raise ScaffoldError(f"{path} already exists: not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise ScaffoldError(f"{kind} name '{name}' must be lower_snake_case (letters, digits, _)")


def contract_text(domain: str, product: str, owner: str, *, dbt: bool) -> str:
    source = (
        "  - property: transform\n    value: dbt\n"
        if dbt
        else f"  - property: source\n    value: {{format: csv, file: {product}.csv, "
        f'demoData: "domains.{domain}:sample_data/{product}.csv"}}\n'
    )
    return f"""apiVersion: v3.1.0
kind: DataContract
id: urn:datamesh:{domain}:{product}
version: 1.0.0
status: draft
name: {product.replace("_", " ").title()}
domain: {domain}
dataProduct: {product}
description:
  purpose: Say what this product is for and who should use it (edit me).
team:
  name: {owner}
schema:
  - name: {product}
    physicalType: table
    description: One row per {product} record.
    properties:
      - name: id
        logicalType: string
        physicalType: string
        required: true
        primaryKey: true
        primaryKeyPosition: 1
        classification: internal
        description: Identifier of the record.
      - name: value
        logicalType: number
        physicalType: double
        classification: internal
        description: A measured value.
        quality:
          - type: custom
            engine: great-expectations
            implementation:
              type: expect_column_values_to_be_between
              kwargs: {{min_value: 0}}
    quality:
      - type: library
        metric: rowCount
        mustBeGreaterThan: 0
customProperties:
{source}  - property: visibility
    value: public
"""


def new_product(project_dir: Path, domain: str, product: str, *, dbt: bool = False) -> list[Path]:
    _check_name("product", product)
    domain_dir = project_dir / "domains" / domain
    if not (domain_dir / "domain.yaml").exists():
        raise ScaffoldError(f"no domain {domain} (create it with `mesh new domain {domain}`)")

    owner = yaml.safe_load((domain_dir / "domain.yaml").read_text())["owner"]
    written = [
        _write(domain_dir / "products" / f"{product}.yaml", contract_text(domain, product, owner, dbt=dbt))
    ]
    if dbt:
        written.append(
            _write(
                project_dir / "dbt_project" / "models" / domain / f"{product}.sql",
                f"-- {product}: replace with the product's logic. Read other products with\n"
                f"-- {{{{ source('<domain>', '<product>') }}}}.\n"
                "select 'a' as id, cast(1.0 as double) as value\n",
            )
        )
    else:
        written.append(
            _write(domain_dir / "sample_data" / f"{product}.csv", "id,value\na,1.5\nb,2.0\nc,0.25\n")
        )
    return written


def new_domain(
    project_dir: Path, name: str, *, owner: str | None = None, domain_type: str = "source-aligned"
) -> list[Path]:
    _check_name("domain", name)
    domain_dir = project_dir / "domains" / name
    if domain_dir.exists():
        raise ScaffoldError(f"{domain_dir} already exists")
    owner = owner or f"{name.replace('_', '-')}-team"
    written = [
        _write(domain_dir / "__init__.py", ""),
        _write(
            domain_dir / "domain.yaml",
            f"name: {name}\ndescription: >\n  What the {name} domain owns (edit me).\n"
            f"owner: {owner}\ntype: {domain_type}\n",
        ),
        _write(
            domain_dir / "definitions.py",
            f'"""Code location of the {name} domain."""\n\nfrom mesh_assets import '
            "build_domain\n\ndefs = build_domain(__file__)\n",
        ),
        _write(project_dir / "dbt_project" / "models" / name / ".gitkeep", ""),
        _write(
            project_dir / "tests" / "domains" / f"test_{name}.py",
            f'''"""The {name} domain loads and its contracts hold."""

from mesh_assets.definitions import build_domain, load_domain
from mesh_assets.settings import DOMAINS_DIR


def test_{name}_definitions_load(mesh_home):
    domain = load_domain(DOMAINS_DIR / "{name}")
    defs = build_domain(DOMAINS_DIR / "{name}")
    keys = {{tuple(k.path) for k in defs.resolve_asset_graph().materializable_asset_keys}}
    assert {{("{name}", p.name) for p in domain.products}} <= keys
''',
        ),
    ]
    written += new_product(project_dir, name, "example")
    workspace = project_dir / "workspace.yaml"
    text = workspace.read_text()
    if not text.endswith("\n"):
        text += "\n"
    workspace.write_text(
        text + f"  - python_module:\n      module_name: domains.{name}.definitions\n"
        f"      location_name: {name}\n"
    )
    written.append(workspace)
    # the Helm chart serves one code location per domain: keep its list in sync

    chart_domains = project_dir / "helm" / "datamesh" / "domains.yaml"
    if chart_domains.exists():
        write_domains_file(chart_domains, project_dir / "domains")
        written.append(chart_domains)
    return written
