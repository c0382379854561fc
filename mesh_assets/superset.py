"""``mesh superset sync``: the mesh in the stack's Superset, through Superset's REST API.

Idempotent: every object is found by its name and updated, or created when missing, so a second
run changes nothing and a changed contract updates what Superset shows.

* the **database** :data:`DATABASE` on the stack's Trino (catalog ``iceberg``), logging in as the
  service account ``superset`` (an ``analyst``: the contracts' access policy applies, PII
  masked). Its URI names the account but holds no password: Superset's configuration adds the
  password and the stack's CA at each connection (:mod:`mesh_assets.stack.superset`);
* one **dataset** per public product (``visibility: public``) whose table exists, with the
  contract's description and column descriptions; a PII column's verbose name ends with
  :data:`PII_MARK` and its description says that readers without clearance see it masked;
* the **dashboard** :data:`DASHBOARD_TITLE` (slug :data:`DASHBOARD_SLUG`) with the charts of
  :func:`charts` over the analytics products: arrival delay by carrier and month, departure
  delay by weather, arrival delay by aircraft age, flights in total and by carrier.

The admin's password is read from the stack's secret file; no credential is printed or logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import requests

from mesh_assets.contract.model import DataProduct
from mesh_assets.stack.accounts import SUPERSET_ACCOUNT
from mesh_assets.stack.layout import HOST, TRINO_CATALOG, StackLayout
from mesh_assets.stack.superset import ADMIN, Superset
from mesh_assets.workspace import all_products

DATABASE = "mesh"
DASHBOARD_TITLE = "Flight delays (analytics products)"
DASHBOARD_SLUG = "mesh-delays"
PII_MARK = " (PII)"
TIMEOUT_S = 120


class SupersetSyncError(RuntimeError):
    """Superset refused a call; the message names the object, the call and Superset's answer."""


@dataclass(frozen=True)
class SyncResult:
    database_id: int
    datasets: dict[str, int]  # domain.product -> dataset id
    missing: list[str]  # public products without a table yet (not materialized)
    charts: dict[str, int]  # chart name -> id
    dashboard_id: int
    dashboard_url: str


class SupersetClient:
    """A logged-in session on Superset's REST API (``/api/v1``): bearer token and CSRF token."""

    def __init__(self, url: str, username: str, password: str):
        self.url = url
        self.session = requests.Session()
        try:
            login = self.session.post(
                f"{url}/api/v1/security/login",
                json={"username": username, "password": password, "provider": "db", "refresh": False},
                timeout=TIMEOUT_S,
            )
        except requests.ConnectionError:
            raise SupersetSyncError(
                f"Superset does not answer at {url}: start it with `mesh stack up --with superset`"
            ) from None
        if login.status_code != 200:
            raise SupersetSyncError(
                f"logging in to Superset at {url} as {username!r} failed: HTTP {login.status_code} "
                f"{login.text[:300]} (the password is the stack's secrets/superset-admin-password)"
            )
        self.session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        csrf = self.call("GET", "/security/csrf_token/", what="a CSRF token")
        self.session.headers.update({"X-CSRFToken": csrf["result"], "Referer": url})

    def call(self, method: str, path: str, *, what: str, body: dict | None = None) -> dict:
        response = self.session.request(method, f"{self.url}/api/v1{path}", json=body, timeout=TIMEOUT_S)
        if response.status_code >= 400:
            raise SupersetSyncError(
                f"Superset refused {method} /api/v1{path} ({what}): HTTP {response.status_code} {response.text[:1500]}"
            )
        return response.json() if response.content else {}

    def all(self, resource: str) -> list[dict]:
        """Every ``resource`` (``database``, ``dataset``, ``chart``, ``dashboard``), all pages read."""
        items, page = [], 0
        while True:
            found = self.call(
                "GET", f"/{resource}/?q=(page:{page},page_size:100)", what=f"the {resource} list"
            )
            items += found["result"]
            if (page + 1) * 100 >= found["count"]:
                return items
            page += 1

    def find(self, resource: str, key: str, value: str) -> dict | None:
        """The ``resource`` whose ``key`` equals ``value``, None when there is none."""
        return next((item for item in self.all(resource) if item.get(key) == value), None)

    def upsert(self, resource: str, key: str, value: str, body: dict, *, what: str) -> int:
        """Update the ``resource`` named ``value`` with ``body``, or create it; returns its id."""
        existing = self.find(resource, key, value)
        if existing is None:
            return self.call("POST", f"/{resource}/", body=body, what=f"create {what}")["id"]
        self.call("PUT", f"/{resource}/{existing['id']}", body=body, what=f"update {what}")
        return existing["id"]


def trino_uri(layout: StackLayout) -> str:
    """The database's SQLAlchemy URI: the stack's Trino, its HTTPS port, the ``superset``
    account, no password (added at connection time)."""
    return f"trino://{SUPERSET_ACCOUNT}@{HOST}:{layout.ports['trino-https']}/{TRINO_CATALOG}"


def public_products() -> list[DataProduct]:
    return [p for p in all_products() if p.visibility == "public"]


def column_spec(product: DataProduct, column) -> dict:
    """A dataset column's description and verbose name from the contract (PII marked)."""
    description = column.description or ""
    verbose = column.name.replace("_", " ")
    if column.classification == "pii":
        verbose += PII_MARK
        description = (
            f"{description} PII: readers without pii clearance (Superset's account among them) "
            f"see it masked ({column.masking or 'hash'})."
        ).strip()
    return {"column_name": column.name, "verbose_name": verbose, "description": description}


def _metric(label: str, sql: str) -> dict:
    return {
        "expressionType": "SQL",
        "sqlExpression": sql,
        "label": label,
        "hasCustomLabel": True,
        "optionName": f"metric_{label.replace(' ', '_')}",
    }


FLIGHTS = _metric("flights", "SUM(flights)")
ARR_DELAY = _metric("mean arrival delay (min)", "SUM(mean_arr_delay_min * flights) / SUM(flights)")
DEP_DELAY = _metric("mean departure delay (min)", "SUM(mean_dep_delay_min * flights) / SUM(flights)")


def charts() -> dict[str, tuple[str, dict]]:
    """Chart name -> (the analytics product it reads, Superset's form data without the datasource)."""
    bars = {
        "viz_type": "echarts_timeseries_bar",
        "groupby": [],
        "orientation": "vertical",
        "show_value": True,
    }
    common = {"adhoc_filters": [], "row_limit": 10000, "x_axis_sort_asc": True, "show_legend": True}
    return {
        "Flights in 2013": (
            "analytics.delays_by_carrier_month",
            {"viz_type": "big_number_total", "metric": FLIGHTS, "y_axis_format": ",d", "adhoc_filters": []},
        ),
        "Mean arrival delay by carrier and month": (
            "analytics.delays_by_carrier_month",
            {
                **common,
                "viz_type": "echarts_timeseries_line",
                "x_axis": "month",
                "metrics": [ARR_DELAY],
                "groupby": ["carrier"],
                "markerEnabled": True,
            },
        ),
        "Flights and delays by carrier": (
            "analytics.delays_by_carrier_month",
            {
                "viz_type": "table",
                "query_mode": "aggregate",
                "groupby": ["carrier", "carrier_name"],
                "metrics": [FLIGHTS, ARR_DELAY],
                "adhoc_filters": [],
                "row_limit": 100,
                "order_desc": True,
                "timeseries_limit_metric": FLIGHTS,
            },
        ),
        "Mean departure delay by weather": (
            "analytics.delays_by_weather",
            {**common, **bars, "x_axis": "condition", "metrics": [DEP_DELAY]},
        ),
        "Mean arrival delay by aircraft age (years)": (
            "analytics.delays_by_aircraft_age",
            {**common, **bars, "x_axis": "age_band_years", "metrics": [ARR_DELAY]},
        ),
    }


def sync(layout: StackLayout | None = None, *, say: Callable[[str], None] = print) -> SyncResult:
    """Create or update the database, the datasets and the dashboard in the stack's Superset."""
    layout = layout or StackLayout.current()
    service = Superset(layout)
    client = SupersetClient(service.url, ADMIN, layout.secret("superset-admin-password"))

    database_id = client.upsert(
        "database",
        "database_name",
        DATABASE,
        {
            "database_name": DATABASE,
            "sqlalchemy_uri": trino_uri(layout),
            "expose_in_sqllab": True,
            "allow_ctas": False,
            "allow_cvas": False,
            "allow_dml": False,
            "allow_run_async": False,
        },
        what=f"the database {DATABASE!r}",
    )
    say(
        f"database {DATABASE!r} (id {database_id}): {trino_uri(layout)} as the Trino account {SUPERSET_ACCOUNT!r}"
    )

    schemas = {}
    datasets: dict[str, int] = {}
    missing: list[str] = []
    for product in public_products():
        schema, table = product.table_identifier.split(".")
        if schema not in schemas:
            found = client.call(
                "GET",
                f"/database/{database_id}/tables/?q=(schema_name:{schema},force:!t)",
                what=f"the tables of schema {schema}",
            )
            schemas[schema] = {t["value"] for t in found["result"]}
        if table not in schemas[schema]:
            missing.append(product.identifier)
            continue
        datasets[product.identifier] = _sync_dataset(client, database_id, product, schema, table)
    say(
        f"{len(datasets)} datasets ({', '.join(datasets)})"
        + (f"; no table yet for {', '.join(missing)} (materialize them, then sync again)" if missing else "")
    )

    dashboard_id = client.upsert(
        "dashboard",
        "slug",
        DASHBOARD_SLUG,
        {"dashboard_title": DASHBOARD_TITLE, "slug": DASHBOARD_SLUG, "published": True},
        what=f"the dashboard {DASHBOARD_SLUG!r}",
    )
    chart_ids = {}
    for name, (product, form_data) in charts().items():
        if product not in datasets:
            raise SupersetSyncError(
                f"the chart {name!r} reads {product}, which has no table on the stack: materialize the "
                'mesh in production mode (`mesh demo` after `eval "$(mesh stack env)"`), then sync again'
            )
        dataset_id = datasets[product]
        params = {**form_data, "datasource": f"{dataset_id}__table"}
        chart_ids[name] = client.upsert(
            "chart",
            "slice_name",
            name,
            {
                "slice_name": name,
                "viz_type": form_data["viz_type"],
                "datasource_id": dataset_id,
                "datasource_type": "table",
                "params": json.dumps(params),
                "description": f"From the data product {product}.",
                "dashboards": [dashboard_id],
            },
            what=f"the chart {name!r}",
        )
    url = f"{service.url}/superset/dashboard/{DASHBOARD_SLUG}/"
    say(f"dashboard {DASHBOARD_TITLE!r} (id {dashboard_id}) with {len(chart_ids)} charts: {url}")
    return SyncResult(database_id, datasets, missing, chart_ids, dashboard_id, url)


def _sync_dataset(
    client: SupersetClient, database_id: int, product: DataProduct, schema: str, table: str
) -> int:
    """The dataset of ``product``: created from the table, then its description and its columns'
    descriptions and verbose names set from the contract (columns Superset found in the table
    but the contract lacks are left as they are)."""
    existing = next(
        (
            d
            for d in client.all("dataset")
            if d["table_name"] == table and d.get("schema") == schema and d["database"]["id"] == database_id
        ),
        None,
    )
    if existing is None:
        dataset_id = client.call(
            "POST",
            "/dataset/",
            body={"database": database_id, "catalog": TRINO_CATALOG, "schema": schema, "table_name": table},
            what=f"create the dataset of {product.identifier}",
        )["id"]
    else:
        dataset_id = existing["id"]
        # columns added to the table since: Superset reads the table's columns again
        client.call(
            "PUT", f"/dataset/{dataset_id}/refresh", what=f"refresh the dataset of {product.identifier}"
        )
    current = client.call("GET", f"/dataset/{dataset_id}", what=f"the dataset of {product.identifier}")[
        "result"
    ]
    by_name = {c.name: column_spec(product, c) for c in product.columns}
    columns = []
    for column in current["columns"]:
        spec = by_name.get(column["column_name"], {})
        columns.append(
            {
                "id": column["id"],
                "column_name": column["column_name"],
                "type": column.get("type"),
                "is_dttm": column.get("is_dttm", False),
                "groupby": True,
                "filterable": True,
                "verbose_name": spec.get("verbose_name", column.get("verbose_name")),
                "description": spec.get("description", column.get("description")),
            }
        )
    client.call(
        "PUT",
        f"/dataset/{dataset_id}",
        body={
            "description": f"{product.description} (data product {product.identifier}, owner {product.owner})",
            "columns": columns,
        },
        what=f"update the dataset of {product.identifier}",
    )
    return dataset_id
