"""What every verb shares: printing and the domains a command names."""

from __future__ import annotations

from mesh_assets.workspace import WorkspaceError, select_domains


def say(message: str) -> None:
    print(message, flush=True)


def chosen_domains(names: list[str]) -> list[str]:
    """The domains a command names (all of workspace.yaml when none); an unknown one ends the
    command with a message naming the known ones."""
    try:
        return select_domains(names)
    except WorkspaceError as exc:
        raise SystemExit(f"mesh: {exc}") from None
