"""The dbt project of the mesh: contracts -> dbt properties (sources of every product, model
properties and tests of dbt-built ones), the manifest prepared once per target (``mesh dbt
prepare``), and what the platform checks in it (ports between domains, models without a
contract). No dbt or dagster-dbt import: the CLI and every code location read this."""

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import certifi
import yaml
from pyiceberg import types as it

from mesh_assets.contract.model import DataProduct
from mesh_assets.contract.parser import contract_visibility
from mesh_assets.settings import (
    DBT_PROJECT_DIR,
    DOMAINS_DIR,
    MeshSettings,
    load_settings,
    trino_credentials,
    trino_settings,
)
from mesh_assets.workspace import (
    all_contract_files,
    contract_path,
    dbt_models_path,
    folders_with_products,
    load_domain_contracts,
)

PLUGIN_ALIAS = "mesh_iceberg"
GENERATED_YAML = "_mesh_products.yml"


def dbt_executable() -> str:
    return str(Path(sys.executable).parent / "dbt")


def manifest_path(target: str) -> Path:
    return DBT_PROJECT_DIR / "target" / target / "manifest.json"


def dbt_env(settings: MeshSettings) -> dict[str, str]:
    """Environment the dbt process needs (the profile reads these)."""
    return {
        "MESH_HOME": str(settings.home),
        "MESH_DBT_TARGET": settings.dbt_target,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def dbt_trino_env(settings: MeshSettings, domain: str) -> dict[str, str]:
    """How the ``trino`` target logs in for ``domain``'s dbt process: as the domain's service
    account (:func:`~mesh_assets.settings.trino_credentials`), with a password over HTTPS
    (``method: ldap`` in profiles.yml) verified with ``MESH_TRINO_CA_FILE`` (else the system's
    CAs). Empty on the local target. Holds the password: only for the dbt process's
    environment, never to print."""
    if settings.dbt_target != "trino":
        return {}
    user, password = trino_credentials(domain)
    if password is None:
        return {"MESH_TRINO_USER": user, "MESH_TRINO_AUTH": "none"}
    cert = trino_settings().ca_file or certifi.where()
    return {
        "MESH_TRINO_USER": user,
        "MESH_TRINO_AUTH": "ldap",
        "MESH_TRINO_PASSWORD": password,
        "MESH_TRINO_CERT": cert,
        # requests prefers this variable to the client's own `verify` (psf/requests#3829)
        "REQUESTS_CA_BUNDLE": cert,
    }


# --- contracts -> dbt YAML ---------------------------------------------------------------------


def contract_yaml(domain: str, products: Sequence[DataProduct]) -> dict[str, Any]:
    """The dbt source of a domain's products (other models read a product only through it) and
    the properties of its dbt-built products: descriptions, column types (the model contract,
    enforced on Trino; on DuckDB the plugin enforces the platform contract) and the contract's
    ``engine: dbt`` rules as ``data_tests``."""
    source = {
        "name": domain,
        "schema": domain,
        "description": f"Data products published by the {domain} domain (Iceberg tables).",
        "meta": {"plugin": PLUGIN_ALIAS},
        "tables": [table for p in products for table in _source_tables(p)],
    }
    models = [_model_properties(p) for p in products if p.transform == "dbt"]
    return {"version": 2, "sources": [source], **({"models": models} if models else {})}


def _dbt_tests_by_column(p: DataProduct) -> dict[str | None, list]:
    """The contract's ``engine: dbt`` rules as dbt ``data_tests``, by column (None: table)."""
    tests: dict[str | None, list] = {}
    for column, test in p.dbt_tests:
        ((name, args),) = test.items()
        args = dict(args or {})
        config = args.pop("config", None)
        entry = {**({"arguments": args} if args else {}), **({"config": config} if config else {})}
        tests.setdefault(column, []).append({name: entry} if entry else name)
    return tests


def _model_properties(p: DataProduct) -> dict[str, Any]:
    tests = _dbt_tests_by_column(p)
    model: dict[str, Any] = {
        "name": p.name,
        "description": p.description,
        "config": {
            "meta": {"mesh_product": p.identifier},
            "contract": {"enforced": "{{ target.type == 'trino' }}"},
        },
        "columns": [
            {
                "name": c.name,
                "description": c.description or "",
                "data_type": trino_type(c.type),
                **({"constraints": [{"type": "not_null"}]} if c.required else {}),
                **({"data_tests": tests[c.name]} if c.name in tests else {}),
            }
            for c in p.columns
        ],
    }
    if None in tests:
        model["data_tests"] = tests[None]
    return model


def trino_type(t) -> str:
    """The SQL type name of an Iceberg type in Trino (the engine where dbt contracts apply)."""

    if isinstance(t, it.DecimalType):
        return f"decimal({t.precision},{t.scale})"
    return {
        it.StringType: "varchar",
        it.BooleanType: "boolean",
        it.IntegerType: "integer",
        it.LongType: "bigint",
        it.FloatType: "real",
        it.DoubleType: "double",
        it.DateType: "date",
        it.TimeType: "time(6)",
        it.TimestampType: "timestamp(6)",
        it.TimestamptzType: "timestamp(6) with time zone",
        it.BinaryType: "varbinary",
        it.UUIDType: "uuid",
    }[type(t)]


def _source_tables(p: DataProduct) -> list[dict[str, Any]]:
    """``p.name`` reads the major-1 table; a newer major N is also ``p.name_vN``. Consumers
    move from one to the other when they are ready (see :mod:`mesh_assets.iceberg.schema`)."""
    # an ingested product's dbt rules are source tests (a dbt-built one's are model tests)
    tests = _dbt_tests_by_column(p) if p.transform != "dbt" else {}
    entry = {
        "name": p.name,
        "description": p.description,
        "columns": [
            {
                "name": c.name,
                "description": c.description or "",
                **({"data_tests": tests[c.name]} if c.name in tests else {}),
            }
            for c in p.columns
        ],
        **({"data_tests": tests[None]} if None in tests else {}),
    }
    if p.table_identifier == p.identifier:
        return [entry]
    versioned = p.table_identifier.split(".", 1)[1]
    meta = {"dagster": {"asset_key": p.asset_key_path}}
    return [
        {**entry, "meta": meta},
        {
            **entry,
            "name": versioned,
            "meta": meta,
            "description": f"{p.description} (contract major version {p.major_version})",
        },
    ]


def write_contract_yaml(domains_dir: Path = DOMAINS_DIR) -> list[Path]:
    written = []
    for domain_dir in folders_with_products(domains_dir):
        models_dir = dbt_models_path(domain_dir.name)
        models_dir.mkdir(parents=True, exist_ok=True)
        products = load_domain_contracts(domain_dir)
        path = models_dir / GENERATED_YAML
        text = (
            f"# Generated from domains/{domain_dir.name}/products/*.yaml by `mesh dbt prepare`. "
            "Do not edit.\n"
        ) + yaml.safe_dump(contract_yaml(domain_dir.name, products), sort_keys=False)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


# --- manifest ----------------------------------------------------------------------------------


def _newest_input_mtime() -> float:
    paths = [DBT_PROJECT_DIR / "dbt_project.yml", DBT_PROJECT_DIR / "profiles.yml"]
    for pattern in ("models/**/*", "macros/**/*", "tests/**/*"):
        paths += DBT_PROJECT_DIR.glob(pattern)
    paths += all_contract_files()
    # the code that turns contracts into dbt YAML
    package = Path(__file__).parent.parent
    paths += [Path(__file__), *(package / "contract").glob("*.py")]
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def prepare(settings: MeshSettings | None = None, *, force: bool = False) -> Path:
    """Generate the contract YAML and parse the project; returns the manifest path.

    A file lock keeps concurrent code locations from parsing the same project twice.
    """
    settings = settings or load_settings()
    target = settings.dbt_target
    manifest = manifest_path(target)
    manifest.parent.mkdir(parents=True, exist_ok=True)

    def fresh() -> bool:
        return (
            not force
            and manifest.exists()
            and manifest.stat().st_mtime >= _newest_input_mtime()
            and all((dbt_models_path(d.name) / GENERATED_YAML).exists() for d in folders_with_products())
        )

    if fresh():  # the common case at code-location load: no contract is read twice
        return manifest
    with open(manifest.parent / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_contract_yaml()
        if fresh():
            return manifest
        cmd = [
            dbt_executable(),
            "parse",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target",
            target,
            "--target-path",
            str(manifest.parent),
            "--quiet",
        ]
        result = subprocess.run(cmd, env={**os.environ, **dbt_env(settings)}, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"`dbt parse` failed for target {target}:\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
    return manifest


def _domain_of(props: Mapping[str, Any]) -> str:
    fqn = props.get("fqn") or []
    return fqn[1] if len(fqn) > 2 else props.get("schema", "default")


def asset_key_path(props: Mapping[str, Any]) -> list[str]:
    """The Dagster asset key of a dbt model or source: ``[domain, name]``; a source
    ``source('<domain>', '<product>')`` is the producing domain's product (or the key its
    generated properties declare: a product's newer major version ``p.name_vN`` is ``p``)."""
    meta = (props.get("config") or {}).get("meta") or props.get("meta") or {}
    declared = meta.get("dagster", {}).get("asset_key")
    if declared:
        return list(declared)
    if props["resource_type"] == "source":
        return [props["source_name"], props["name"]]
    return [_domain_of(props), props["name"]]


def domain_models(manifest: Mapping[str, Any], domain: str) -> list[str]:
    """Every dbt model of ``domain``, ephemeral ones included."""
    return [
        uid
        for uid, node in manifest.get("nodes", {}).items()
        if node["resource_type"] == "model" and _domain_of(node) == domain
    ]


def is_ephemeral(node: Mapping[str, Any]) -> bool:
    return (node.get("config") or {}).get("materialized") == "ephemeral"


def is_product_model(node: Mapping[str, Any]) -> bool:
    """A model built for a contract (the generated properties mark it ``meta.mesh_product``)."""
    return bool(((node.get("config") or {}).get("meta") or {}).get("mesh_product"))


def table_models(manifest: Mapping[str, Any], domain: str) -> list[str]:
    """The models of ``domain`` that are tables (and assets): all but the ephemeral ones."""
    return [uid for uid in domain_models(manifest, domain) if not is_ephemeral(manifest["nodes"][uid])]


class InternalModelError(ValueError):
    """A model without a contract would be a catalog table next to the products."""


def check_internal_models(manifest: Mapping[str, Any], domain: str) -> None:
    """Staging and intermediate models are not products: a model without a contract must be
    ephemeral, or it would be an Iceberg table of the domain that no contract describes."""
    tables = [manifest["nodes"][uid] for uid in table_models(manifest, domain)]
    problems = [
        f"{domain}.{n['name']} ({n['original_file_path']})" for n in tables if not is_product_model(n)
    ]
    if problems:
        raise InternalModelError(
            "dbt models without a data contract would be catalog tables: "
            + ", ".join(problems)
            + ". Make each one ephemeral "
            "(`{{ config(materialized='ephemeral') }}`) or give it a contract "
            f"(domains/{domain}/products/<model>.yaml, transform: dbt)."
        )


def tests_of(manifest: Mapping[str, Any], targets: set[str]) -> list[str]:
    """dbt tests attached to one of ``targets`` (model or source unique ids)."""
    out = []
    for uid, node in manifest.get("nodes", {}).items():
        if node["resource_type"] != "test":
            continue
        parents = node.get("depends_on", {}).get("nodes", [])
        attached = node.get("attached_node") or (parents[0] if len(parents) == 1 else None)
        if attached in targets:
            out.append(uid)
    return out


def check_description(test: Mapping[str, Any]) -> str:
    """How a dbt test's asset check is described."""
    kind = (test.get("test_metadata") or {}).get("name", "singular")
    severity = str((test.get("config") or {}).get("severity") or "error").lower()
    return test.get("description") or f"dbt {kind} test ({severity})"


class PortViolation(ValueError):
    """A domain reads another domain's internal product."""


def check_ports(
    manifest: Mapping[str, Any], domain: str | None = None, domains_dir: Path = DOMAINS_DIR
) -> None:
    """Every cross-domain source a model reads must be a public product of its domain."""

    problems = []
    for node in manifest.get("nodes", {}).values():
        if node["resource_type"] != "model" or (domain and _domain_of(node) != domain):
            continue
        for parent in node.get("depends_on", {}).get("nodes", []):
            source = manifest.get("sources", {}).get(parent)
            if source is None or source["source_name"] == _domain_of(node):
                continue
            path = contract_path(source["source_name"], source["name"], domains_dir)
            if path.exists() and contract_visibility(path) != "public":
                problems.append(
                    f"model {_domain_of(node)}.{node['name']} "
                    f"({node['original_file_path']}) reads {source['source_name']}."
                    f"{source['name']}, an internal product of domain "
                    f"{source['source_name']} (contract {path})"
                )
    if problems:
        raise PortViolation(
            "domains may only depend on other domains' public products: "
            + "; ".join(problems)
            + ". Ask the owning team to publish it "
            "(visibility: public) or read one of its public products."
        )


def dependency_order(domains: list[str]) -> list[str]:
    """``domains`` with every domain after the domains whose products its models read."""

    manifest = json.loads(prepare().read_text())
    needs: dict[str, set[str]] = {d: set() for d in domains}
    for node in manifest.get("nodes", {}).values():
        if node["resource_type"] != "model" or _domain_of(node) not in needs:
            continue
        for parent in node.get("depends_on", {}).get("nodes", []):
            source = manifest.get("sources", {}).get(parent)
            if source and source["source_name"] in needs and source["source_name"] != _domain_of(node):
                needs[_domain_of(node)].add(source["source_name"])
    ordered: list[str] = []
    while len(ordered) < len(domains):
        ready = [d for d in domains if d not in ordered and needs[d] <= set(ordered)]
        if not ready:
            raise SystemExit(
                f"mesh: domains depend on each other in a cycle: {sorted(set(domains) - set(ordered))}"
            )
        ordered += ready
    return ordered
