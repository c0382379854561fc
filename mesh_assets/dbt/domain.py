"""What a domain's code location gets from dbt: its models as dagster-dbt ``@dbt_assets``
(:mod:`mesh_assets.dbt.assets`), the dbt tests on its own products (source tests) as asset
checks, and the ``dbt`` resource.

dagster-dbt imports dbt-core and its adapters when it is imported (about 2.3 s on top of a
location's load: 4.6 s against 2.3 s, ``make bench``). This module does not import it: it builds the
source-test checks from the prepared manifest itself (the keys, blocking and descriptions
dagster-dbt gives dbt tests) and imports dagster-dbt only for a domain that has dbt models, or
in a step that runs dbt. A domain without models (fleet) and the ``mesh`` CLI never load dbt.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from mesh_assets.asset_specs import dbt_pool
from mesh_assets.contract.model import DataProduct
from mesh_assets.dbt.project import asset_key_path, check_description, domain_models, prepare, tests_of
from mesh_assets.settings import MeshSettings

UNIQUE_ID_KEY = "dagster_dbt/unique_id"  # dagster-dbt's metadata key of a node's unique_id


def dbt_domain_assets(domain: str, products: Sequence[DataProduct], settings: MeshSettings) -> list:
    """The dbt models of ``domain`` as assets, and its dbt source tests as checks (empty
    without either)."""
    manifest = json.loads(prepare(settings).read_text())
    out: list = []
    if domain_models(manifest, domain):
        # Lazy import of a heavy library: dagster-dbt (and dbt-core) only for a domain with
        # dbt models (see the module docstring).
        from mesh_assets.dbt.assets import dbt_model_assets  # noqa: PLC0415  dagster-dbt (2.4 s)

        out += dbt_model_assets(domain, products, settings, manifest)
    checks = source_test_checks(domain, manifest, settings)
    return out + ([checks] if checks is not None else [])


def source_test_check_spec(manifest: Mapping[str, Any], test_id: str) -> dg.AssetCheckSpec:
    """The asset check of a dbt test on a source: named after the test, on the source's
    product, blocking unless its severity is warn, as dagster-dbt makes a test's check."""
    test = manifest["nodes"][test_id]
    parents = test.get("depends_on", {}).get("nodes", [])
    attached = test.get("attached_node") or parents[0]
    nodes = {**manifest.get("sources", {}), **manifest.get("nodes", {})}
    key = dg.AssetKey(asset_key_path(nodes[attached]))
    others = {dg.AssetKey(asset_key_path(nodes[p])) for p in parents if p != attached} - {key}
    severity = str((test.get("config") or {}).get("severity") or "error").lower()
    return dg.AssetCheckSpec(
        name=test["name"],
        asset=key,
        blocking=severity == "error",
        additional_deps=sorted(others, key=lambda k: k.path),
        description=check_description(test),
        metadata={UNIQUE_ID_KEY: test_id},
    )


def source_test_checks(
    domain: str, manifest: Mapping[str, Any], settings: MeshSettings
) -> dg.AssetChecksDefinition | None:
    """dbt tests declared on the domain's own sources (its products: the contract's
    ``engine: dbt`` rules of an ingested product), run as checks of those products."""
    sources = {uid for uid, s in manifest.get("sources", {}).items() if s["source_name"] == domain}
    specs = {}
    for test_id in sorted(tests_of(manifest, sources)):
        spec = source_test_check_spec(manifest, test_id)
        specs[spec.key] = (spec, test_id)
    if not specs:
        return None

    @dg.multi_asset_check(
        specs=[s for s, _ in specs.values()],
        name=f"{domain}_dbt_source_tests",
        can_subset=True,
        required_resource_keys={"dbt"},
        pool=dbt_pool(domain),  # one dbt step of the domain at a time
    )
    def _source_tests(context: dg.AssetCheckExecutionContext):
        # Lazy import of a heavy library: dagster-dbt, in the step that runs dbt only
        from mesh_assets.dbt.assets import source_test_results  # noqa: PLC0415  dagster-dbt (2.4 s)

        chosen = [specs[k][1] for k in context.selected_asset_check_keys]
        yield from source_test_results(context, context.resources.dbt, domain, manifest, chosen, settings)

    return _source_tests


def dbt_resource(settings: MeshSettings) -> dg.ResourceDefinition:
    """The ``dbt`` resource: dagster-dbt's ``DbtCliResource`` (the platform's
    :class:`~mesh_assets.dbt.runner.MeshDbtCli`) on ``dbt_project/`` with the target of the
    current mode, made when a step first uses it."""

    def make(_context) -> Any:
        # Lazy import of a heavy library: dagster-dbt, in a step that runs dbt only
        from mesh_assets.dbt.runner import mesh_dbt_cli  # noqa: PLC0415  dagster-dbt (2.4 s)

        return mesh_dbt_cli(settings)

    return dg.ResourceDefinition(
        resource_fn=make,
        description=f"dbt CLI (dagster-dbt DbtCliResource): dbt_project/, target {settings.dbt_target}",
    )
