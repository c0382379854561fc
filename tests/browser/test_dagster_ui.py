"""The Dagster UI in a real (headless) Chromium over the materialized demo mesh: every domain's
code location loads, the global asset graph links the domains, and a person can materialize a
product from its page and see the run succeed with its quality checks.

Fixtures (the servers, the browser) are in ``conftest.py``; screenshots in
``test-artifacts/browser/``.
"""

from __future__ import annotations

import re

import pytest

from mesh_assets.settings import DOMAINS_DIR, PROJECT_DIR
from mesh_assets.workspace import load_contract, workspace_domains

pytestmark = pytest.mark.browser

RUN_TIMEOUT_MS = 300_000
ARTIFACTS = PROJECT_DIR / "test-artifacts" / "browser"

# Edges that cross a domain boundary, as declared by the dbt models' sources.
CROSS_DOMAIN_EDGES = {
    ("analytics/delays_by_carrier_month", "reference/airlines"),
    ("analytics/delays_by_carrier_month", "operations/flights"),
    ("analytics/delays_by_weather", "operations/flights"),
    ("analytics/delays_by_weather", "weather/observations"),
    ("analytics/delays_by_aircraft_age", "operations/flights"),
    ("analytics/delays_by_aircraft_age", "fleet/planes"),
    ("weather/station_daily", "reference/airports"),
}


DOMAINS = tuple(workspace_domains())
assert {"reference", "fleet", "weather", "operations", "analytics"} <= set(DOMAINS)


def _shot(page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def test_every_domain_code_location_loads(dagster_ui, page):
    from playwright.sync_api import expect

    page.goto(f"{dagster_ui.url}/locations")
    expect(page.get_by_text(f"{len(DOMAINS)} code locations")).to_be_visible()
    for domain in DOMAINS:
        expect(page.locator(f'a[href="/locations/{domain}/"]')).to_be_visible()
        expect(page.get_by_text(f"domains.{domain}.definitions", exact=True).first).to_be_visible()
    expect(page.get_by_text("Loaded", exact=True)).to_have_count(len(DOMAINS))
    expect(page.get_by_text(re.compile(r"^(Failed|Error|Loading)$"))).to_have_count(0)
    _shot(page, "01-code-locations")
    # the same, as the UI's API reports it: loaded, with no load error
    entries = dagster_ui.locations()
    assert sorted(entries) == sorted(DOMAINS)
    for name, entry in entries.items():
        assert entry["loadStatus"] == "LOADED", name
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", (name, entry)


def test_global_asset_graph_links_the_domains(dagster_ui, page):
    from playwright.sync_api import expect

    data = dagster_ui.graphql("""{ assetNodes { assetKey { path } dependencyKeys { path }
        repository { location { name } } } }""")
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    edges = {(key, "/".join(d["path"])) for key, n in nodes.items() for d in n["dependencyKeys"]}
    missing = CROSS_DOMAIN_EDGES - edges
    assert not missing, f"cross-domain edges missing from the asset graph: {sorted(missing)}"
    for key, node in nodes.items():  # each asset is served by its own domain's code location
        assert node["repository"]["location"]["name"] == key.split("/")[0], key

    # The global lineage: one (collapsed) group per domain, an arrow per pair of linked domains.
    page.goto(f"{dagster_ui.url}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for domain in DOMAINS:
        expect(page.locator(f'[data-tooltip="{domain}"]').first).to_be_visible()
    domain_pairs = {(a.split("/")[0], b.split("/")[0]) for a, b in edges if a.split("/")[0] != b.split("/")[0]}
    assert len(domain_pairs) >= 5
    expect(page.locator("svg path[marker-end]")).to_have_count(len(domain_pairs))
    _shot(page, "02-global-asset-lineage")

    # A consumer product's upstream lineage shows the products of the domains it reads.
    for product, upstream in [("analytics/delays_by_carrier_month", {"reference": "airlines", "operations": "flights"}),
                              ("weather/station_daily", {"reference": "airports", "weather": "observations"})]:
        page.goto(f"{dagster_ui.url}/assets/{product}")
        page.get_by_role("tab", name="Lineage").click()
        page.get_by_role("button", name=re.compile("Upstream")).click()
        for group, asset in upstream.items():
            expect(page.locator(f'[data-tooltip="{group}"]').first).to_be_visible()
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        _shot(page, f"03-lineage-{product.replace('/', '-')}")


def test_materialize_a_product_from_its_page(dagster_ui, page):
    from playwright.sync_api import expect

    product = load_contract(DOMAINS_DIR / "reference" / "products" / "airlines.yaml", domain="reference")
    checks = sorted(rule.name for rule in product.rules)
    assert len(checks) >= 3

    page.goto(f"{dagster_ui.url}/assets/reference/airlines")
    materialize = page.get_by_role("button", name=re.compile(r"^(materialization )?Materialize$"))
    expect(materialize).to_be_enabled()
    _shot(page, "04-airlines-before")
    materialize.click()
    view = page.get_by_role("region", name=re.compile("Notifications")).get_by_role("link", name="View")
    expect(view).to_be_visible()
    run_id = view.get_attribute("href").rstrip("/").rsplit("/", 1)[-1]
    assert re.fullmatch(r"[0-9a-f-]{36}", run_id), run_id
    view.click()

    # The run page: queued for the daemon, then started, then Success (the page updates live).
    expect(page).to_have_url(re.compile(run_id))
    status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$"))
    try:
        expect(status.first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    finally:
        _shot(page, "05-run")
        dagster_ui.check_alive()
    expect(status.first).to_have_text("Success")
    expect(page.get_by_text(f"{len(checks)} checks")).to_be_visible()
    run = dagster_ui.graphql("""query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }""",
                             {"id": run_id})
    assert run["runOrError"]["status"] == "SUCCESS"

    # The asset's checks: every contract rule succeeded, evaluated on this run's audit branch.
    page.goto(f"{dagster_ui.url}/assets/reference/airlines?view=checks")
    expect(page.get_by_text(f"Checks ({len(checks)})")).to_be_visible()
    for name in checks:
        expect(page.get_by_text(re.compile(rf"^{name}\s*{name}\s*Succeeded$")).first).to_be_visible()
    expect(page.get_by_text("Evaluation result")).to_be_visible()
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    expect(page.get_by_role("cell", name=f"audit-{run_id[:8]}")).to_be_visible()
    _shot(page, "06-airlines-checks")
