"""The README and docs/ link only to files and headings that exist."""

import re

import pytest

from mesh_assets.settings import PROJECT_DIR

PAGES = [PROJECT_DIR / "README.md", *sorted((PROJECT_DIR / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _anchors(path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", path.read_text())
    return {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)
    }


def test_the_documentation_pages_exist():
    names = {p.name for p in PAGES}
    assert {
        "architecture.md",
        "install.md",
        "tutorial.md",
        "operations.md",
        "governance.md",
        "security.md",
        "connect.md",
    } <= names
    readme = (PROJECT_DIR / "README.md").read_text()
    for page in names - {"README.md"}:
        assert f"(docs/{page})" in readme, f"README does not link docs/{page}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # http(s), mailto
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"
