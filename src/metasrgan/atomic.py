"""Outputs that are complete or absent, even when the process is interrupted.

Files and folders are written under a temporary name beside their destination and renamed
into place.  Temporary names are recognisable: ``.<name>.<host>-<pid>-<random>.metasrgan-tmp``.
They are removed when the write fails or is interrupted (SIGINT, or SIGTERM once
:mod:`metasrgan.cli` has turned it into :class:`Interrupted`), and the first write into a
folder removes the ones a killed process (SIGKILL, power loss) left there: those whose
process is gone from this machine, or that are older than :data:`STALE_AFTER_S`.

Only the standard library is imported here, so the CLI can use it before torch loads.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".metasrgan-tmp"
STALE_AFTER_S = 24 * 3600
"""A temporary file from another machine (shared file system) counts as stale after this."""

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TEMP_NAME = re.compile(
    r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[^.]*" + re.escape(TEMP_SUFFIX) + "$"
)
_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()


# ---------------------------------------------------------------------------- interrupts


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM as an exception, so that ``finally`` blocks and clean-ups run."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    def __reduce__(self):  # rebuilt from the number when passed between processes
        return (type(self), (self.signum,))


_defer_depth = 0
_pending: int | None = None


def raise_interrupted(signum: int, frame=None) -> None:
    """Signal handler: raise :class:`Interrupted`, or remember it inside
    :func:`deferred_interrupts` (the main thread's renames and temp-file bookkeeping)."""
    global _pending
    if _defer_depth:
        _pending = signum
        return
    raise Interrupted(signum)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold back :func:`raise_interrupted` until the block is done (main thread only:
    Python runs signal handlers there alone)."""
    global _defer_depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _defer_depth += 1
    try:
        yield
    finally:
        _defer_depth -= 1
        if _defer_depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            raise Interrupted(signum)


def interrupt_in_chain(err: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt that ``err`` was raised from or during, if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# ---------------------------------------------------------------------------- temp names


def _prefix(path: Path) -> str:
    return f".{path.name[:100]}.{_HOST}-{os.getpid()}-"  # short enough for any file system


def is_temp_name(name: str) -> bool:
    return _TEMP_NAME.match(name) is not None


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there: rely on the age alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _stale(entry: Path) -> bool:
    match = _TEMP_NAME.match(entry.name)
    if match is None:
        return False
    if match["host"] == _HOST and not _alive(int(match["pid"])):
        return True
    try:
        return time.time() - entry.lstat().st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return False


def clean_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders that dead processes left in ``folder``."""
    removed = []
    try:
        entries = [e for e in Path(folder).iterdir() if e.name.endswith(TEMP_SUFFIX)]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return removed
    for entry in entries:
        if not _stale(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _clean_once(folder: Path) -> None:
    key = str(folder.resolve())
    with _cleaned_lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    clean_stale(folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------- writers


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see a partial file,
    and an exception or interruption leaves no temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    tmp = None
    try:
        with deferred_interrupts():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path), suffix=TEMP_SUFFIX)
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make outputs private
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it to ``path`` when the block ends.

    With ``replace`` an existing ``path`` is swapped out and removed after the rename;
    without it an existing ``path`` is an error (checked again at the end).  On any
    exception or interruption the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    tmp = None
    try:
        with deferred_interrupts():
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_prefix(path), suffix=TEMP_SUFFIX))
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        with deferred_interrupts():
            _swap_in(tmp, path, replace)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, path: Path, replace: bool) -> None:
    if not path.exists() and not path.is_symlink():
        os.replace(tmp, path)
        return
    if not replace or not path.is_dir():
        raise FileExistsError(f"{path} already exists")
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_prefix(path), suffix=TEMP_SUFFIX))
    os.rmdir(old)  # only the unique name is needed
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
