"""One writer per results folder: an exclusive lock on ``--out`` holding the writer's PID.

The lock is ``--out/.lock``, held with ``fcntl.flock`` for the whole run: the kernel releases it when
the process ends however it ends (``kill -9`` too), so a lock left by a dead process is stale by
construction and the next run takes it. A second process is refused at once, in a sentence naming the
PID that holds the folder. Where ``fcntl`` is missing, the PID in the file is checked instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

from ..errors import MicamError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"

try:
    import fcntl
except ImportError:  # not POSIX: fall back to the PID written in the file
    fcntl = None  # type: ignore[assignment]


def prepare_out(out: str | os.PathLike, flag: str = "--out") -> Path:
    """``out`` as an existing, writable folder, or a :class:`MicamError` saying why it cannot be one."""
    root = Path(out).expanduser()
    if root.exists() and not root.is_dir():
        raise MicamError(f"{flag} {root} is a file, not a folder; choose a folder for the results.")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise MicamError(f"{flag} {root} cannot be created: permission denied; "
                         "choose a folder you can write to.") from None
    except OSError as err:
        raise MicamError(f"{flag} {root} cannot be created ({err.strerror or type(err).__name__}); "
                         "choose another folder.") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise MicamError(f"{flag} {root} is not writable; choose a folder you can write to.")
    return root


class RunLock:
    """``with RunLock(out):`` the caller is the only writer of ``out`` (else :class:`MicamError`)."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.path = prepare_out(out) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise MicamError(f"Cannot create the lock file {self.path} ({err.strerror or type(err).__name__}); "
                             "choose a folder you can write to.") from None
        try:
            self._lock(fd)
            stale = holder(self.path)
            if stale is not None and stale != os.getpid():
                log.warning("took over the lock on %s left by process %s, which has ended", self.path.parent, stale)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _lock(self, fd: int) -> None:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError:
                raise MicamError(self._busy(holder(self.path))) from None
        pid = holder(self.path)
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise MicamError(self._busy(pid))

    def _busy(self, pid: int | None) -> str:
        who = f"process {pid}" if pid else "another process"
        return (f"Another evaluate ({who}) is writing to {self.path.parent}; one run writes to a folder at a "
                "time. Wait for it to finish, or choose another --out.")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing releases the flock
        self._fd = None


def holder(path: Path) -> int | None:
    """The PID written in a lock file (``None`` when empty or unreadable)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
