"""Federated governance: the global rules every domain follows, checked by ``mesh lint``.

Each rule has an id, says what it wants and how to fix a violation; ``mesh lint`` prints one line
per violation (``file:line: RULE-ID message (fix: ...)``) and exits non-zero. ``make test``
runs it. The rules:

=======  ==================================================================================
MESH001  the contract loads: valid ODCS v3, known types and expectations
MESH002  every product has an owner team and a description
MESH003  every column has a description
MESH004  every column has a classification (public, internal, confidential, pii, ...)
MESH005  every public product has at least one blocking (severity error) quality rule
MESH006  every product declares a primary key
MESH007  names are lower_snake_case: domains, products, columns, dbt models
MESH008  no domain depends on another domain's internal product
MESH009  no secret in configuration files (credentials come from env vars and secrets)
MESH010  workspace.yaml lists exactly the domain folders
=======  ==================================================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from mesh_assets.contract.errors import ContractError
from mesh_assets.contract.expectations import SHRINK
from mesh_assets.contract.model import DataProduct
from mesh_assets.dbt.project import PortViolation, check_ports, prepare
from mesh_assets.settings import DOMAINS_DIR, PROJECT_DIR
from mesh_assets.workspace import (
    WORKSPACE_FILE,
    contract_files,
    domain_file,
    domain_folders,
    load_contract,
    workspace_domains,
)

SNAKE = re.compile(r"[a-z][a-z0-9_]*")
SECRET_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"eyJhbGciOi[A-Za-z0-9_-]{20,}"),
    # a literal value for a password/secret/token key (env_var(...) and {env: ...} are fine)
    re.compile(
        r"""(?i)\b(password|passwd|secret|secret_access_key|token|api_key)\b\s*[:=]\s*["']?(?!\s*["']?\s*(\{\{|\{env|\$\{|env_var|$))[^\s"'#]{4,}"""
    ),
]
CONFIG_GLOBS = (
    "domains/**/*.yaml",
    "dbt_project/*.yml",
    "dbt_project/**/*.yml",
    "workspace.yaml",
    "helm/**/*.yaml",
    "pyproject.toml",
)


@dataclass(frozen=True)
class Violation:
    file: Path
    line: int
    rule: str
    message: str
    fix: str

    def format(self, root: Path) -> str:
        try:
            shown = self.file.relative_to(root)
        except ValueError:
            shown = self.file
        return f"{shown}:{self.line}: {self.rule} {self.message} (fix: {self.fix})"


def _line(path: Path, pattern: str) -> int:
    """First line of ``path`` matching ``pattern`` (1 when absent)."""
    rx = re.compile(pattern)
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if rx.search(text):
            return number
    return 1


def _column_line(product: DataProduct, column: str) -> int:
    return _line(product.path, rf"^\s*-\s*name:\s*{re.escape(column)}\s*$")


def rule_owner_description(product: DataProduct) -> Iterator[Violation]:
    if not product.description:
        yield Violation(
            product.path,
            _line(product.path, r"^schema:"),
            "MESH002",
            f"product {product.identifier} has no description",
            "describe the table in schema[0].description",
        )


def rule_column_descriptions(product: DataProduct) -> Iterator[Violation]:
    for c in product.columns:
        if not c.description:
            yield Violation(
                product.path,
                _column_line(product, c.name),
                "MESH003",
                f"column {c.name} has no description",
                "add description:",
            )


def rule_classification(product: DataProduct) -> Iterator[Violation]:
    for c in product.columns:
        if not c.classification:
            yield Violation(
                product.path,
                _column_line(product, c.name),
                "MESH004",
                f"column {c.name} has no classification",
                "add classification: public | internal | confidential | pii",
            )


def rule_blocking_rule(product: DataProduct) -> Iterator[Violation]:
    declared = [r for r in product.rules if r.expectation != SHRINK]  # the platform's own does not count
    if product.visibility == "public" and not any(r.severity == "error" for r in declared):
        yield Violation(
            product.path,
            _line(product.path, r"^\s*quality:|^schema:"),
            "MESH005",
            f"public product {product.identifier} has no blocking quality rule",
            "add a rule with severity error (the default), or a required column",
        )


def rule_primary_key(product: DataProduct) -> Iterator[Violation]:
    if not product.primary_key:
        yield Violation(
            product.path,
            _line(product.path, r"^\s*properties:"),
            "MESH006",
            f"product {product.identifier} declares no primary key",
            "set primaryKey: true (and primaryKeyPosition) on the key column(s)",
        )


PRODUCT_RULES: list[Callable[[DataProduct], Iterator[Violation]]] = [
    rule_owner_description,
    rule_column_descriptions,
    rule_classification,
    rule_blocking_rule,
    rule_primary_key,
]


def lint_project(root: Path, manifest: dict | None = None) -> list[Violation]:
    """Every violation of the rules in the project at ``root``."""

    found: list[Violation] = []
    domains_dir = root / DOMAINS_DIR.relative_to(PROJECT_DIR)
    folders = [p.name for p in domain_folders(domains_dir)]
    workspace = root / WORKSPACE_FILE.relative_to(PROJECT_DIR)
    listed = workspace_domains(workspace)
    for name in sorted(set(folders) - set(listed)):
        found.append(
            Violation(
                workspace,
                1,
                "MESH010",
                f"domain {name} is not a code location",
                f"add a python_module entry with location_name {name}",
            )
        )
    for name in sorted(set(listed) - set(folders)):
        found.append(
            Violation(
                workspace,
                _line(workspace, rf"location_name:\s*{name}\b"),
                "MESH010",
                f"location {name} has no domains/{name}/domain.yaml",
                "remove the entry or create the domain (mesh new domain)",
            )
        )
    for name in folders:
        if not SNAKE.fullmatch(name):
            found.append(
                Violation(
                    domain_file(domains_dir / name),
                    1,
                    "MESH007",
                    f"domain name {name} is not lower_snake_case",
                    "rename it",
                )
            )
        meta = yaml.safe_load((domain_file(domains_dir / name)).read_text()) or {}
        if not meta.get("owner") or not (meta.get("description") or "").strip():
            found.append(
                Violation(
                    domain_file(domains_dir / name),
                    1,
                    "MESH002",
                    f"domain {name} needs an owner and a description",
                    "set owner: and description: in domain.yaml",
                )
            )
        for path in contract_files(domains_dir / name):
            try:
                product = load_contract(path, domain=name)
            except ContractError as exc:
                column = r"^\S"
                if exc.column:
                    column = f"name:\\s*{re.escape(exc.column)}\\s*$"
                elif exc.key:  # a setting (source file, settleSeconds): the line that sets it
                    column = rf"(^|[\s{{,]){re.escape(exc.key)}\s*:"
                found.append(
                    Violation(
                        path,
                        _line(path, column),
                        "MESH001",
                        str(exc),
                        "make the contract valid (see the message)",
                    )
                )
                continue
            for rule in PRODUCT_RULES:
                found += rule(product)
    for model in sorted((root / "dbt_project" / "models").glob("**/*.sql")):
        if not SNAKE.fullmatch(model.stem):
            found.append(
                Violation(
                    model, 1, "MESH007", f"dbt model {model.stem} is not lower_snake_case", "rename the file"
                )
            )
    if manifest is not None:
        try:
            check_ports(manifest, domains_dir=domains_dir)
        except PortViolation as exc:
            found.append(
                Violation(
                    root / "dbt_project",
                    1,
                    "MESH008",
                    str(exc),
                    "read a public product, or ask its owner to publish it",
                )
            )
    for pattern in CONFIG_GLOBS:
        for path in sorted(root.glob(pattern)):
            for number, text in enumerate(path.read_text().splitlines(), start=1):
                if any(rx.search(text) for rx in SECRET_PATTERNS):
                    found.append(
                        Violation(
                            path,
                            number,
                            "MESH009",
                            "looks like a credential written in a configuration file",
                            "read it from an env var or a mounted secret file",
                        )
                    )
    return sorted(set(found), key=lambda v: (str(v.file), v.line, v.rule))


def lint_repository() -> list[Violation]:

    return lint_project(PROJECT_DIR, json.loads(prepare().read_text()))


# --- The rules as a reference (docs/governance.md is generated from this: `mesh lint --docs`) ---


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    checks: str  # what is examined, and where
    why: str
    fix: str


RULES: tuple[Rule, ...] = (
    Rule(
        "MESH001",
        "The contract loads",
        "Every `domains/<domain>/products/*.yaml`: valid against the ODCS v3 JSON Schema; "
        "`domain` and `dataProduct` match the folder and the file name; one schema object; "
        "known types; an owner (`team.name`); exactly one of `source` or `transform: dbt`; a "
        "`source.file` relative to the landing folder that stays inside it (no absolute path, "
        "`..`, hidden, `.part`/`.tmp`/`.done` name) and valid `settleSeconds`/`timezone`; "
        "known Great Expectations expectations and kwargs, on existing columns. Product and "
        "column names that are not lower_snake_case are reported here, by the contract loader.",
        "A contract that does not load cannot become an asset: definitions load would fail for "
        "the whole code location.",
        "Make the contract valid; the message names the file, the column or rule and the problem.",
    ),
    Rule(
        "MESH002",
        "Owner and description",
        "Each product's table description (`schema[0].description`); each domain's "
        "`domain.yaml` `owner` and `description`.",
        "Consumers must know what a product is and whom to ask.",
        "Describe the table in `schema[0].description`; set `owner:` and `description:` in `domain.yaml`.",
    ),
    Rule(
        "MESH003",
        "Every column is described",
        "Each column's `description` in every contract.",
        "The column schema is the product's interface; it is shown in the Dagster UI and the catalog.",
        "Add `description:` to the column.",
    ),
    Rule(
        "MESH004",
        "Every column is classified",
        "Each column's `classification` in every contract.",
        "Classification (public, internal, confidential, pii, ...) is what access and handling "
        "decisions are made from.",
        "Add `classification: public | internal | confidential | pii`.",
    ),
    Rule(
        "MESH005",
        "Public products have a blocking quality rule",
        "Every product with `visibility: public` (the default).",
        "A public product is consumed by other domains: at least one check must be able to stop "
        "bad data before it is published (write-audit-publish).",
        "Add a quality rule with `severity: error` (the default), or make a column `required` "
        "(a not-null check).",
    ),
    Rule(
        "MESH006",
        "A primary key",
        "Every contract declares `primaryKey: true` on at least one column.",
        "The key becomes the Iceberg identifier fields and a uniqueness check.",
        "Set `primaryKey: true` (and `primaryKeyPosition`) on the key column(s).",
    ),
    Rule(
        "MESH007",
        "lower_snake_case names",
        "Domain folder names and dbt model file names (`dbt_project/models/**/*.sql`).",
        "Names become Iceberg namespaces and tables, Dagster asset keys and SQL identifiers.",
        "Rename the folder or the file.",
    ),
    Rule(
        "MESH008",
        "No use of another domain's internal product",
        "Every dbt model's sources in the dbt manifest: a source of another domain must be a "
        "product with `visibility: public`.",
        "An internal product is free to change without notice; only public products are a "
        "domain's published interface.",
        "Read a public product, or ask the owning team to publish it (`visibility: public`).",
    ),
    Rule(
        "MESH009",
        "No secret in configuration files",
        "`domains/**/*.yaml`, `dbt_project/**/*.yml`, `workspace.yaml`, `helm/**/*.yaml`, "
        "`pyproject.toml`: AWS access key ids, private keys, JWTs, and literal values of "
        "password/secret/token/api_key keys (`{{ env_var(...) }}`, `{env: ...}` and `${...}` "
        "references are fine).",
        "Credentials come from environment variables, `*_FILE` files and Kubernetes Secrets, "
        "never from the repository.",
        "Read the value from an environment variable or a mounted secret file.",
    ),
    Rule(
        "MESH010",
        "workspace.yaml lists exactly the domains",
        "Every `domains/<name>/domain.yaml` has a `workspace.yaml` entry with `location_name: "
        "<name>`, and every entry has a domain folder.",
        "One code location per domain: a domain missing from the workspace is never loaded by Dagster.",
        "Add the `python_module` entry (`mesh new domain` does), or remove the stale one.",
    ),
)


def rules_markdown() -> str:
    """docs/governance.md: the rules reference (``mesh lint --docs``)."""
    lines = [
        "# Governance rules",
        "",
        "<!-- Generated from mesh_assets/governance.py by `mesh lint --docs`; do not edit. -->",
        "",
        "The federated rules every domain follows. `mesh lint` checks them all (and `make test` "
        "runs it); each violation is printed as",
        "",
        "```",
        "file:line: RULE-ID message (fix: what to do)",
        "```",
        "",
        "and the command exits with status 1 when there is at least one.",
        "",
        "| rule | wants |",
        "|---|---|",
        *(f"| [{r.id}](#{r.id.lower()}) | {r.title} |" for r in RULES),
    ]
    for r in RULES:
        lines += [
            "",
            f"## {r.id}",
            "",
            f"**{r.title}.**",
            "",
            f"- Checks: {r.checks}",
            f"- Why: {r.why}",
            f"- Fix: {r.fix}",
        ]
    return "\n".join(lines) + "\n"
