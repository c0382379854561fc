# The mesh's access policy: one policy, two enforcement points.
#
# Trino's OPA access control asks it (opa.policy.uri = /v1/data/trino/allow, batched-uri =
# /v1/data/trino/batch, row-filters-uri = /v1/data/trino/rowFilters, column-masking-uri =
# /v1/data/trino/columnMask, batch-column-masking-uri = /v1/data/trino/batchColumnMasks), and the
# local read path (mesh_assets.access: DuckDB and pyiceberg reads) asks the same rules through
# `local_table_decision`, which evaluates exactly Trino's three questions for one table.
#
# The rules are fixed; what they decide from is data, generated from the data contracts and the
# mesh's users file by `mesh access build` (data.mesh, see mesh_assets/access/policy_data.py):
#
#   data.mesh.catalog             the Trino catalog of the products ("iceberg")
#   data.mesh.platform            {users, groups}: the platform's service identities, full access
#   data.mesh.domain_groups[g]    the domain whose pipeline (service account domain-<name>) group g is
#   data.mesh.tables[schema][t]   the product ("domain.product") a table belongs to
#   data.mesh.products[p]         {roles: {role: {access, clearance, rowFilter}},
#                                  columns: {name: {classification, masking}}}
#
# Who the user is and which groups they belong to comes from the request: Trino authenticates the
# user (a password over HTTPS on the local stack) and its group provider (a file on the local
# stack, the identity provider in production) fills input.context.identity.groups; the local
# read path sends the same groups. A user other than the one who logged in is an impersonation
# (ImpersonateUser, asked with the logged-in identity): only the platform's identities may.
package trino

import rego.v1

default allow := false

identity := input.context.identity

groups contains g if some g in identity.groups

catalog := data.mesh.catalog

# --- the platform: the service user that ingests, runs dbt, checks and maintains ------------

is_platform if identity.user in data.mesh.platform.users

is_platform if {
	some g in groups
	g in data.mesh.platform.groups
}

allow if is_platform

# --- a domain's pipeline: its service account, in group domain_<name> ------------------------
#
# Everything in the domain's own schema (its products, their staging and quarantine tables,
# dbt's DDL, maintenance) and reading other domains' public products, whole (no row filter, no
# mask: a pipeline consumes the output port; its own contract classifies what it derives).
# Other domains' internal products are refused like any table no role grants.

pipeline_domains contains d if {
	some g in groups
	d := data.mesh.domain_groups[g]
}

# the schemas an action touches (its resource and, for renames, its target)
touched contains [r.catalogName, r.schemaName] if {
	some key in {"resource", "targetResource"}
	some kind in {"table", "schema"}
	r := input.action[key][kind]
}

allow if {
	some d in pipeline_domains
	count(touched) > 0
	every pair in touched {
		pair == [catalog, d]
	}
}

# dbt-trino lists relations through the system catalog's metadata tables, whose rows Trino
# filters by what the account may see (FilterTables)
allow if {
	count(pipeline_domains) > 0
	input.action.operation in {"SelectFromColumns", "FilterTables", "FilterColumns"}
	input.action.resource.table.catalogName == "system"
	input.action.resource.table.schemaName == "metadata"
}

pipeline_reads(p) if {
	count(pipeline_domains) > 0
	data.mesh.products[p].visibility == "public"
}

# read whole: no row filter, no mask
unrestricted(_) if is_platform

unrestricted(table) if {
	some d in pipeline_domains
	table.catalogName == catalog
	table.schemaName == d
}

unrestricted(table) if pipeline_reads(product_of(table))

# --- everyone else: read what a contract grants to one of their groups ------------------------

# per-query and per-session operations: harmless on their own, access is decided per table
allow if input.action.operation in {
	"ExecuteQuery", "SetSystemSessionProperty", "SetCatalogSessionProperty",
}

# functions of the system catalog only: the catalog's own (iceberg.system.table_changes, ...)
# read a table's rows without its row filters and masks
allow if {
	input.action.operation == "ExecuteFunction"
	input.action.resource.function.catalogName == "system"
}

allow if {
	input.action.operation in {"AccessCatalog", "FilterCatalogs", "ShowSchemas"}
	input.action.resource.catalog.name in {catalog, "system"}
}

allow if {
	input.action.operation in {"FilterSchemas", "ShowTables", "ShowFunctions"}
	visible_schema(input.action.resource.schema)
}

allow if {
	input.action.operation in {
		"FilterTables", "SelectFromColumns", "FilterColumns", "ShowColumns", "ShowCreateTable",
	}
	readable_table(input.action.resource.table)
}

# SQL clients (Superset's Trino dialect) read table comments from system.metadata.table_comments,
# whose rows Trino filters by what the account may see (FilterTables)
allow if {
	input.action.operation in {"SelectFromColumns", "FilterColumns"}
	input.action.resource.table.catalogName == "system"
	input.action.resource.table.schemaName == "metadata"
	input.action.resource.table.tableName == "table_comments"
}

# Trino's filtering calls in one request (opa.policy.batched-uri): the indexes allowed
batch contains i if {
	input.action.operation != "FilterColumns"
	some i, resource in input.action.filterResources
	allow with input.action.resource as resource
}

# FilterColumns sends one table with its column names: the answer is the indexes of the columns
# shown (all of a readable table's: access is decided per table, masks hide what a column holds)
batch contains i if {
	input.action.operation == "FilterColumns"
	[resource] := input.action.filterResources
	allow with input.action.resource as resource
	some i, _ in resource.table.columns
}

visible_schema(schema) if {
	schema.catalogName == catalog
	schema.schemaName == "information_schema"
}

visible_schema(schema) if {
	schema.catalogName == catalog
	some table, _ in data.mesh.tables[schema.schemaName]
	readable_table({"catalogName": catalog, "schemaName": schema.schemaName, "tableName": table})
}

readable_table(table) if {
	table.catalogName in {catalog, "system"}
	table.schemaName == "information_schema"
}

readable_table(table) if count(table_roles(table)) > 0

readable_table(table) if pipeline_reads(product_of(table))

# the product a table of the catalog holds, if any
product_of(table) := data.mesh.tables[table.schemaName][table.tableName] if {
	table.catalogName == catalog
}

# the contract roles through which the user reads product p
reader_roles(p) := {spec |
	some role, spec in data.mesh.products[p].roles
	role in groups
	spec.access == "read"
}

table_roles(table) := reader_roles(product_of(table))

# --- row filters (opa.policy.row-filters-uri) ---------------------------------------------
#
# A reader sees the rows of at least one of their roles: a role without a filter sees every
# row; otherwise the filters of their roles, OR-ed. One expression, so Trino ANDs nothing.

rowFilters contains {"expression": expression} if {
	not unrestricted(input.action.resource.table)
	roles := table_roles(input.action.resource.table)
	count(roles) > 0
	every spec in roles {
		spec.rowFilter
	}
	expression := concat(" OR ", sort([f | some spec in roles; f := spec.rowFilter]))
}

# --- column masks (opa.policy.column-masking-uri and batch-column-masking-uri) ----------------
#
# A confidential or pii column is masked unless one of the reader's roles has clearance for its
# classification. The expression keeps the column's type; `hash` keeps joins working (the same
# value hashes the same in every table and in both engines).

columnMask := {"expression": expression} if {
	expression := mask_expression(input.action.resource.column)
}

batchColumnMasks contains {"index": i, "viewExpression": {"expression": expression}} if {
	some i, resource in input.action.filterResources
	expression := mask_expression(resource.column)
}

mask_expression(column) := expression if {
	table := {
		"catalogName": column.catalogName, "schemaName": column.schemaName,
		"tableName": column.tableName,
	}
	not unrestricted(table)
	p := product_of(table)
	spec := data.mesh.products[p].columns[column.columnName]
	spec.masking
	not cleared(table_roles(table), spec.classification)
	expression := render_mask(spec.masking, quote_identifier(column.columnName), column.columnType)
}

cleared(roles, classification) if {
	some spec in roles
	classification in spec.clearance
}

# The engine asking: Trino says its version in softwareStack; the local read path says duckdb.
default dialect := "trino"

dialect := "duckdb" if input.context.softwareStack.duckdbVersion

render_mask("null", _, column_type) := sprintf("CAST(NULL AS %s)", [column_type])

render_mask("hash", column, _) := sprintf("lower(to_hex(sha256(to_utf8(%s))))", [column]) if dialect == "trino"

render_mask("hash", column, _) := sprintf("sha256(%s)", [column]) if dialect == "duckdb"

render_mask("partial", column, _) := sprintf("CASE WHEN %s IS NULL THEN NULL ELSE substr(%s, 1, 2) || '****' END", [column, column])

quote_identifier(name) := concat("", ["\"", replace(name, "\"", "\"\""), "\""])

# --- the local read path: Trino's three questions about one table, in one evaluation ---------
#
# input: {"context": <as Trino sends it>, "table": {"catalogName", "schemaName", "tableName",
#         "columns": [{"name", "type"}]}}

local_table_decision := {
	"allow": allowed,
	"rowFilters": filters,
	"columnMasks": masks,
} if {
	table := object.filter(input.table, {"catalogName", "schemaName", "tableName"})
	select := {"context": input.context, "action": {
		"operation": "SelectFromColumns",
		"resource": {"table": object.union(table, {"columns": [c.name | some c in input.table.columns]})},
	}}
	allowed := allow with input as select
	row := {"context": input.context, "action": {"operation": "GetRowFilters", "resource": {"table": table}}}
	filters := [f.expression | some f in rowFilters] with input as row
	masks := {c.name: m |
		some c in input.table.columns
		m := local_column_mask(table, c)
	}
}

local_column_mask(table, c) := m if {
	column := object.union(table, {"columnName": c.name, "columnType": c.type})
	m := columnMask.expression with input as {"context": input.context, "action": {
		"operation": "GetColumnMask",
		"resource": {"column": column},
	}}
}
