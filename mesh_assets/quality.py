"""Quality: contract rules in Great Expectations' vocabulary, run as Dagster asset checks.

Rules come from the contract in three ways, all ending as :class:`QualityRule`:

* structure: ``required`` columns -> ``expect_column_values_to_not_be_null``; a primary key ->
  ``expect_column_values_to_be_unique`` (or ``expect_compound_columns_to_be_unique``);
* ODCS ``library`` metrics: ``nullValues``, ``duplicateValues``, ``rowCount``,
  ``invalidValues`` (``arguments.validValues`` or ``arguments.pattern``);
* ODCS ``custom`` rules with ``engine: great-expectations`` and an ``implementation`` holding
  the expectation ``type`` and ``kwargs``, exactly as a GX suite would.

Evaluation runs where the data is: all rules of a product compile into one SQL aggregate
executed by DuckDB over the Iceberg snapshot (GX itself would load the table into pandas; see
shared/docs/stack-notes.md for why not). Values from contracts reach SQL only as bound
parameters; column names only as quoted identifiers.
"""

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import yaml

from mesh_assets.contracts import ContractError, QualityRule

if TYPE_CHECKING:
    import duckdb

    from mesh_assets.contracts import DataProduct

# expectation type -> (short check name, required kwargs)
EXPECTATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "expect_column_values_to_not_be_null": ("not_null", ("column",)),
    "expect_column_values_to_be_between": ("between", ("column",)),
    "expect_column_values_to_be_in_set": ("in_set", ("column", "value_set")),
    "expect_column_values_to_match_regex": ("match_regex", ("column", "regex")),
    "expect_column_values_to_be_unique": ("unique", ("column",)),
    "expect_compound_columns_to_be_unique": ("compound_unique", ("column_list",)),
    "expect_table_row_count_to_be_between": ("row_count_between", ()),
    "expect_column_mean_to_be_between": ("mean_between", ("column",)),
    "expect_column_min_to_be_between": ("min_between", ("column",)),
    "expect_column_max_to_be_between": ("max_between", ("column",)),
}
SEVERITIES = {"error": "error", "warn": "warn", "warning": "warn", "info": "warn"}
SAMPLE_SIZE = 5


def _rule(product: "DataProduct", expectation: str, kwargs: dict, *, severity: str | None,
          name: str | None = None, description: str | None = None) -> QualityRule:
    col = kwargs.get("column")
    if expectation not in EXPECTATIONS:
        raise ContractError(product.path, f"unknown expectation '{expectation}'",
                            product=product.name, column=col,
                            hint=f"supported: {', '.join(sorted(EXPECTATIONS))}")
    short, required = EXPECTATIONS[expectation]
    for arg in required:
        if arg not in kwargs:
            raise ContractError(product.path, f"expectation {expectation} needs kwarg '{arg}'",
                                product=product.name, column=col)
    for c in ([col] if col else []) + list(kwargs.get("column_list") or []):
        if c not in {x.name for x in product.columns}:
            raise ContractError(product.path, f"{expectation} refers to a column the contract "
                                "does not declare", product=product.name, column=c)
    sev = SEVERITIES.get((severity or "error").lower())
    if sev is None:
        raise ContractError(product.path, f"unknown severity '{severity}'", product=product.name,
                            column=col, hint="use 'error' (blocking) or 'warn'")
    if name is None:
        suffix = col or "_".join(kwargs.get("column_list") or [])
        name = f"{short}_{suffix}" if suffix else short
    return QualityRule(name=name, expectation=expectation, kwargs=dict(kwargs), severity=sev,
                       description=description)


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
            raise ContractError(product.path, f"custom quality engine '{q.get('engine')}' is not "
                                "supported", product=product.name, column=column,
                                hint="use engine: great-expectations, or dbt for dbt tests")
        impl = q.get("implementation")
        if isinstance(impl, str):
            impl = yaml.safe_load(impl)
        if not isinstance(impl, dict) or not (impl.get("type") or impl.get("expectation_type")):
            raise ContractError(product.path, "a great-expectations rule needs implementation "
                                "{type: expect_..., kwargs: {...}}", product=product.name,
                                column=column)
        kwargs = dict(impl.get("kwargs") or {})
        if column and "column" not in kwargs and "column_list" not in kwargs:
            kwargs["column"] = column
        return _rule(product, impl.get("type") or impl["expectation_type"], kwargs,
                     severity=severity, name=name, description=desc)
    if kind == "library":
        metric = q.get("metric") or q.get("rule")
        args = q.get("arguments") or {}
        if metric == "rowCount":
            return _rule(product, "expect_table_row_count_to_be_between", _bounds(q),
                         severity=severity, name=name, description=desc)
        if column is None:
            raise ContractError(product.path, f"library metric '{metric}' must sit on a column",
                                product=product.name)
        base = {"column": column}
        if metric == "nullValues":
            return _rule(product, "expect_column_values_to_not_be_null", base,
                         severity=severity, name=name, description=desc)
        if metric == "duplicateValues":
            return _rule(product, "expect_column_values_to_be_unique", base,
                         severity=severity, name=name, description=desc)
        if metric == "invalidValues" and "validValues" in args:
            return _rule(product, "expect_column_values_to_be_in_set",
                         {**base, "value_set": list(args["validValues"])},
                         severity=severity, name=name, description=desc)
        if metric == "invalidValues" and "pattern" in args:
            return _rule(product, "expect_column_values_to_match_regex",
                         {**base, "regex": args["pattern"]},
                         severity=severity, name=name, description=desc)
        raise ContractError(product.path, f"library metric '{metric}' with arguments "
                            f"{sorted(args)} is not supported", product=product.name,
                            column=column, hint="use nullValues, duplicateValues, rowCount or "
                            "invalidValues with validValues/pattern")
    raise ContractError(product.path, f"quality rule type '{kind}' is not supported",
                        product=product.name, column=column,
                        hint="use library, custom (great-expectations) or text")


def rules_from_contract(product: "DataProduct", table: dict) -> list[QualityRule]:
    rules: list[QualityRule] = []
    for col in product.columns:
        if col.required:
            rules.append(_rule(product, "expect_column_values_to_not_be_null",
                               {"column": col.name}, severity="error",
                               description="derived from 'required: true'"))
        if col.unique or (product.primary_key == (col.name,)):
            rules.append(_rule(product, "expect_column_values_to_be_unique",
                               {"column": col.name}, severity="error",
                               description="derived from the primary key / 'unique: true'"))
    if len(product.primary_key) > 1:
        rules.append(_rule(product, "expect_compound_columns_to_be_unique",
                           {"column_list": list(product.primary_key)}, severity="error",
                           description="derived from the compound primary key"))
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
            raise ContractError(product.path, f"two quality rules are named '{rule.name}'",
                                product=product.name, column=rule.column,
                                hint="give one of them a distinct 'name'")
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
            raise ContractError(product.path, "a dbt rule needs implementation {<test name>: "
                                "{<arguments>}}, e.g. {relationships: {to: \"source('d', 'p')\", "
                                "field: id}}", product=product.name, column=column)
        if product.transform != "dbt":
            raise ContractError(product.path, "engine: dbt rules need a dbt-built product "
                                "(transform: dbt)", product=product.name, column=column)
        found.append((column, impl))
    return found


# --- evaluation --------------------------------------------------------------------------------

def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class RuleResult:
    rule: QualityRule
    passed: bool
    observed_value: Any = None
    element_count: int = 0
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    sample: tuple = ()
    error: str | None = None

    def metadata(self) -> dict[str, Any]:
        """Plain Python values a person can read (no numpy scalars, no NaN)."""
        md: dict[str, Any] = {
            "expectation": self.rule.expectation,
            "kwargs": _plain(self.rule.kwargs),
            "severity": self.rule.severity,
            "element_count": self.element_count,
        }
        if self.observed_value is not None:
            md["observed_value"] = _plain(self.observed_value)
        if self.unexpected_count is not None:
            md["unexpected_count"] = self.unexpected_count
            md["unexpected_percent"] = round(self.unexpected_percent or 0.0, 4)
        if self.sample:
            md["unexpected_sample"] = [str(_plain(v)) for v in self.sample]
        md["status"] = "errored" if self.error else ("passed" if self.passed else "failed")
        if self.error:
            md["error"] = self.error
        return md


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def _range_predicate(expr: str, kw: dict, params: list) -> str:
    """SQL that is true when ``expr`` lies inside the kwargs' bounds (bounds bound as params)."""
    parts = []
    if kw.get("min_value") is not None:
        parts.append(f"{expr} {'>' if kw.get('strict_min') else '>='} ?")
        params.append(kw["min_value"])
    if kw.get("max_value") is not None:
        parts.append(f"{expr} {'<' if kw.get('strict_max') else '<='} ?")
        params.append(kw["max_value"])
    return " AND ".join(parts) or "TRUE"


def _bad_rows_predicate(rule: QualityRule, params: list) -> str | None:
    """SQL true for a row that violates a per-row rule; None for aggregate rules."""
    kw, e = rule.kwargs, rule.expectation
    col = quote_ident(kw["column"]) if "column" in kw else None
    if e == "expect_column_values_to_not_be_null":
        return f"{col} IS NULL"
    if e == "expect_column_values_to_be_between":
        return f"{col} IS NOT NULL AND NOT ({_range_predicate(col, kw, params)})"
    if e == "expect_column_values_to_be_in_set":
        params.append(list(kw["value_set"]))
        return f"{col} IS NOT NULL AND NOT list_contains(?, {col})"
    if e == "expect_column_values_to_match_regex":
        params.append(kw["regex"])
        return f"{col} IS NOT NULL AND NOT regexp_matches(CAST({col} AS VARCHAR), ?)"
    return None


def evaluate(con: "duckdb.DuckDBPyConnection", relation: str,
             rules: tuple[QualityRule, ...] | list[QualityRule]) -> list[RuleResult]:
    """Evaluate ``rules`` on ``relation`` (a quoted name or table function) in one aggregate.

    A rule whose SQL errors (say, a regex DuckDB rejects, or a range on a text column) is
    reported as *errored*, not passed and not silently failed: when the single pass fails, the
    rules are evaluated one by one to tell the errored ones from the others."""
    import duckdb

    if not rules:
        return []
    try:
        return _evaluate(con, relation, rules)
    except duckdb.Error:
        pass
    results = []
    for rule in rules:
        try:
            results += _evaluate(con, relation, [rule])
        except duckdb.Error as exc:
            results.append(RuleResult(rule, passed=False, error=f"{type(exc).__name__}: {exc}"))
    return results


def _evaluate(con, relation: str, rules) -> list[RuleResult]:
    selects, params = ["count(*)"], []
    layout: list[tuple[QualityRule, str]] = []
    for rule in rules:
        kw, e = rule.kwargs, rule.expectation
        col = quote_ident(kw["column"]) if "column" in kw else None
        bad = _bad_rows_predicate(rule, params)
        if bad is not None:
            base = "count(*)" if e == "expect_column_values_to_not_be_null" else f"count({col})"
            selects += [f"count(*) FILTER (WHERE {bad})", base]
            layout.append((rule, "rows"))
        elif e == "expect_column_values_to_be_unique":
            selects += [f"count({col}) - count(DISTINCT {col})", f"count({col})"]
            layout.append((rule, "rows"))
        elif e == "expect_compound_columns_to_be_unique":
            cols = ", ".join(quote_ident(c) for c in kw["column_list"])
            selects += [f"count(*) - count(DISTINCT ({cols}))", "count(*)"]
            layout.append((rule, "rows"))
        else:
            fn = {"expect_table_row_count_to_be_between": "count(*)",
                  "expect_column_mean_to_be_between": f"avg({col})",
                  "expect_column_min_to_be_between": f"min({col})",
                  "expect_column_max_to_be_between": f"max({col})"}[e]
            selects += [fn, f"({_range_predicate(fn, kw, params)})"]
            layout.append((rule, "aggregate"))
    row = con.execute(f"SELECT {', '.join(selects)} FROM {relation}", params).fetchone()
    total, values = int(row[0]), row[1:]

    results = []
    for i, (rule, kind) in enumerate(layout):
        a, b = values[2 * i], values[2 * i + 1]
        if kind == "aggregate":
            results.append(RuleResult(rule, passed=bool(b), observed_value=_plain(a),
                                      element_count=total))
            continue
        unexpected, base = int(a or 0), int(b or 0)
        pct = 100.0 * unexpected / base if base else 0.0
        mostly = float(rule.kwargs.get("mostly", 1.0))
        passed = unexpected == 0 or (base > 0 and (1 - unexpected / base) >= mostly)
        sample = () if unexpected == 0 else _sample(con, relation, rule)
        results.append(RuleResult(rule, passed=passed, observed_value=unexpected,
                                  element_count=total, unexpected_count=unexpected,
                                  unexpected_percent=pct, sample=sample))
    return results


def _sample(con: "duckdb.DuckDBPyConnection", relation: str, rule: QualityRule) -> tuple:
    params: list = []
    kw = rule.kwargs
    bad = _bad_rows_predicate(rule, params)
    if bad is not None:
        col = quote_ident(kw["column"])
        sql = f"SELECT DISTINCT {col} FROM {relation} WHERE {bad} LIMIT {SAMPLE_SIZE}"
    else:
        cols = [quote_ident(c) for c in kw.get("column_list") or [kw["column"]]]
        key = ", ".join(cols)
        sql = (f"SELECT {key} FROM {relation} WHERE {' AND '.join(c + ' IS NOT NULL' for c in cols)}"
               f" GROUP BY {key} HAVING count(*) > 1 LIMIT {SAMPLE_SIZE}")
    rows = con.execute(sql, params).fetchall()
    return tuple(r[0] if len(r) == 1 else tuple(r) for r in rows)


def tag_max_age_ms(product: "DataProduct") -> int:
    """Checked-snapshot tags live as long as the contract's snapshot retention."""
    return int(product.retention.total_seconds() * 1000)


# --- Dagster asset checks ----------------------------------------------------------------------

def check_specs(product: "DataProduct") -> list:
    import dagster as dg

    key = dg.AssetKey(product.asset_key_path)
    return [
        dg.AssetCheckSpec(
            name=rule.name, asset=key, blocking=rule.severity == "error",
            description=rule.description or f"{rule.expectation} {rule.kwargs}",
            metadata={"expectation": rule.expectation, "severity": rule.severity},
        )
        for rule in product.rules
    ]


def contract_checks(product: "DataProduct"):
    """One Dagster asset check per contract rule, evaluated together in one SQL pass.

    ``error`` rules are blocking checks (a failure stops downstream assets); ``warn`` rules
    report with severity WARN.
    """
    import dagster as dg

    from mesh_assets import engine
    from mesh_assets.catalog import IcebergCatalog, audit_branch_name, branch_head, publish
    from mesh_assets.versions import tag_checked

    if not product.rules:
        return None
    key = dg.AssetKey(product.asset_key_path)

    @dg.multi_asset_check(specs=check_specs(product), name=f"check_{product.name}",
                          can_subset=True)
    def _checks(context: dg.AssetCheckExecutionContext, catalog: IcebergCatalog):
        selected = {k.name for k in context.selected_asset_check_keys}
        rules = [r for r in product.rules if r.name in selected]
        table = catalog.load_table(product.table_identifier)
        # Write-audit-publish: this run's new data waits on its audit branch; checks read
        # exactly that snapshot. Without a branch (checks re-run later) they read main.
        branch = audit_branch_name(context.run.run_id)
        if branch not in table.metadata.refs:
            branch = None
        snapshot_id = branch_head(table, branch)
        con = engine.connect()
        try:
            relation = engine.register_table(con, table, "product", snapshot_id=snapshot_id)
            results = evaluate(con, relation, rules)
        finally:
            con.close()
        all_blocking_passed = all(r.passed for r in results if r.rule.severity == "error")
        published = False
        if snapshot_id is not None and all_blocking_passed and len(rules) == len(product.rules):
            tag = tag_checked(table, snapshot_id, context.run.run_id,
                              max_age_ms=tag_max_age_ms(product))
            if branch is not None:
                publish(table.refresh(), branch)
                published = True
            context.log.info(f"{product.identifier}: snapshot {snapshot_id} passed every "
                             f"blocking check; tagged {tag}"
                             + ("; published to main" if published else ""))
        elif branch is not None:
            context.log.warning(f"{product.identifier}: snapshot {snapshot_id} stays on branch "
                                f"{branch}, unpublished: main is unchanged")
        for result in results:
            metadata = result.metadata()
            if snapshot_id is not None:
                metadata["iceberg/snapshot_id"] = dg.MetadataValue.int(snapshot_id)
            if branch is not None:
                metadata["wap/branch"] = branch
                metadata["wap/published"] = published
            yield dg.AssetCheckResult(
                asset_key=key, check_name=result.rule.name, passed=result.passed,
                severity=(dg.AssetCheckSeverity.ERROR if result.rule.severity == "error"
                          else dg.AssetCheckSeverity.WARN),
                metadata=metadata,
            )

    return _checks
