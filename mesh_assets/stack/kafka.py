"""Apache Kafka, one KRaft node (broker and controller in one process, no ZooKeeper).

Apache publishes the broker's binary tarball on its download site only, not on Maven Central;
the broker's jars are there (``org.apache.kafka:kafka_2.13`` and its runtime dependencies).
:data:`JARS` pins that dependency set, as ``mvn dependency:list -DincludeScope=runtime``
resolves it for ``kafka_2.13`` + ``kafka-storage`` + a log4j2 binding at :data:`VERSION`
(regenerate it the same way when the version changes): each jar is downloaded once from Maven
Central into the tools cache, its SHA-1 checked against the registry's, and linked into one
folder that is the broker's class path. No Maven installation is needed at run time.

The node listens on ``MESH_KAFKA_PORT`` (9092, clients) and ``MESH_KAFKA_CONTROLLER_PORT`` (9093,
the KRaft quorum) on 127.0.0.1, without authentication: the stack is a single-user loopback
setup, as its S3 store and OPA are. Its log segments live in ``stack/kafka/data``; the first
start formats them (``kafka.tools.StorageTool format``, the ``kafka-storage.sh`` of the
tarball) with a cluster id kept in ``stack/kafka/cluster-id``. Topics are not created on first
use (``auto.create.topics.enable=false``): a consumer of a misspelled topic gets an error
instead of an empty new topic.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from mesh_assets import settings, tools
from mesh_assets.stack.layout import HOST, StackError, StackLayout
from mesh_assets.stack.processes import ServiceProcess, port_accepts

NAME = "kafka"
VERSION = "4.3.1"
NODE_ID = 1
TIMEOUT_S = 3.0

JARS = (
    ("at.yawk.lz4", "lz4-java", "1.10.2"),
    ("com.dynatrace.hash4j", "hash4j", "0.22.0"),
    ("com.fasterxml.jackson.core", "jackson-annotations", "2.21"),
    ("com.fasterxml.jackson.core", "jackson-core", "2.21.2"),
    ("com.fasterxml.jackson.core", "jackson-databind", "2.21.2"),
    ("com.fasterxml.jackson.dataformat", "jackson-dataformat-csv", "2.21.2"),
    ("com.fasterxml.jackson.dataformat", "jackson-dataformat-yaml", "2.21.2"),
    ("com.fasterxml.jackson.datatype", "jackson-datatype-jdk8", "2.21.2"),
    ("com.github.ben-manes.caffeine", "caffeine", "3.2.0"),
    ("com.github.luben", "zstd-jni", "1.5.6-10"),
    ("com.google.re2j", "re2j", "1.8"),
    ("com.typesafe.scala-logging", "scala-logging_2.13", "3.9.6"),
    ("com.yammer.metrics", "metrics-core", "2.2.0"),
    ("commons-beanutils", "commons-beanutils", "1.11.0"),
    ("commons-collections", "commons-collections", "3.2.2"),
    ("commons-digester", "commons-digester", "2.1"),
    ("commons-logging", "commons-logging", "1.3.5"),
    ("commons-validator", "commons-validator", "1.10.1"),
    ("net.sf.jopt-simple", "jopt-simple", "5.0.4"),
    ("net.sourceforge.argparse4j", "argparse4j", "0.7.0"),
    ("org.apache.kafka", "kafka-clients", VERSION),
    ("org.apache.kafka", "kafka-coordinator-common", VERSION),
    ("org.apache.kafka", "kafka-group-coordinator-api", VERSION),
    ("org.apache.kafka", "kafka-group-coordinator", VERSION),
    ("org.apache.kafka", "kafka-metadata", VERSION),
    ("org.apache.kafka", "kafka-raft", VERSION),
    ("org.apache.kafka", "kafka-server-common", VERSION),
    ("org.apache.kafka", "kafka-server", VERSION),
    ("org.apache.kafka", "kafka-share-coordinator", VERSION),
    ("org.apache.kafka", "kafka-storage-api", VERSION),
    ("org.apache.kafka", "kafka-storage", VERSION),
    ("org.apache.kafka", "kafka-tools-api", VERSION),
    ("org.apache.kafka", "kafka-transaction-coordinator", VERSION),
    ("org.apache.kafka", "kafka_2.13", VERSION),
    ("org.apache.logging.log4j", "log4j-api", "2.24.3"),
    ("org.apache.logging.log4j", "log4j-core", "2.24.3"),
    ("org.apache.logging.log4j", "log4j-slf4j2-impl", "2.24.3"),
    ("org.bitbucket.b_c", "jose4j", "0.9.6"),
    ("org.hdrhistogram", "HdrHistogram", "2.2.2"),
    ("org.jspecify", "jspecify", "1.0.0"),
    ("org.pcollections", "pcollections", "4.0.2"),
    ("org.scala-lang", "scala-library", "2.13.18"),
    ("org.scala-lang", "scala-reflect", "2.13.18"),
    ("org.slf4j", "slf4j-api", "2.0.17"),
    ("org.xerial.snappy", "snappy-java", "1.1.10.7"),
    ("org.yaml", "snakeyaml", "2.5"),
)

# A small heap and the serial collector: a loopback broker of test and demo topics, which must
# not take the cores from Trino starting at the same moment
JVM_OPTIONS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Dfile.encoding=UTF-8")

LOG4J2 = """\
# Written by `mesh stack up`: warnings and errors, and the line that says the node started
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def install() -> Path:
    """The broker's class path folder (every jar of :data:`JARS`), made once in the tools cache."""
    target = tools.cache_dir() / "kafka" / f"kafka_2.13-{VERSION}"
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for group, artifact, version in JARS:
        try:
            jar = tools.maven_artifact(group, artifact, version)
        except tools.ToolError as exc:
            raise StackError(
                f"Kafka {VERSION}: {group}:{artifact}:{version} could not be downloaded: {exc}"
            ) from None
        link = target / jar.name
        if not link.exists():
            try:
                os.link(jar, link)
            except OSError:  # another file system
                shutil.copyfile(jar, link)
    (target / ".complete").write_text(f"{len(JARS)} jars of kafka_2.13 {VERSION}\n")
    return target


def bootstrap_servers(layout: StackLayout) -> str:
    """What a client connects to (``MESH_KAFKA_BOOTSTRAP`` of production mode)."""
    return f"{HOST}:{layout.ports[NAME]}"


class Kafka:
    def __init__(self, layout: StackLayout):
        self.layout = layout
        self.process = ServiceProcess(NAME, layout, marker="kafka.Kafka")
        self.base = layout.root / "kafka"
        self.data = self.base / "data"

    @property
    def port(self) -> int:
        return self.layout.ports[NAME]

    @property
    def controller_port(self) -> int:
        return self.layout.ports["kafka-controller"]

    @property
    def bootstrap(self) -> str:
        return bootstrap_servers(self.layout)

    def server_properties(self) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.voters": f"{NODE_ID}@{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data),
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            # one node: the internal topics cannot have more replicas than that
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        return "# Written by `mesh stack up`\n" + "".join(f"{k}={v}\n" for k, v in props.items())

    def _java(self, java: Path, libs: Path, main: list[str]) -> list[str]:
        return [
            str(java / "bin" / "java"),
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.base / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            *main,
        ]

    def _env(self, java: Path) -> dict[str, str]:
        return {
            "PATH": f"{java / 'bin'}:{settings.inherited_path()}",
            "JAVA_HOME": str(java),
            "HOME": str(self.base),
        }

    def configure(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "log4j2.properties").write_text(LOG4J2)
        config = self.base / "server.properties"
        config.write_text(self.server_properties())
        return config

    def cluster_id(self) -> str:
        """The KRaft cluster id (22 characters of URL-safe base64, as ``kafka-storage random-uuid``
        makes it), generated once per stack."""
        path = self.base / "cluster-id"
        if not path.exists():
            path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode() + "\n")
        return path.read_text().strip()

    def format(self, libs: Path, java: Path, config: Path) -> bool:
        """Format the log directory on first start; False when it already was."""
        if (self.data / "meta.properties").exists():
            return False
        # `--cluster-id=...` in one argument: an id may start with "-", which the parser
        # would otherwise take for an option
        main = ["kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id()}", "-c", str(config)]
        result = subprocess.run(
            self._java(java, libs, main), env=self._env(java), capture_output=True, text=True, cwd=self.base
        )
        if result.returncode != 0:
            raise StackError(
                f"formatting Kafka's log directory {self.data} failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-1500:]}\n`mesh stack down --purge` deletes the stack's data"
            )
        return True

    def start(self, libs: Path, java: Path) -> int:
        config = self.configure()
        self.format(libs, java, config)
        return self.process.start(
            self._java(java, libs, ["kafka.Kafka", str(config)]), env=self._env(java), cwd=self.base
        )

    def _admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": int(TIMEOUT_S * 1000)})

    def ready(self) -> bool:
        if not port_accepts(self.port):
            return False
        self._admin().list_topics(timeout=TIMEOUT_S)
        return True

    def health(self) -> str:
        """'...' or raises ``ConnectionError``: the client port refuses connections, or the node
        does not answer a metadata request in time (its controller not elected)."""
        if not port_accepts(self.port):
            raise ConnectionError(f"port refused: nothing accepts connections on {self.bootstrap}")
        try:
            metadata = self._admin().list_topics(timeout=TIMEOUT_S)
        except KafkaException as exc:
            raise ConnectionError(
                f"no metadata from {self.bootstrap} within {TIMEOUT_S:.0f} s: {exc}"
            ) from None
        topics = [t for t in metadata.topics if not t.startswith("__")]
        return f"Kafka {VERSION} (KRaft), bootstrap {self.bootstrap}, {len(metadata.brokers)} broker, {len(topics)} topics"

    def stop(self) -> bool:
        return self.process.stop(timeout_s=30)
