"""Governed access: one policy, from the contracts, enforced by Trino (through OPA) and by the
local read path.

* :mod:`.policy_data`  ``mesh access build``: the contracts' ``roles`` (readers, clearance, row
                       filters) and column classifications + the users file -> OPA's data and
                       Trino's group file, under ``$MESH_HOME/access``
* ``mesh_assets/access/policies/*.rego``  the policy itself (fixed, committed): table access, row
                       filters, column masks, for Trino's OPA access control
* :mod:`.opa`          asking it: the stack's OPA server, else ``opa eval`` on the same files
* :mod:`.enforce`      the local enforcement point (``mesh query --as-user``, ``read(user=)``)
* :mod:`.audit`        the decision audit log (``mesh access audit``)

The row filters it hands to the engines were parsed, checked and re-rendered (quoted) when the
contracts loaded: :mod:`mesh_assets.contract.row_filters`.
"""

from mesh_assets.access.enforce import AccessDenied

__all__ = ["AccessDenied"]
