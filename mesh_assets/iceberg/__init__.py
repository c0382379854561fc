"""Iceberg: the catalog, commits (one retry policy), write-audit-publish (the only code that moves
main or a tag), schema evolution, versions and time travel, table maintenance."""
