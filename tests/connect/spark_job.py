"""Run by the pyspark environment's Python (tests/connect/spark_env.py), not by pytest.

``python spark_job.py SPEC.json`` starts one Spark session configured only by the
spark-defaults.conf in ``SPARK_CONF_DIR`` (written by `mesh spark defaults`), and prints one
JSON object: each product's row count at main and at the spec's tag, and the row counts of the
tables it wrote to namespace ``spark_out`` (copy-on-write and merge-on-read deletes, a tag
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


for name in spec["products"]:
    result["counts"][name] = count(f"SELECT count(*) FROM mesh.{name}")
for name in spec["tag_products"]:
    result["tag_counts"][name] = count(f"SELECT count(*) FROM mesh.{name} VERSION AS OF '{spec['tag']}'")

spark.sql("CREATE NAMESPACE IF NOT EXISTS mesh.spark_out")
for table, mode in (("carrier_cow", "copy-on-write"), ("carrier_mor", "merge-on-read")):
    name = f"mesh.spark_out.{table}"
    spark.sql(
        f"CREATE TABLE {name} USING iceberg "
        f"TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='{mode}') "
        f"AS SELECT * FROM mesh.{spec['source']}"
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
