"""A human-readable HTML validation report per check run.

Written to ``$MESH_HOME/quality/reports/<domain>/<product>/<run_id>.html`` by every run of a
product's checks and linked from each check's metadata (``quality/report``). One self-contained
file (no scripts, no external assets): verdict per rule, severity, engine (SQL pushdown or GX
fallback), observed value, unexpected count and percent, sample of unexpected values, errors,
and the snapshot that was read. Callers pass results masked for display
(:meth:`~mesh_assets.quality.results.RuleResult.masked`): no classified value reaches the file.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mesh_assets.settings import load_settings

if TYPE_CHECKING:
    from mesh_assets.contract.model import DataProduct
    from mesh_assets.quality.results import RuleResult

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2330}
h1{font-size:1.4rem}table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #d6dae3;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f4f8}code{font-size:.85rem;white-space:pre-wrap}
.passed{color:#11703a;font-weight:600}.failed{color:#b3261e;font-weight:600}
.errored{color:#8a4b00;font-weight:600}.warn{color:#8a6d00}
.summary span{margin-right:1.2rem}
"""


def report_dir(product: DataProduct, home: Path | None = None) -> Path:
    if home is None:
        home = load_settings().home
    return Path(home) / "quality" / "reports" / product.domain / product.name


def _cell(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, default=str)
    return html.escape(str(value))


def render(
    product: DataProduct,
    results: Sequence[RuleResult],
    *,
    run_id: str,
    snapshot_id: int | None,
    branch: str | None = None,
    published: bool = False,
    references: dict[str, int] | None = None,
    generated: dt.datetime | None = None,
) -> str:
    generated = generated or dt.datetime.now(dt.UTC)
    counts = {s: sum(1 for r in results if r.status == s) for s in ("passed", "failed", "errored")}
    blocking_ok = all(r.passed for r in results if r.rule.severity == "error")
    verdict = "all blocking checks passed" if blocking_ok else "a blocking check did not pass"
    rows = []
    for r in results:
        md = r.metadata()
        pct = md.get("unexpected_percent")
        rows.append(
            "<tr>"
            f"<td><b>{_cell(r.rule.name)}</b><br><small>{_cell(r.rule.description)}</small></td>"
            f"<td class='{r.status}'>{r.status}</td>"
            f"<td class='{'warn' if r.rule.severity == 'warn' else ''}'>"
            f"{'blocking' if r.rule.severity == 'error' else 'warn'}</td>"
            f"<td><code>{_cell(r.rule.expectation)}</code><br><code>{_cell(md['kwargs'])}</code></td>"
            f"<td>{_cell(r.engine)}</td>"
            f"<td>{_cell(md.get('observed_value'))}</td>"
            f"<td>{_cell(md.get('element_count'))}</td>"
            f"<td>{_cell(md.get('unexpected_count'))}"
            f"{'' if pct is None else f' ({pct:.4g} %)'}</td>"
            f"<td>{_cell(md.get('unexpected_sample'))}</td>"
            f"<td><code>{_cell(r.error)}</code>"
            + "".join(f"<br>{_cell(k)}: {_cell(v)}" for k, v in r.details.items())
            + "</td></tr>"
        )
    refs = "".join(
        f"<li>{_cell(k)} at snapshot {_cell(v)}</li>" for k, v in sorted((references or {}).items())
    )
    where = f"snapshot {snapshot_id}" + (f" on audit branch {branch}" if branch else " (main)")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{_cell(product.identifier)} validation {_cell(run_id)}</title><style>{_STYLE}</style></head>
<body>
<h1>Data quality: {_cell(product.identifier)}</h1>
<p>Run <code>{_cell(run_id)}</code> read Iceberg table
<code>{_cell(product.table_identifier)}</code>, {_cell(where)};
{"published to main" if published else "not published by this run"}.
Generated {_cell(generated.isoformat(timespec="seconds"))}. Contract
<code>{_cell(product.path.name)}</code> (version {_cell(product.version)}), owner
{_cell(product.owner)}.</p>
<p class="summary"><span class="{"passed" if blocking_ok else "failed"}">{verdict}</span>
<span class="passed">{counts["passed"]} passed</span><span class="failed">{counts["failed"]}
failed</span><span class="errored">{counts["errored"]} errored</span></p>
{f"<p>Referenced products:</p><ul>{refs}</ul>" if refs else ""}
<table><thead><tr><th>rule</th><th>status</th><th>severity</th><th>expectation</th><th>engine</th>
<th>observed</th><th>rows</th><th>unexpected</th><th>sample</th><th>error / details</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</body></html>
"""


def write_report(
    product: DataProduct,
    results: Sequence[RuleResult],
    *,
    run_id: str,
    snapshot_id: int | None,
    branch: str | None = None,
    published: bool = False,
    references: dict[str, int] | None = None,
    home: Path | None = None,
) -> Path:
    """Write the run's report; returns its path."""
    target = report_dir(product, home) / f"{run_id}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".html.part")
    tmp.write_text(
        render(
            product,
            results,
            run_id=run_id,
            snapshot_id=snapshot_id,
            branch=branch,
            published=published,
            references=references,
        )
    )
    tmp.replace(target)
    return target
