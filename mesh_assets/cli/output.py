"""What every verb shares: printing and the domains a command names."""

from __future__ import annotations

import logging

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


class RepeatedMessages(logging.Filter):
    """Collapses a run of identical log records (same logger, level and text) into the first
    one and, when the run ends, one line that counts the rest: dagster-postgres warns
    ``Retrying failed database connection`` several times per event write while PostgreSQL is
    down. :func:`install_log_summary` installs it on the root logger, where those warnings go."""

    def __init__(self) -> None:
        super().__init__()
        self._shown: logging.LogRecord | None = None
        self._repeats = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "mesh_repeats", False):
            return True
        shown = self._shown
        if shown is not None and (shown.name, shown.levelno, shown.getMessage()) == (
            record.name,
            record.levelno,
            record.getMessage(),
        ):
            self._repeats += 1
            return False
        self.flush()
        self._shown = record
        return True

    def flush(self) -> None:
        """Log how often the last record shown was held back since, if it was."""
        if self._repeats and self._shown is not None:
            shown = self._shown
            logging.getLogger(shown.name).handle(
                logging.makeLogRecord(
                    {
                        "name": shown.name,
                        "levelno": shown.levelno,
                        "levelname": shown.levelname,
                        "msg": "%s [repeated %d more times]",
                        "args": (shown.getMessage().splitlines()[0], self._repeats),
                        "mesh_repeats": True,
                    }
                )
            )
        self._repeats = 0


def install_log_summary() -> RepeatedMessages:
    """The logging of mesh commands: repeated root-logger records collapse
    (:class:`RepeatedMessages`; the command flushes its count when it ends)."""
    summary = RepeatedMessages()
    logging.getLogger().addFilter(summary)
    return summary
