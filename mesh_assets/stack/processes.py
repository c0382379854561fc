"""Plain background processes with pid files and logs: start, find, wait for, stop.

Each service runs detached (its own session) with stdout and stderr in ``stack/logs/<name>.log``
and its pid in ``stack/run/<name>.pid``. A pid is only trusted when the process still exists,
is not a zombie, and its command line names the expected program (pids get reused).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mesh_assets.stack.layout import HOST, StackError, StackLayout


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    layout: StackLayout
    marker: str  # a substring of the command line that identifies the program
    # (log, lines) -> the part of the log that tells why the service failed: its tail by default
    log_excerpt: Callable[[Path, int], str] = field(default=lambda log, lines: tail(log, lines))

    @property
    def port(self) -> int:
        return self.layout.ports[self.name]

    @property
    def log(self) -> Path:
        return self.layout.log(self.name)

    @property
    def pidfile(self) -> Path:
        return self.layout.pidfile(self.name)

    def recorded_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def pid(self) -> int | None:
        """The pid of the running service, None when it is not running."""
        pid = self.recorded_pid()
        return pid if pid is not None and is_running(pid, self.marker) else None

    def start(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            log.write(
                f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} mesh stack: starting {self.name} "
                f"on {HOST}:{self.port} ====\n".encode()
            )
            log.flush()
            extra = {"user": user, "group": user, "extra_groups": []} if user else {}
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
                **extra,
            )
        self.pidfile.write_text(f"{proc.pid}\n")
        return proc.pid

    def last_words(self, lines: int = 30) -> str:
        """What the log says about a failure (:attr:`log_excerpt`)."""
        return self.log_excerpt(self.log, lines)

    def died_error(self, what: str) -> StackError:
        return StackError(f"{self.name} {what}; the last lines of {self.log}:\n{self.last_words()}")

    def wait_until(
        self, ready: Callable[[], bool], timeout_s: float, *, what: str = "to accept connections"
    ) -> float:
        """Poll ``ready()`` until it is true; raises with the log's tail when the process dies
        or ``timeout_s`` passes. Returns the seconds waited."""
        start = time.monotonic()
        while True:
            pid = self.recorded_pid()
            if pid is None or not is_running(pid, self.marker):
                raise self.died_error(f"exited while starting (pid {pid})")
            try:
                if ready():
                    return time.monotonic() - start
            except Exception:  # noqa: BLE001 - not ready yet: a refused connection, a 503, ...
                pass
            if time.monotonic() - start > timeout_s:
                raise self.died_error(
                    f"did not come up {what} within {timeout_s:.0f} s (pid {pid} still running)"
                )
            time.sleep(0.25)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> bool:
        """Stop the service (``sig``, then SIGKILL after ``timeout_s``); False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        # wait for the process itself, not its command line: an exiting process loses its
        # command line before it is gone, and a restart too early finds the port still taken
        while _exists(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _exists(pid):
            os.kill(pid, signal.SIGKILL)
            while _exists(pid):
                time.sleep(0.1)
        self.pidfile.unlink(missing_ok=True)
        return True


def is_running(pid: int, marker: str) -> bool:
    if not _exists(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return marker in cmdline


def _exists(pid: int) -> bool:
    """The process exists and has not exited (a zombie has)."""
    _reap(pid)
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child (services started by this process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "    (no log file)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_accepts(port: int, host: str = HOST, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str:
    """'pid N (program)' of the process listening on ``port``, as far as /proc tells."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    comm = (proc / "comm").read_text().strip()
                    return f"pid {proc.name} ({comm})"
        except OSError:
            continue
    return "a process this user cannot see" if inodes else "an unknown process"
