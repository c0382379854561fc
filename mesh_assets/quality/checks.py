"""Contract rules as Dagster asset checks, and the publish step of write-audit-publish.

Every rule of a product is evaluated in one pass (:mod:`.run`) over exactly the snapshot at the
head of the run's audit branch: in the step that wrote it for an ingested product, in a
multi-asset check of its own for a dbt model. When every blocking rule passed, the snapshot
is tagged ``checked-<run>`` / ``last-checked`` and the branch is published to main
(:mod:`mesh_assets.iceberg.wap`); otherwise main is unchanged. ``error`` rules are blocking
checks, ``warn`` rules report with severity WARN. Each run writes an HTML report.
"""

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg

from mesh_assets import engine
from mesh_assets.asset_specs import StepChecks, writer_pool
from mesh_assets.contract.expectations import SHRINK, is_pushdown, kind_of
from mesh_assets.iceberg.catalog import IcebergCatalog, snapshot_id_metadata
from mesh_assets.iceberg.wap import (
    audit_branch_name,
    branch_head,
    checked_tag_name,
    main_history,
    publish,
    tag_checked,
    tag_max_age_ms,
    wap_run_id,
)
from mesh_assets.ingest.quarantine import publish_quarantine, publish_stranded_quarantine
from mesh_assets.ingest.stream import stop as stop_stream
from mesh_assets.quality.report import write_report
from mesh_assets.quality.run import evaluate, evaluate_on_trino, register_references
from mesh_assets.settings import load_settings, pause_at

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from mesh_assets.contract.model import DataProduct


# --- Dagster asset checks ----------------------------------------------------------------------


def _against_main(rule, table):
    """A shrink rule compares with what consumers read now: main's row count joins its kwargs."""
    if rule.expectation != SHRINK:
        return rule
    main = table.current_snapshot()
    rows = int(main.summary.additional_properties.get("total-records", 0)) if main and main.summary else 0
    return dataclasses.replace(rule, kwargs={**rule.kwargs, "main_rows": rows})


def check_specs(product: "DataProduct") -> list:

    key = dg.AssetKey(product.asset_key_path)
    return [
        dg.AssetCheckSpec(
            name=rule.name,
            asset=key,
            blocking=rule.severity == "error",
            description=rule.description or f"{rule.expectation} {rule.kwargs}",
            metadata={
                "expectation": rule.expectation,
                "severity": rule.severity,
                "engine": "sql" if is_pushdown(rule) else "great_expectations",
            },
        )
        for rule in product.rules
    ]


def _refuse_if_branch_was_removed(
    context: dg.AssetCheckExecutionContext, key: dg.AssetKey, branch: str, table: "Table"
):
    """Fail when this run's data was written to ``branch`` and the branch is gone without that
    snapshot reaching main (maintenance removes the audit branches of runs no longer running):
    checking main instead would pass and leave that data silently unpublished. A step that
    published its own snapshot (a product without a blocking rule: ingestion at once, dbt after
    the model's dbt tests, see :func:`mesh_assets.iceberg.wap.publish_unless_audited`) left it
    on main."""
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    if materialization is None or materialization.metadata.get("wap/branch") != dg.MetadataValue.text(branch):
        return
    if materialization.metadata.get("wap/published") == dg.MetadataValue.bool(True):
        return
    written = materialization.metadata.get("iceberg/snapshot_id")
    if written is not None and int(written.value) in main_history(table):
        return
    raise dg.Failure(
        f"{'.'.join(key.path)}: the audit branch {branch} holding this run's unpublished data is gone "
        "(maintenance removes the audit branches of runs that are no longer running): nothing was "
        "published; materialize the product again instead of re-executing this run"
    )


def contract_checks(product: "DataProduct") -> dg.AssetChecksDefinition | None:
    """The contract's checks as a step of their own (:func:`evaluate_checks`), for a product
    written by another step: a dbt model. It holds the pool of the product's writer, since the
    publication at its end writes the table too; the pool is held per step, so two runs can
    still interleave between the write and this step (the publication then refuses the later
    one). An ingested product's checks run in its ingestion step instead (:func:`step_checks`)."""

    if not product.rules:
        return None

    @dg.multi_asset_check(
        specs=check_specs(product), name=f"check_{product.name}", can_subset=True, pool=writer_pool(product)
    )
    def _checks(context: dg.AssetCheckExecutionContext, catalog: IcebergCatalog):
        yield from evaluate_checks(product, context, catalog)

    return _checks


def step_checks(product: "DataProduct") -> StepChecks | None:
    """The contract's checks evaluated (and the audit branch published) at the end of the step
    that wrote ``product``: one step, so the product's pool is held from the write to the
    publication and concurrent runs of the product follow each other whole."""
    if not product.rules:
        return None
    return StepChecks(
        specs=check_specs(product),
        evaluate=lambda context, catalog: evaluate_checks(product, context, catalog),
    )


def evaluate_checks(
    product: "DataProduct",
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    catalog: IcebergCatalog,
) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of ``product``, evaluated together in one SQL pass (rules the SQL
    compiler does not support: through GX on pandas, same metadata) over the head of the run's
    audit branch (main when the run wrote none); when every blocking check passed, the branch
    is published to main and its snapshot tagged.

    ``error`` rules are blocking checks (a failure stops downstream assets); ``warn`` rules
    report with severity WARN. Each run writes an HTML validation report, linked from every
    check's metadata (``quality/report``).
    """
    key = dg.AssetKey(product.asset_key_path)
    selected = {k.name for k in context.selected_asset_check_keys}
    rules = [r for r in product.rules if r.name in selected]
    table = catalog.load_table(product.table_identifier)
    # Write-audit-publish: this run's new data waits on its audit branch; checks read
    # exactly that snapshot. Without a branch (checks re-run later) they read main.
    branch = audit_branch_name(wap_run_id(context.run))  # a re-execution: its root's branch
    if branch not in table.metadata.refs:
        # a re-execution of a run stopped between publishing the product and its quarantine
        # rows: those follow now, and the published product is checked on main
        if product.quarantine and publish_stranded_quarantine(catalog.catalog(), product, branch):
            context.log.info(
                f"{product.identifier}: this run had published the product; the rows it parked on "
                f"the quarantine's {branch} are published now (dropped if a newer run published them)"
            )
        else:
            _refuse_if_branch_was_removed(context, key, branch, table)
        branch = None
    snapshot_id = branch_head(table, branch)
    rules = [_against_main(rule, table) for rule in rules]
    if load_settings().engine == "trino":  # production: the suite runs where the data is
        results, ref_snapshots = evaluate_on_trino(catalog, product, rules, snapshot_id)
    else:
        con = engine.cursor()  # temporary views only
        try:
            relation = engine.register_table(con, table, "product", snapshot_id=snapshot_id)
            lookups, ref_snapshots = register_references(con, catalog, product, rules)
            results = evaluate(
                con, relation, rules, lookups=lookups, columns=[c.name for c in product.columns]
            )
        finally:
            con.close()
    results = [result.masked(product) for result in results]  # all that follows shows them
    all_blocking_passed = all(r.passed for r in results if r.rule.severity == "error")
    published = False
    if snapshot_id is not None and all_blocking_passed and len(rules) == len(product.rules):
        pause_at("before_publish", product.identifier)  # test hooks, see pause_at
        if branch is not None:  # tags move in the publishing commit, never without it
            publish(
                table,
                branch,
                run_id=context.run.run_id,
                tag_max_age_ms=tag_max_age_ms(product),
                checked_snapshot=snapshot_id,
            )
            published = True
            pause_at("after_publish", product.identifier)  # the quarantine's rows not yet
            if product.quarantine:
                publish_quarantine(catalog.catalog(), product, branch)
        else:
            tag_checked(table, snapshot_id, context.run.run_id, max_age_ms=tag_max_age_ms(product))
        context.log.info(
            f"{product.identifier}: snapshot {snapshot_id} passed every blocking check; tagged "
            f"{checked_tag_name(context.run.run_id)}" + ("; published to main" if published else "")
        )
    elif branch is not None:
        context.log.warning(
            f"{product.identifier}: snapshot {snapshot_id} stays on branch "
            f"{branch}, unpublished: main is unchanged"
        )
    stopped = None
    if (
        product.stream is not None
        and branch is not None
        and snapshot_id is not None
        and not all_blocking_passed
    ):
        # a stream's rejected batch is neither published nor skipped: the product stops
        failed = [r.rule.name for r in results if r.rule.severity == "error" and not r.passed]
        stopped = stop_stream(table, product, snapshot_id, branch, failed)
        context.log.error(stopped)
    report = None
    try:
        report = write_report(
            product,
            results,
            run_id=context.run.run_id,
            snapshot_id=snapshot_id,
            branch=branch,
            published=published,
            references=ref_snapshots,
        )
    except OSError as exc:  # a report is a convenience; the verdicts stand without it
        context.log.warning(f"{product.identifier}: validation report not written: {exc}")
    for result in results:
        metadata = result.metadata()
        if kind_of(result.rule.expectation) == "ref":
            ref = result.rule.kwargs["product"]
            metadata["reference/product"] = ref
            if ref in ref_snapshots:
                metadata["reference/snapshot_id"] = snapshot_id_metadata(ref_snapshots[ref])
        if report is not None:
            metadata["quality/report"] = dg.MetadataValue.path(str(report))
        if snapshot_id is not None:
            metadata["iceberg/snapshot_id"] = snapshot_id_metadata(snapshot_id)
        if branch is not None:
            metadata["wap/branch"] = branch
            metadata["wap/published"] = published
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=result.rule.name,
            passed=result.passed,
            severity=(
                dg.AssetCheckSeverity.ERROR if result.rule.severity == "error" else dg.AssetCheckSeverity.WARN
            ),
            metadata=metadata,
        )
    if stopped is not None:
        raise dg.Failure(stopped)
