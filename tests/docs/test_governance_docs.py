"""docs/governance.md is generated from the rule definitions and stays in sync with them."""

import ast
import re

from mesh_assets import cli, governance
from mesh_assets.settings import PROJECT_DIR

DOC = PROJECT_DIR / "docs" / "governance.md"


def test_committed_reference_is_in_sync(capsys):
    assert cli.main(["lint", "--docs"]) == 0
    generated = capsys.readouterr().out
    assert generated == governance.rules_markdown()
    assert DOC.read_text() == generated, (
        "docs/governance.md is stale: regenerate it with `.venv/bin/mesh lint --docs > docs/governance.md`"
    )


def test_every_rule_the_linter_reports_is_documented():
    """The ids of the Violation(...) calls in governance.py, the module's table and RULES agree."""
    tree = ast.parse((PROJECT_DIR / "mesh_assets" / "governance.py").read_text())
    reported = {
        node.args[2].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "Violation"
        and len(node.args) >= 3
        and isinstance(node.args[2], ast.Constant)
    }
    documented = [r.id for r in governance.RULES]
    table = re.findall(r"^(MESH\d{3})\s", governance.__doc__, flags=re.M)
    assert len(documented) == len(set(documented))
    assert reported == set(documented) == set(table), (reported, documented, table)
    for rule in governance.RULES:
        assert rule.title and rule.checks and rule.why and rule.fix, rule.id
