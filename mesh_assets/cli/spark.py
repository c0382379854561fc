"""``mesh spark defaults [--conf-dir DIR]``: a spark-defaults.conf for the current mode
(:mod:`mesh_assets.spark`). Start Spark with ``SPARK_CONF_DIR=DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

from mesh_assets.cli import add_verb
from mesh_assets.spark import PYSPARK_VERSION, SparkConfigError, write_defaults
from mesh_assets.tools import ToolError


def _cmd_defaults(args) -> int:
    try:
        written = write_defaults(Path(args.conf_dir) if args.conf_dir else None)
    except (SparkConfigError, ToolError) as exc:
        print(f"mesh spark defaults: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {written.path}")
    for jar in written.jars:
        print(f"  jar {jar}")
    for path in written.credentials:
        print(f"  credentials {path} (mode 0600, named by the configuration)")
    print(f"use it with pyspark {PYSPARK_VERSION}: export SPARK_CONF_DIR={written.path.parent}")
    return 0


def add_cli(subparsers) -> None:
    spark = add_verb(subparsers, "spark")
    verbs = spark.add_subparsers(dest="spark_command", required=True)
    defaults = verbs.add_parser("defaults", help="write spark-defaults.conf for the current mode")
    defaults.add_argument("--conf-dir", help="where to write it (default $MESH_HOME/spark)")
    defaults.set_defaults(fn=_cmd_defaults)
