"""Quality rules of a contract, in Great Expectations' vocabulary.

Rules come from the contract in three ways, all ending as :class:`QualityRule`:

* structure: ``required`` columns -> ``expect_column_values_to_not_be_null``; a primary key ->
  ``expect_column_values_to_be_unique`` (or ``expect_compound_columns_to_be_unique``); a
  full-refresh ingested product -> ``expect_table_row_count_to_not_shrink`` (no sudden drop
  from main's row count: a cut-off file must not replace the table; ``maxShrinkPercent``);
* ODCS ``library`` metrics: ``nullValues``, ``duplicateValues``, ``rowCount``,
  ``invalidValues`` (``arguments.validValues`` or ``arguments.pattern``);
* ODCS ``custom`` rules with ``engine: great-expectations`` and an ``implementation`` holding
  the expectation ``type`` and ``kwargs``, exactly as a GX suite would.

``engine: dbt`` rules become dbt tests of the product's model or source instead.
Unknown expectations and kwargs fail here, without importing GX (the vocabulary is
:mod:`mesh_assets.contract.expectations`).
"""

import datetime as dt
from typing import TYPE_CHECKING, Any

import yaml

from mesh_assets.contract.errors import ContractError
from mesh_assets.contract.expectations import (
    EXPECTATIONS,
    NOT_ON_PANDAS,
    PLATFORM_EXPECTATIONS,
    SHRINK,
    gx_kwargs,
    gx_version,
    max_age,
)
from mesh_assets.contract.model import QualityRule

if TYPE_CHECKING:
    from mesh_assets.contract.model import DataProduct

SEVERITIES = {"error": "error", "warn": "warn", "warning": "warn", "info": "warn"}
_NAME_PREFIXES = ("expect_column_values_to_", "expect_column_", "expect_table_", "expect_")
_TIME_TYPES = ("date", "timestamp", "timestamptz")


def short_name(expectation: str) -> str:
    """The check-name stem: ``not_null``, ``fresh``; GX-only ones lose their ``expect_`` prefix."""
    if expectation in EXPECTATIONS:
        return EXPECTATIONS[expectation][0]
    for prefix in _NAME_PREFIXES:
        if expectation.startswith(prefix):
            return expectation[len(prefix) :]
    return expectation


def _allowed_kwargs(
    product: "DataProduct", expectation: str, where: str, col: str | None
) -> tuple[tuple[str, ...], set[str]]:
    """(required, allowed) kwargs; unknown expectations fail here, without importing GX."""

    if expectation in PLATFORM_EXPECTATIONS:
        return EXPECTATIONS[expectation][1], set(PLATFORM_EXPECTATIONS[expectation])
    spec = gx_kwargs(expectation)
    if spec is None:
        raise ContractError(
            product.path,
            f"{where}: unknown expectation '{expectation}': neither "
            f"the SQL compiler nor Great Expectations {gx_version()} knows it",
            product=product.name,
            column=col,
            hint=f"SQL pushdown: {', '.join(sorted(EXPECTATIONS))}; any other GX "
            "core expectation runs through GX on pandas",
        )
    if expectation in NOT_ON_PANDAS:
        raise ContractError(
            product.path,
            f"{where}: {expectation} cannot run on this platform: {NOT_ON_PANDAS[expectation]}",
            product=product.name,
            column=col,
            hint="use a pushdown expectation, or a dbt test (engine: dbt)",
        )
    required, optional = spec
    return required, set(required) | set(optional)


def _rule(
    product: "DataProduct",
    expectation: str,
    kwargs: dict,
    *,
    severity: str | None,
    name: str | None = None,
    description: str | None = None,
) -> QualityRule:
    col = kwargs.get("column")
    where = f"quality rule '{name}' ({expectation})" if name else f"quality rule {expectation}"
    required, allowed = _allowed_kwargs(product, expectation, where, col)
    for arg in required:
        if arg not in kwargs:
            raise ContractError(
                product.path,
                f"{where}: expectation {expectation} needs kwarg '{arg}'",
                product=product.name,
                column=col,
            )
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ContractError(
            product.path,
            f"{where}: {expectation} has no kwarg(s) {', '.join(unknown)}",
            product=product.name,
            column=col,
            hint=f"it takes {', '.join(sorted(allowed)) or 'none'}",
        )
    declared = {x.name for x in product.columns}
    named = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
    for c in named + list(kwargs.get("column_list") or []):
        if c not in declared:
            raise ContractError(
                product.path,
                f"{where}: refers to a column the contract does not declare",
                product=product.name,
                column=str(c),
            )
    if expectation == "expect_column_values_to_be_fresh":
        if str(product.column(col).type) not in _TIME_TYPES:
            raise ContractError(
                product.path,
                f"{where}: freshness needs a date or timestamp column, not {product.column(col).type}",
                product=product.name,
                column=col,
            )
        try:
            if max_age(kwargs) <= dt.timedelta(0):
                raise ValueError
        except (TypeError, ValueError):
            raise ContractError(
                product.path,
                f"{where}: max_age must be a positive duration",
                product=product.name,
                column=col,
                hint="e.g. max_age: {hours: 24} or max_age: 24h",
            ) from None
    if expectation == "expect_column_values_to_be_in_other_product":
        target = str(kwargs["product"]).split(".")
        if len(target) != 2 or not all(target):
            raise ContractError(
                product.path,
                f"{where}: product '{kwargs['product']}' must be 'domain.product'",
                product=product.name,
                column=col,
            )
    sev = SEVERITIES.get((severity or "error").lower())
    if sev is None:
        raise ContractError(
            product.path,
            f"unknown severity '{severity}'",
            product=product.name,
            column=col,
            hint="use 'error' (blocking) or 'warn'",
        )
    if name is None:
        suffix = "_".join(str(c) for c in named + list(kwargs.get("column_list") or []))
        name = f"{short_name(expectation)}_{suffix}" if suffix else short_name(expectation)
    return QualityRule(
        name=name, expectation=expectation, kwargs=dict(kwargs), severity=sev, description=description
    )


def _bounds(q: dict) -> dict:
    if q.get("mustBeBetween"):
        lo, hi = q["mustBeBetween"]
        return {"min_value": lo, "max_value": hi}
    out: dict[str, Any] = {}
    if q.get("mustBeGreaterOrEqualTo") is not None:
        out["min_value"] = q["mustBeGreaterOrEqualTo"]
    if q.get("mustBeGreaterThan") is not None:
        out["min_value"], out["strict_min"] = q["mustBeGreaterThan"], True
    if q.get("mustBeLessOrEqualTo") is not None:
        out["max_value"] = q["mustBeLessOrEqualTo"]
    if q.get("mustBeLessThan") is not None:
        out["max_value"], out["strict_max"] = q["mustBeLessThan"], True
    if q.get("mustBe") is not None:
        out["min_value"] = out["max_value"] = q["mustBe"]
    return out


def _from_odcs(product: "DataProduct", q: dict, column: str | None) -> QualityRule | None:
    kind = q.get("type") or ("library" if q.get("metric") or q.get("rule") else None)
    severity, name, desc = q.get("severity"), q.get("name"), q.get("description")
    if kind == "text":
        return None
    if kind == "custom":
        engine = (q.get("engine") or "").lower().replace("_", "-")
        if engine == "dbt":  # run by dbt itself: see dbt_tests_from_contract
            return None
        if engine not in ("great-expectations", "greatexpectations"):
            raise ContractError(
                product.path,
                f"custom quality engine '{q.get('engine')}' is not supported",
                product=product.name,
                column=column,
                hint="use engine: great-expectations, or dbt for dbt tests",
            )
        impl = q.get("implementation")
        if isinstance(impl, str):
            impl = yaml.safe_load(impl)
        if not isinstance(impl, dict) or not (impl.get("type") or impl.get("expectation_type")):
            raise ContractError(
                product.path,
                "a great-expectations rule needs implementation {type: expect_..., kwargs: {...}}",
                product=product.name,
                column=column,
            )
        kwargs = dict(impl.get("kwargs") or {})
        if column and "column" not in kwargs and "column_list" not in kwargs:
            kwargs["column"] = column
        return _rule(
            product,
            impl.get("type") or impl["expectation_type"],
            kwargs,
            severity=severity,
            name=name,
            description=desc,
        )
    if kind == "library":
        metric = q.get("metric") or q.get("rule")
        args = q.get("arguments") or {}
        if metric == "rowCount":
            return _rule(
                product,
                "expect_table_row_count_to_be_between",
                _bounds(q),
                severity=severity,
                name=name,
                description=desc,
            )
        if column is None:
            raise ContractError(
                product.path, f"library metric '{metric}' must sit on a column", product=product.name
            )
        base = {"column": column}
        if metric == "nullValues":
            return _rule(
                product,
                "expect_column_values_to_not_be_null",
                base,
                severity=severity,
                name=name,
                description=desc,
            )
        if metric == "duplicateValues":
            return _rule(
                product,
                "expect_column_values_to_be_unique",
                base,
                severity=severity,
                name=name,
                description=desc,
            )
        if metric == "invalidValues" and "validValues" in args:
            return _rule(
                product,
                "expect_column_values_to_be_in_set",
                {**base, "value_set": list(args["validValues"])},
                severity=severity,
                name=name,
                description=desc,
            )
        if metric == "invalidValues" and "pattern" in args:
            return _rule(
                product,
                "expect_column_values_to_match_regex",
                {**base, "regex": args["pattern"]},
                severity=severity,
                name=name,
                description=desc,
            )
        raise ContractError(
            product.path,
            f"library metric '{metric}' with arguments {sorted(args)} is not supported",
            product=product.name,
            column=column,
            hint="use nullValues, duplicateValues, rowCount or invalidValues with validValues/pattern",
        )
    raise ContractError(
        product.path,
        f"quality rule type '{kind}' is not supported",
        product=product.name,
        column=column,
        hint="use library, custom (great-expectations) or text",
    )


def rules_from_contract(product: "DataProduct", table: dict) -> list[QualityRule]:
    rules: list[QualityRule] = []
    for col in product.columns:
        if col.required:
            rules.append(
                _rule(
                    product,
                    "expect_column_values_to_not_be_null",
                    {"column": col.name},
                    severity="error",
                    description="derived from 'required: true'",
                )
            )
        if col.unique or (product.primary_key == (col.name,)):
            rules.append(
                _rule(
                    product,
                    "expect_column_values_to_be_unique",
                    {"column": col.name},
                    severity="error",
                    description="derived from the primary key / 'unique: true'",
                )
            )
    if len(product.primary_key) > 1:
        rules.append(
            _rule(
                product,
                "expect_compound_columns_to_be_unique",
                {"column_list": list(product.primary_key)},
                severity="error",
                description="derived from the compound primary key",
            )
        )
    if product.max_shrink_percent is not None:
        rules.append(
            _rule(
                product,
                SHRINK,
                {"max_shrink_percent": product.max_shrink_percent},
                severity="error",
                description=f"platform rule: at most {product.max_shrink_percent:g}% fewer rows than "
                "main (contract customProperty maxShrinkPercent)",
            )
        )
    for q in table.get("quality") or []:
        if (rule := _from_odcs(product, q, None)) is not None:
            rules.append(rule)
    for prop in table.get("properties") or []:
        for q in prop.get("quality") or []:
            if (rule := _from_odcs(product, q, prop["name"])) is not None:
                rules.append(rule)
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ContractError(
                product.path,
                f"two quality rules are named '{rule.name}'",
                product=product.name,
                column=rule.column,
                hint="give one of them a distinct 'name'",
            )
        seen.add(rule.name)
    return rules


def dbt_tests_from_contract(product: "DataProduct", table: dict) -> list[tuple[str | None, dict]]:
    """``(column or None, {test_name: arguments})`` of the contract's ``engine: dbt`` rules.

    They become ``data_tests`` of the product's dbt model (and run with ``dbt build`` as asset
    checks), written once, in the contract."""
    found = []
    entries = [(None, q) for q in table.get("quality") or []]
    entries += [(p["name"], q) for p in table.get("properties") or [] for q in p.get("quality") or []]
    for column, q in entries:
        if q.get("type") != "custom" or (q.get("engine") or "").lower() != "dbt":
            continue
        impl = q.get("implementation")
        if isinstance(impl, str):
            impl = yaml.safe_load(impl)
        if not isinstance(impl, dict) or len(impl) != 1:
            raise ContractError(
                product.path,
                "a dbt rule needs implementation {<test name>: "
                "{<arguments>}}, e.g. {relationships: {to: \"source('d', 'p')\", "
                "field: id}}",
                product=product.name,
                column=column,
            )
        # on a dbt-built product a model test; on an ingested one a dbt source test
        if SEVERITIES.get(str(q.get("severity", "error")).lower()) == "warn":
            ((test_name, args),) = impl.items()
            impl = {test_name: {**(args or {}), "config": {"severity": "warn"}}}
        found.append((column, impl))
    return found
