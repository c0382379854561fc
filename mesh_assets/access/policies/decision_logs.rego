# Which decisions OPA's decision log keeps (decision_logs.drop_decision = /system/log/drop).
#
# Every denial is kept, and every decision about data: reads (SelectFromColumns), row filters,
# column masks, writes and DDL. Dropped: the allowed bookkeeping calls a single query makes by
# the dozen (listing catalogs, schemas, tables and columns, starting the query itself).
package system.log

import rego.v1

noise := {
	"ExecuteQuery", "ExecuteFunction", "AccessCatalog", "FilterCatalogs", "FilterSchemas",
	"FilterTables", "FilterColumns", "ShowSchemas", "ShowTables", "ShowColumns",
	"ShowFunctions", "SetSystemSessionProperty", "SetCatalogSessionProperty",
}

drop if {
	input.input.action.operation in noise
	allowed(input.result)
}

# allow (true), batch (a set of allowed indexes): a non-empty answer
allowed(true)

allowed(result) if {
	is_array(result)
	count(result) > 0
}
