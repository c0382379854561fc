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


def check_status(evaluations) -> str:
    """``7/8 passed; FAILED: name`` for the check evaluations of one asset in one run (the
    demo summary and `mesh products` both print this; the latest evaluation of a check counts)."""
    latest = {e.check_name: e for e in evaluations}
    if not latest:
        return "not run"
    failed = sorted(name for name, e in latest.items() if not e.passed)
    return f"{len(latest) - len(failed)}/{len(latest)} passed" + (
        f"; FAILED: {', '.join(failed)}" if failed else ""
    )
