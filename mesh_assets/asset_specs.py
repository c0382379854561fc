"""The Dagster face of a data product, derived from its contract and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from mesh_assets.contract.model import DataProduct


def asset_key(product: DataProduct) -> dg.AssetKey:
    return dg.AssetKey(product.asset_key_path)


def contract_column_schema(product: DataProduct) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.type_name,
                description=c.description,
                constraints=dg.TableColumnConstraints(
                    nullable=not c.required, unique=c.unique or product.primary_key == (c.name,)
                ),
                tags={"classification": c.classification} if c.classification else {},
            )
            for c in product.columns
        ]
    )


def owners(product: DataProduct) -> list[str]:
    return [product.owner if "@" in product.owner else f"team:{product.owner}"]


def product_tags(product: DataProduct) -> dict[str, str]:
    tags = {"mesh/status": product.status, "mesh/contract_version": product.version}
    classes = sorted({c.classification for c in product.columns if c.classification})
    for cls in classes:
        tags[f"classification/{cls}"] = ""
    for tag in product.tags:
        tags[tag] = ""
    return tags


def product_metadata(product: DataProduct) -> dict:
    return {
        "dagster/column_schema": contract_column_schema(product),
        "dagster/table_name": product.table_identifier,
        "mesh/contract": dg.MetadataValue.path(str(product.path)),
        "mesh/primary_key": ", ".join(product.primary_key),
    }


def asset_spec(product: DataProduct, *, kinds: set[str], deps=()) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=asset_key(product),
        description=product.description or None,
        group_name=product.domain,
        owners=owners(product),
        tags=product_tags(product),
        kinds=kinds,
        metadata=product_metadata(product),
        deps=deps,
    )


def dbt_pool(domain: str) -> str:
    """The Dagster concurrency pool of a domain's dbt steps: the models step commits every dbt
    model's table of the domain (one writer of those tables at a time), and the domain's source
    tests run in the same pool (they read what the domain's steps wrote)."""
    return f"mesh/{domain}/dbt"


def writer_pool(product: DataProduct) -> str:
    """The Dagster concurrency pool of the steps that write and publish ``product``'s table (the
    instance limits every pool to one step, ``settings.DAGSTER_CONCURRENCY_YAML``): its own for an
    ingested product, the domain's dbt pool for a product built by dbt."""
    return dbt_pool(product.domain) if product.transform == "dbt" else f"mesh/{product.table_identifier}"


@dataclass(frozen=True)
class StepChecks:
    """A product's contract checks as part of the step that writes the product: their specs, and
    ``evaluate(context, catalog)``, which yields the results of the selected checks and publishes
    the run's audit branch when every blocking one passed (``mesh_assets.quality.checks``)."""

    specs: Sequence[dg.AssetCheckSpec]
    evaluate: Callable[[dg.AssetExecutionContext, Any], Iterable[dg.AssetCheckResult]]
