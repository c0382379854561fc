"""The Apache Iceberg sink connector for Kafka Connect, run beside the stack: the baseline the
platform's own consumer (:mod:`mesh_assets.ingest.stream`) is measured against.

A Kafka Connect worker in standalone mode (``org.apache.kafka:connect-runtime``) runs one
``org.apache.iceberg.connect.IcebergSinkConnector`` that writes a topic into an Iceberg table of
the stack's catalog: the same JDBC catalog on PostgreSQL (catalog name = the SqlCatalog's, so
pyiceberg and Trino see the table) and the same S3 warehouse (``S3FileIO`` on versitygw).
:data:`JARS` is the worker's and the connector's class path as ``mvn dependency:list
-DincludeScope=runtime`` resolves it for ``connect-runtime`` + ``connect-json`` at Kafka's
:data:`~mesh_assets.stack.kafka.VERSION`, ``iceberg-kafka-connect`` + ``iceberg-aws`` +
``iceberg-parquet`` at :data:`ICEBERG_VERSION`, the AWS SDK's ``s3`` + ``url-connection-client``
(without its Netty and Apache clients), ``hadoop-client-api`` + ``hadoop-client-runtime`` (Parquet
writes through Hadoop's configuration classes), the PostgreSQL driver, and the log4j2 binding of
the broker; regenerate it the same way when a version changes. Each jar is downloaded once from
Maven Central into the tools cache, its SHA-1 checked against the registry's, as the broker's are.

The connector commits on its own clock: every ``iceberg.control.commit.interval-ms`` its
coordinator collects the data files the workers wrote (through the control topic, which the
broker does not create on first use: :meth:`IcebergSink.start` creates it) and commits them
in one snapshot that records the consumed offsets. Its credentials reach the worker through its
environment (Kafka's ``EnvVarConfigProvider``), never through a file. The worker's REST port is
``MESH_KAFKA_CONNECT_PORT`` (8083).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from mesh_assets import settings, tools
from mesh_assets.stack.kafka import VERSION, bootstrap_servers
from mesh_assets.stack.layout import CATALOG_DB, CATALOG_USER, HOST, S3_REGION, StackError, StackLayout
from mesh_assets.stack.processes import port_is_free, tail
from mesh_assets.stack.trino import java_home

ICEBERG_VERSION = "1.12.0"
CONNECTOR_CLASS = "org.apache.iceberg.connect.IcebergSinkConnector"
START_TIMEOUT_S = 90.0

JARS = (
    ("at.yawk.lz4", "lz4-java", "1.10.2"),
    ("com.fasterxml.jackson.core", "jackson-annotations", "2.21"),
    ("com.fasterxml.jackson.core", "jackson-core", "2.22.2"),
    ("com.fasterxml.jackson.core", "jackson-databind", "2.21.2"),
    ("com.fasterxml.jackson.datatype", "jackson-datatype-jdk8", "2.21.2"),
    ("com.fasterxml.jackson.jakarta.rs", "jackson-jakarta-rs-base", "2.21.2"),
    ("com.fasterxml.jackson.jakarta.rs", "jackson-jakarta-rs-json-provider", "2.21.2"),
    ("com.fasterxml.jackson.module", "jackson-module-blackbird", "2.21.2"),
    ("com.fasterxml.jackson.module", "jackson-module-jakarta-xmlbind-annotations", "2.21.2"),
    ("com.github.ben-manes.caffeine", "caffeine", "3.2.4"),
    ("com.github.luben", "zstd-jni", "1.5.6-10"),
    ("com.google.code.findbugs", "jsr305", "3.0.2"),
    ("com.google.errorprone", "error_prone_annotations", "2.49.0"),
    ("com.sun.activation", "jakarta.activation", "2.0.1"),
    ("commons-codec", "commons-codec", "1.19.0"),
    ("commons-io", "commons-io", "2.20.0"),
    ("commons-logging", "commons-logging", "1.2"),
    ("commons-pool", "commons-pool", "1.6"),
    ("dev.failsafe", "failsafe", "3.3.2"),
    ("io.airlift", "aircompressor", "2.0.3"),
    ("io.github.classgraph", "classgraph", "4.8.179"),
    ("io.swagger.core.v3", "swagger-annotations", "2.2.39"),
    ("jakarta.activation", "jakarta.activation-api", "2.1.0"),
    ("jakarta.annotation", "jakarta.annotation-api", "2.1.1"),
    ("jakarta.inject", "jakarta.inject-api", "2.0.1"),
    ("jakarta.servlet", "jakarta.servlet-api", "6.0.0"),
    ("jakarta.validation", "jakarta.validation-api", "3.0.2"),
    ("jakarta.ws.rs", "jakarta.ws.rs-api", "3.1.0"),
    ("jakarta.xml.bind", "jakarta.xml.bind-api", "3.0.1"),
    ("javax.activation", "activation", "1.1.1"),
    ("javax.activation", "javax.activation-api", "1.2.0"),
    ("javax.annotation", "javax.annotation-api", "1.3.2"),
    ("javax.xml.bind", "jaxb-api", "2.3.1"),
    ("org.apache.avro", "avro", "1.12.2"),
    ("org.apache.commons", "commons-compress", "1.28.0"),
    ("org.apache.commons", "commons-lang3", "3.12.0"),
    ("org.apache.hadoop", "hadoop-client-api", "3.4.1"),
    ("org.apache.hadoop", "hadoop-client-runtime", "3.4.1"),
    ("org.apache.httpcomponents.client5", "httpclient5", "5.6.4"),
    ("org.apache.httpcomponents.core5", "httpcore5", "5.4.3"),
    ("org.apache.httpcomponents.core5", "httpcore5-h2", "5.4.3"),
    ("org.apache.iceberg", "iceberg-api", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-aws", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-bundled-guava", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-common", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-core", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-data", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-kafka-connect", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-kafka-connect-events", ICEBERG_VERSION),
    ("org.apache.iceberg", "iceberg-parquet", ICEBERG_VERSION),
    ("org.apache.kafka", "connect-api", VERSION),
    ("org.apache.kafka", "connect-json", VERSION),
    ("org.apache.kafka", "connect-runtime", VERSION),
    ("org.apache.kafka", "connect-transforms", VERSION),
    ("org.apache.kafka", "kafka-clients", VERSION),
    ("org.apache.logging.log4j", "log4j-api", "2.24.3"),
    ("org.apache.logging.log4j", "log4j-core", "2.24.3"),
    ("org.apache.logging.log4j", "log4j-slf4j2-impl", "2.24.3"),
    ("org.apache.maven", "maven-artifact", "3.9.15"),
    ("org.apache.orc", "orc-core", "1.9.9", "nohive"),
    ("org.apache.orc", "orc-shims", "1.9.9"),
    ("org.apache.parquet", "parquet-avro", "1.17.1"),
    ("org.apache.parquet", "parquet-column", "1.17.1"),
    ("org.apache.parquet", "parquet-common", "1.17.1"),
    ("org.apache.parquet", "parquet-encoding", "1.17.1"),
    ("org.apache.parquet", "parquet-format-structures", "1.17.1"),
    ("org.apache.parquet", "parquet-hadoop", "1.17.1"),
    ("org.apache.parquet", "parquet-jackson", "1.17.1"),
    ("org.apache.parquet", "parquet-variant", "1.17.1"),
    ("org.bitbucket.b_c", "jose4j", "0.9.6"),
    ("org.checkerframework", "checker-qual", "3.55.1"),
    ("org.codehaus.plexus", "plexus-utils", "3.6.1"),
    ("org.eclipse.jetty", "jetty-alpn-client", "12.0.34"),
    ("org.eclipse.jetty", "jetty-client", "12.0.34"),
    ("org.eclipse.jetty", "jetty-http", "12.0.34"),
    ("org.eclipse.jetty", "jetty-io", "12.0.34"),
    ("org.eclipse.jetty", "jetty-security", "12.0.34"),
    ("org.eclipse.jetty", "jetty-server", "12.0.34"),
    ("org.eclipse.jetty", "jetty-session", "12.0.34"),
    ("org.eclipse.jetty", "jetty-util", "12.0.34"),
    ("org.eclipse.jetty.ee10", "jetty-ee10-servlet", "12.0.34"),
    ("org.eclipse.jetty.ee10", "jetty-ee10-servlets", "12.0.34"),
    ("org.glassfish.hk2", "hk2-api", "3.0.6"),
    ("org.glassfish.hk2", "hk2-locator", "3.0.6"),
    ("org.glassfish.hk2", "hk2-utils", "3.0.6"),
    ("org.glassfish.hk2", "osgi-resource-locator", "1.0.3"),
    ("org.glassfish.hk2.external", "aopalliance-repackaged", "3.0.6"),
    ("org.glassfish.jersey.containers", "jersey-container-servlet", "3.1.10"),
    ("org.glassfish.jersey.containers", "jersey-container-servlet-core", "3.1.10"),
    ("org.glassfish.jersey.core", "jersey-client", "3.1.10"),
    ("org.glassfish.jersey.core", "jersey-common", "3.1.10"),
    ("org.glassfish.jersey.core", "jersey-server", "3.1.10"),
    ("org.glassfish.jersey.inject", "jersey-hk2", "3.1.10"),
    ("org.javassist", "javassist", "3.30.2-GA"),
    ("org.jspecify", "jspecify", "1.0.0"),
    ("org.locationtech.jts", "jts-core", "1.20.0"),
    ("org.postgresql", "postgresql", "42.7.14"),
    ("org.reactivestreams", "reactive-streams", "1.0.4"),
    ("org.roaringbitmap", "RoaringBitmap", "1.6.23"),
    ("org.slf4j", "slf4j-api", "2.0.17"),
    ("org.threeten", "threeten-extra", "1.7.1"),
    ("org.xerial.snappy", "snappy-java", "1.1.10.4"),
    ("software.amazon.awssdk", "annotations", "2.57.8"),
    ("software.amazon.awssdk", "arns", "2.57.8"),
    ("software.amazon.awssdk", "auth", "2.57.8"),
    ("software.amazon.awssdk", "aws-core", "2.57.8"),
    ("software.amazon.awssdk", "aws-json-protocol", "2.57.8"),
    ("software.amazon.awssdk", "aws-query-protocol", "2.57.8"),
    ("software.amazon.awssdk", "aws-xml-protocol", "2.57.8"),
    ("software.amazon.awssdk", "checksums", "2.57.8"),
    ("software.amazon.awssdk", "checksums-spi", "2.57.8"),
    ("software.amazon.awssdk", "crt-core", "2.57.8"),
    ("software.amazon.awssdk", "endpoints-spi", "2.57.8"),
    ("software.amazon.awssdk", "eventstream", "2.57.8"),
    ("software.amazon.awssdk", "http-auth", "2.57.8"),
    ("software.amazon.awssdk", "http-auth-aws", "2.57.8"),
    ("software.amazon.awssdk", "http-auth-aws-eventstream", "2.57.8"),
    ("software.amazon.awssdk", "http-auth-spi", "2.57.8"),
    ("software.amazon.awssdk", "http-client-spi", "2.57.8"),
    ("software.amazon.awssdk", "identity-spi", "2.57.8"),
    ("software.amazon.awssdk", "json-utils", "2.57.8"),
    ("software.amazon.awssdk", "kms", "2.57.8"),
    ("software.amazon.awssdk", "metrics-spi", "2.57.8"),
    ("software.amazon.awssdk", "profiles", "2.57.8"),
    ("software.amazon.awssdk", "protocol-core", "2.57.8"),
    ("software.amazon.awssdk", "regions", "2.57.8"),
    ("software.amazon.awssdk", "retries", "2.57.8"),
    ("software.amazon.awssdk", "retries-spi", "2.57.8"),
    ("software.amazon.awssdk", "s3", "2.57.8"),
    ("software.amazon.awssdk", "sdk-core", "2.57.8"),
    ("software.amazon.awssdk", "sts", "2.57.8"),
    ("software.amazon.awssdk", "third-party-jackson-core", "2.57.8"),
    ("software.amazon.awssdk", "url-connection-client", "2.57.8"),
    ("software.amazon.awssdk", "utils", "2.57.8"),
    ("software.amazon.awssdk", "utils-lite", "2.57.8"),
)

JVM_OPTIONS = ("-Xms128m", "-Xmx768m", "-XX:+UseSerialGC", "-Dfile.encoding=UTF-8")

LOG4J2 = """\
# Written by mesh_assets.stack.kafka_connect: warnings and errors, and the connector's commits
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.commit.name = org.apache.iceberg.connect.channel.Coordinator
logger.commit.level = INFO
"""


def install() -> Path:
    """The worker's class path folder (every jar of :data:`JARS`), made once in the tools cache."""
    target = tools.cache_dir() / "kafka" / f"connect-{VERSION}-iceberg-{ICEBERG_VERSION}"
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for group, artifact, version, *classifier in JARS:
        try:
            jar = tools.maven_artifact(
                group, artifact, version, classifier=classifier[0] if classifier else None
            )
        except tools.ToolError as exc:
            raise StackError(
                f"Kafka Connect {VERSION} with the Iceberg sink {ICEBERG_VERSION}: "
                f"{group}:{artifact}:{version} could not be downloaded: {exc}"
            ) from None
        link = target / jar.name
        if not link.exists():
            try:
                os.link(jar, link)
            except OSError:  # another file system
                shutil.copyfile(jar, link)
    (target / ".complete").write_text(
        f"{len(JARS)} jars of connect-runtime {VERSION} + iceberg {ICEBERG_VERSION}\n"
    )
    return target


@dataclass(frozen=True)
class SinkConfig:
    """What one sink writes: ``topic`` into the existing table ``table`` (``namespace.name``),
    committing every ``commit_interval_ms``."""

    name: str
    topic: str
    table: str
    commit_interval_ms: int = 5000

    @property
    def control_topic(self) -> str:
        return f"control-{self.name}"


class IcebergSink:
    """One Kafka Connect standalone worker running one Iceberg sink (a context manager: stopped
    on exit). The table must exist: the sink writes the contract's schema pyiceberg created, so
    both writers of a benchmark produce the same table."""

    def __init__(self, layout: StackLayout, config: SinkConfig, *, port: int | None = None):
        self.layout = layout
        self.config = config
        self.port = port or settings.kafka_connect_port()
        self.base = layout.root / "kafka-connect" / config.name
        self.log = layout.logs_dir / f"kafka-connect-{config.name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def worker_properties(self) -> dict[str, str]:
        return {
            "bootstrap.servers": bootstrap_servers(self.layout),
            "listeners": self.url,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
            "offset.storage.file.filename": str(self.base / "connect.offsets"),
            # a sink task handles the connector's control messages (a coordinator asking for its
            # data files) only between polls of its topic, and an idle poll waits until the next
            # offset flush (60 s by default): flush often, so commits follow the interval
            "offset.flush.interval.ms": "500",
            # the connector is on the class path: an empty plugin folder, and plugins found by
            # their ServiceLoader manifests instead of a scan of every jar (30 s here)
            "plugin.path": str(self.base / "plugins"),
            "plugin.discovery": "service_load",
            "config.providers": "env",
            "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
        }

    def connector_properties(self) -> dict[str, str]:
        """The sink's configuration; credentials as ``${env:...}`` references."""
        port = self.layout.ports["postgres"]
        return {
            "name": self.config.name,
            "connector.class": CONNECTOR_CLASS,
            "tasks.max": "1",
            "topics": self.config.topic,
            "iceberg.tables": self.config.table,
            "iceberg.control.topic": self.config.control_topic,
            "iceberg.control.commit.interval-ms": str(self.config.commit_interval_ms),
            "iceberg.catalog": self.layout.catalog_name,
            "iceberg.catalog.type": "jdbc",
            "iceberg.catalog.uri": f"jdbc:postgresql://{HOST}:{port}/{CATALOG_DB}",
            "iceberg.catalog.jdbc.user": CATALOG_USER,
            "iceberg.catalog.jdbc.password": "${env:MESH_STACK_CATALOG_PASSWORD}",
            # the catalog tables pyiceberg creates have the V1 layout (iceberg_type column)
            "iceberg.catalog.jdbc.schema-version": "V1",
            "iceberg.catalog.warehouse": self.layout.warehouse,
            "iceberg.catalog.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
            "iceberg.catalog.s3.endpoint": self.layout.s3_endpoint,
            "iceberg.catalog.s3.path-style-access": "true",
            "iceberg.catalog.s3.access-key-id": "${env:MESH_STACK_S3_ACCESS_KEY}",
            "iceberg.catalog.s3.secret-access-key": "${env:MESH_STACK_S3_SECRET_KEY}",
            "iceberg.catalog.client.region": S3_REGION,
            "iceberg.catalog.http-client.type": "urlconnection",
        }

    def _env(self, java: Path) -> dict[str, str]:
        return {
            "PATH": f"{java / 'bin'}:{settings.inherited_path()}",
            "JAVA_HOME": str(java),
            "HOME": str(self.base),
            "MESH_STACK_CATALOG_PASSWORD": self.layout.secret("catalog-password"),
            "MESH_STACK_S3_ACCESS_KEY": self.layout.secret("s3-access-key"),
            "MESH_STACK_S3_SECRET_KEY": self.layout.secret("s3-secret-key"),
        }

    def _create_control_topic(self) -> None:
        admin = AdminClient({"bootstrap.servers": bootstrap_servers(self.layout)})
        if self.config.control_topic in admin.list_topics(timeout=10).topics:
            return
        for future in admin.create_topics([NewTopic(self.config.control_topic, 1, 1)]).values():
            future.result(timeout=30)

    def start(self) -> IcebergSink:
        """Start the worker and wait until its connector's task runs; :class:`StackError` with
        the log's tail when it does not within :data:`START_TIMEOUT_S`."""
        if not port_is_free(self.port):
            raise StackError(
                f"Kafka Connect's REST port {HOST}:{self.port} is taken; set MESH_KAFKA_CONNECT_PORT "
                "to a free port"
            )
        libs, java = install(), java_home()
        self._create_control_topic()
        (self.base / "plugins").mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        files = {
            "log4j2.properties": LOG4J2,
            "worker.properties": _properties(self.worker_properties()),
            "connector.properties": _properties(self.connector_properties()),
        }
        for name, text in files.items():
            (self.base / name).write_text(text)
        argv = [
            str(java / "bin" / "java"),
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.base / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone",
            str(self.base / "worker.properties"),
            str(self.base / "connector.properties"),
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(java),
                cwd=self.base,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackError(
                    f"Kafka Connect ended (exit {self.process.returncode}) before its Iceberg sink ran; "
                    f"{self.log}:\n{tail(self.log, 30)}"
                )
            state = self.state()
            if state == "RUNNING":
                return self
            if state == "FAILED":
                self.stop()
                raise StackError(f"the Iceberg sink {self.config.name} failed to start: {self.status()}")
            time.sleep(0.5)
        self.stop()
        raise StackError(
            f"the Iceberg sink {self.config.name} did not run within {START_TIMEOUT_S:.0f} s; "
            f"{self.log}:\n{tail(self.log, 30)}"
        )

    def status(self) -> dict | None:
        """The worker's ``/connectors/<name>/status`` answer, None while the REST port is not up."""
        try:
            with urllib.request.urlopen(f"{self.url}/connectors/{self.config.name}/status", timeout=2) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def state(self) -> str | None:
        """The state of the connector's task (RUNNING, FAILED, ...), None before it has one."""
        status = self.status()
        tasks = (status or {}).get("tasks") or []
        return tasks[0]["state"] if tasks else None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> IcebergSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _properties(values: dict[str, str]) -> str:
    return "# Written by mesh_assets.stack.kafka_connect\n" + "".join(f"{k}={v}\n" for k, v in values.items())
