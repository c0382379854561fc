"""Quality: a product's contract rules evaluated on exactly the snapshot being published.

``sql`` compiles the rules into one statement (DuckDB or Trino), ``gx`` runs what the compiler
cannot through Great Expectations on pandas (and writes GX suites), ``run`` is the only
dispatcher between the two, ``results`` holds their common verdicts, ``checks`` turns them into
Dagster asset checks that publish the audit branch when every blocking rule passed, ``report``
writes the HTML validation report, ``profiling`` proposes rules from data.
"""
