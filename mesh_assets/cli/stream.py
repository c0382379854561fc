"""``mesh stream status | replay | skip``: the position of streaming products in their topics,
and the operator's two ways of moving a stopped product on (see :mod:`mesh_assets.ingest.stream`)."""

from __future__ import annotations

from mesh_assets.cli import add_verb
from mesh_assets.cli.output import say
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.ingest.stream import (
    StreamError,
    format_offsets,
    lag,
    parse_offsets,
    published_offsets,
    replay,
    skip,
    stopped_reason,
)
from mesh_assets.settings import mesh_user
from mesh_assets.workspace import all_products


def _streaming_product(name: str):
    products = {p.identifier: p for p in all_products() if p.stream is not None}
    if name not in products:
        known = ", ".join(sorted(products)) or "none"
        raise SystemExit(f"mesh stream: {name} is not a streaming product (streaming products: {known})")
    return products[name]


def cmd_status(args) -> int:
    """Each streaming product: topic, main's position, messages behind, stopped or running."""
    catalog = open_catalog()
    for product in all_products():
        if product.stream is None:
            continue
        position, state = {}, "never read"
        if catalog.table_exists(product.table_identifier):
            table = catalog.load_table(product.table_identifier)
            position = published_offsets(table)
            state = stopped_reason(table, product) or "running"
        try:
            behind = str(lag(product, position))
        except StreamError as exc:
            behind = f"? ({exc})"
        say(
            f"{product.identifier}: topic {product.stream.topic}, position {format_offsets(position)}, "
            f"{behind} messages behind; {state}"
        )
    return 0


def _move(args, verb) -> int:
    product = _streaming_product(args.product)
    try:
        to = parse_offsets(args.to)
        done = verb(product, open_catalog(), to, user=mesh_user())
    except (ValueError, StreamError) as exc:
        raise SystemExit(f"mesh stream {args.stream_command}: {exc}") from None
    say(
        f"{done.product}: position moved from {format_offsets(done.before)} to {format_offsets(done.after)} "
        f"(snapshot {done.snapshot_id}, by {mesh_user()})"
        + (
            f"; {done.quarantined} message(s) set aside in the quarantine table"
            if args.stream_command == "skip"
            else ""
        )
        + "; the stream runs again"
    )
    return 0


def add_cli(subparsers) -> None:
    stream = add_verb(subparsers, "stream")
    verbs = stream.add_subparsers(dest="stream_command", required=True)
    verbs.add_parser("status", help="position, lag and state of every streaming product").set_defaults(
        fn=cmd_status
    )
    for name, verb, what in (
        ("replay", replay, "clear the stop; the next batch starts at OFFSETS (re-reads a rejected batch)"),
        ("skip", skip, "set the messages up to OFFSETS aside in the quarantine table and go on after them"),
    ):
        p = verbs.add_parser(name, help=what)
        p.add_argument("product", metavar="DOMAIN.PRODUCT")
        p.add_argument("--to", required=True, metavar="OFFSETS", help="PARTITION:OFFSET,... e.g. 0:120,1:98")
        p.set_defaults(fn=lambda args, verb=verb: _move(args, verb))
