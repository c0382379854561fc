"""The Iceberg sink's worker and connector configuration, without starting it: the stack's
catalog and warehouse, credentials only as references to the worker's environment, and a jar
set with one version of each artifact."""

from mesh_assets.stack.kafka_connect import JARS, IcebergSink, SinkConfig
from mesh_assets.stack.layout import DEFAULT_PORTS, StackLayout


def test_the_sink_writes_the_stacks_catalog_and_never_holds_a_credential(tmp_path):
    layout = StackLayout(root=tmp_path / "stack", ports=dict(DEFAULT_PORTS), catalog_name="mesh")
    layout.ensure_secrets()
    sink = IcebergSink(layout, SinkConfig(name="s1", topic="t", table="ops.events"), port=18083)
    connector = sink.connector_properties()
    worker = sink.worker_properties()
    assert connector["iceberg.catalog"] == "mesh"
    assert connector["iceberg.catalog.uri"] == f"jdbc:postgresql://127.0.0.1:{DEFAULT_PORTS['postgres']}/mesh"
    assert connector["iceberg.catalog.warehouse"] == "s3://warehouse/mesh"
    assert connector["iceberg.control.topic"] == "control-s1"
    assert connector["iceberg.catalog.jdbc.password"] == "${env:MESH_STACK_CATALOG_PASSWORD}"
    assert connector["iceberg.catalog.s3.secret-access-key"] == "${env:MESH_STACK_S3_SECRET_KEY}"
    assert worker["listeners"] == "http://127.0.0.1:18083"
    secrets = [layout.secret(n) for n in ("catalog-password", "s3-access-key", "s3-secret-key")]
    written = "\n".join([*connector.values(), *worker.values()])
    assert not [s for s in secrets if s in written]


def test_the_jar_set_has_one_version_of_each_artifact():
    artifacts = [(group, artifact) for group, artifact, *_ in JARS]
    assert len(artifacts) == len(set(artifacts)) == 135
