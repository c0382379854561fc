"""Read API for analysts and notebooks: any product, any past version, as Arrow or pandas.

    import mesh_assets
    flights = mesh_assets.read("reference.airports", columns=["faa", "name"],
                               filter="tz = -5", as_of="last-checked")
    df = mesh_assets.read("weather.observations", pandas=True)

``as_of`` takes a snapshot id, a tag or branch, or an ISO timestamp. ``filter`` is a pyiceberg
row filter (a string such as ``"origin = 'JFK' and temp > 80"`` or an expression); it prunes
partitions and files before anything is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mesh_assets.catalog import open_catalog
from mesh_assets.versions import resolve_as_of


def read(identifier: str, *, columns: Sequence[str] | None = None, filter: Any = None,
         as_of: str | int | None = None, limit: int | None = None, pandas: bool = False):
    """Rows of product ``identifier`` (``domain.product``) as a ``pyarrow.Table``
    (a ``pandas.DataFrame`` with ``pandas=True``)."""
    from pyiceberg.expressions import AlwaysTrue

    table = open_catalog().load_table(identifier)
    snapshot_id = resolve_as_of(table, as_of)
    scan = table.scan(
        row_filter=filter if filter is not None else AlwaysTrue(),
        selected_fields=tuple(columns) if columns else ("*",),
        snapshot_id=snapshot_id, limit=limit,
    )
    data = scan.to_arrow()
    return data.to_pandas() if pandas else data
