"""The error every contract problem raises: it names the file, product and column at fault."""

from __future__ import annotations

from pathlib import Path


class ContractError(ValueError):
    """A contract cannot be used. The message names the file, product and column at fault."""

    def __init__(
        self,
        path: Path | str,
        problem: str,
        *,
        product: str | None = None,
        column: str | None = None,
        hint: str | None = None,
        key: str | None = None,
    ):
        where = [f"contract {path}"]
        if product:
            where.append(f"product {product}")
        if column:
            where.append(f"column {column}")
        message = f"{', '.join(where)}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
        self.path, self.product, self.column = str(path), product, column
        self.key = key  # the YAML key at fault, when it is not a column (``file``, ``settleSeconds``)
