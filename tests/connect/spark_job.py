"""Run by the pyspark environment's Python (tests/spark_env.py), not by pytest.

``python spark_job.py SPEC.json`` starts one Spark session configured only by the
spark-defaults.conf in ``SPARK_CONF_DIR`` (written by `mesh spark defaults`), and prints one
JSON object: each product's row count at main and at the spec's tag, and the row counts of the
tables it wrote to the spec's namespace (copy-on-write and merge-on-read deletes, a tag
before them).
"""

import json
import sys
import time

from pyspark.sql import SparkSession

started = time.monotonic()
spec = json.loads(open(sys.argv[1]).read())
# one core (the tests share the machine), no web UI
builder = (
    SparkSession.builder.master("local[1]").appName("mesh-spark-test").config("spark.ui.enabled", "false")
)
spark = builder.config("spark.sql.shuffle.partitions", "1").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
result = {"session_s": time.monotonic() - started, "counts": {}, "tag_counts": {}, "written": {}}


def count(sql):
    return spark.sql(sql).collect()[0][0]


# every count in one query: one Spark job instead of one per product and version
parts = [f"SELECT '{name}', 'main', count(*) FROM mesh.{name}" for name in spec["products"]]
parts += [
    f"SELECT '{name}', 'tag', count(*) FROM mesh.{name} VERSION AS OF '{spec['tag']}'"
    for name in spec["tag_products"]
]
for name, version, rows in spark.sql(" UNION ALL ".join(parts)).collect() if parts else []:
    result["counts" if version == "main" else "tag_counts"][name] = rows

namespace = spec["namespace"]
spark.sql(f"CREATE NAMESPACE IF NOT EXISTS mesh.{namespace}")
for table, mode in (("carrier_cow", "copy-on-write"), ("carrier_mor", "merge-on-read")):
    name = f"mesh.{namespace}.{table}"
    spark.sql(
        f"CREATE TABLE {name} USING iceberg "
        f"TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='{mode}') "
        f"AS {spec['source_sql']}"
    )
    spark.sql(f"ALTER TABLE {name} CREATE TAG `before-delete`")
    spark.sql(f"DELETE FROM {name} WHERE {spec['delete_where']}")
    result["written"][table] = {
        "rows": count(f"SELECT count(*) FROM {name}"),
        "before_delete": count(f"SELECT count(*) FROM {name} VERSION AS OF 'before-delete'"),
        "delete_files": count(f"SELECT count(*) FROM {name}.delete_files"),
    }
result["total_s"] = time.monotonic() - started
spark.stop()
print(json.dumps(result))
