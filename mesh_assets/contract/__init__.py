"""Data contracts (ODCS v3): the model, the parser, and what a contract derives by itself.

``model`` (DataProduct, Column, QualityRule, types), ``parser`` (one YAML file -> DataProduct),
``errors`` (ContractError naming file, product and column), ``partitions``, ``row_filters``,
``expectations`` (the quality vocabulary: pushdown, platform and GX expectations) and ``rules``
(the quality rules a contract declares). This package imports nothing else of the platform;
references between contracts are resolved by :mod:`mesh_assets.workspace`.
"""
