"""Temporary files and the all-or-none commit of one run's outputs.

Every output of a run is written to a hidden temporary file beside its target, named
``.<target name>.mmlc-<pid>-<run id>.tmp<suffix>``: the run id (random, one per run) keeps two
runs of one process apart (QGIS runs Processing tasks on threads of one process) and the pid
lets a later run tell the leftovers of a run killed with ``-9`` (pid no longer alive) from those
of a run still going. :class:`RunFiles` is the life of one run's outputs:

* at the start it *claims* the outputs in this process (a second run writing the same file while
  the first is still going gets a clear :class:`OutputError` instead of sharing temp files) and
  removes stale temporary files of these outputs left by dead processes;
* :meth:`RunFiles.temp` names the temporary file of an output;
* :meth:`RunFiles.commit` renames all of them into place together, under a lock (threads of this
  process and, where ``fcntl`` exists, other processes writing into the same folder), moving the
  files they replace aside first so that a failure half-way puts the old files back: a reader
  sees either the previous outputs or all of this run's, never a mix of two runs;
* :meth:`RunFiles.abort` (failure, cancel, SIGTERM through the CLI's handler) removes them.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from ..errors import OutputError

#: Files a writer may create beside a temporary file (GDAL's PAM side-car, SQLite journals).
TEMP_COMPANIONS: tuple[str, ...] = (".aux.xml", "-wal", "-shm", "-journal")

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.mmlc-(?P<pid>\d+)-(?P<run>[0-9a-f]{12})\.tmp")
#: Temporary names of mmlc versions before run ids: ``.<stem>.tmp<pid><suffix>`` / ``.<name>.tmp<pid>``
_LEGACY_RE = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)(?P<suffix>\.[^.]*)?$")

_claims_lock = threading.Lock()
_claimed: dict[str, str] = {}  # real path -> run id holding it
_commit_lock = threading.Lock()


def _real(p: Path | str) -> str:
    return os.path.realpath(os.fspath(p))


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def temp_path(final: Path | str, run_id: str) -> Path:
    """The temporary file of ``final`` for run ``run_id`` (same folder, hidden, same suffix)."""
    f = Path(final)
    return f.with_name(f".{f.name}.mmlc-{os.getpid()}-{run_id}.tmp{f.suffix}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (assumed alive where this cannot be asked safely)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def unlink_quietly(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass


def remove_temp(tmp: Path) -> None:
    """Remove a temporary file and the companions a writer may have left beside it."""
    unlink_quietly(tmp)
    for c in TEMP_COMPANIONS:
        unlink_quietly(Path(str(tmp) + c))


def clean_stale(final: Path | str, older_than: float) -> list[Path]:
    """Remove temporary files of ``final`` left by dead processes (modified before
    ``older_than``, a ``time.time()``); returns what was removed."""
    f = Path(final)
    folder = f.parent if str(f.parent) else Path(".")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    own = os.getpid()
    for e in entries:
        if not e.name.startswith("."):
            continue
        m = _TEMP_RE.match(e.name)
        if m is not None:
            if m.group("name") != f.name:
                continue
        else:
            m = _LEGACY_RE.match(e.name)
            if m is None:
                continue
            legacy_name = m.group("name") + (m.group("suffix") or "")
            if legacy_name != f.name and m.group("name") != f.name:
                continue
        pid = int(m.group("pid"))
        if pid == own or pid_alive(pid):
            continue
        try:
            if not e.is_file(follow_symlinks=False) or e.stat(follow_symlinks=False).st_mtime >= older_than:
                continue
        except OSError:
            continue
        unlink_quietly(Path(e.path))
        removed.append(Path(e.path))
    return removed


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` for other processes (``flock`` on the folder itself, no
    lock file left behind); a no-op where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _os_error(e: OSError, path: Path | str) -> OutputError:
    if e.errno == errno.ENOSPC:
        return OutputError(f"disk full at {path}; free some space or choose another folder")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path}: permission denied; choose another folder")
    if e.errno == errno.EISDIR:
        return OutputError(f"cannot write {path}: it is a folder; give a file name")
    return OutputError(f"cannot write {path}: {e.strerror or e}")


def os_error(e: OSError, path: Path | str) -> OutputError:
    """The OutputError to report for an OSError while writing ``path`` (disk full named as such)."""
    return _os_error(e, path)


def commit_group(pairs: Sequence[tuple[Optional[Path], Path]]) -> None:
    """Rename every ``tmp`` onto its ``final`` (``tmp`` None: remove ``final``), all or none.

    Under the commit lock, the files being replaced are first moved aside; if any rename fails
    the new files are taken away again and the old ones put back, then OutputError is raised.
    """
    folders = sorted({_real(Path(f).parent if str(Path(f).parent) else ".") for _, f in pairs})
    with _commit_lock:
        with _locks(folders):
            backups: list[tuple[Path, Path]] = []
            placed: list[Path] = []
            token = new_run_id()
            try:
                for tmp, final in pairs:
                    if tmp is not None and not tmp.exists():
                        raise OutputError(f"the temporary file of {final} disappeared before it could be renamed "
                                          "(another program removed it?); run again")
                for _, final in pairs:
                    if os.path.lexists(final):
                        if os.path.isdir(final):
                            raise OutputError(f"the output {final} is a folder; remove it or choose another path")
                        aside = temp_path(final, token)
                        os.replace(final, aside)
                        backups.append((aside, final))
                for tmp, final in pairs:
                    if tmp is not None:
                        os.replace(tmp, final)
                        placed.append(final)
            except BaseException as e:
                for final in placed:
                    unlink_quietly(final)
                for aside, final in backups:
                    try:
                        os.replace(aside, final)
                    except OSError:
                        pass
                if isinstance(e, OSError):
                    raise _os_error(e, pairs[len(placed)][1] if len(placed) < len(pairs) else pairs[-1][1]) from e
                raise
            for aside, _ in backups:
                unlink_quietly(aside)


@contextmanager
def _locks(folders: Sequence[str]) -> Iterator[None]:
    if not folders:
        yield
        return
    with _folder_lock(Path(folders[0])):
        with _locks(folders[1:]):
            yield


class RunFiles:
    """The outputs of one run: claimed, written to temporary files, committed together.

    finals: every file the run will place (side-cars included). Raises OutputError when another
    run of this process is writing one of them.
    """

    def __init__(self, finals: Iterable[Path | str]) -> None:
        self.run_id = new_run_id()
        self.started = time.time()
        self.finals = [Path(f) for f in finals]
        self._temps: dict[Path, Path] = {}
        self._reals = [_real(f) for f in self.finals]
        with _claims_lock:
            for f, r in zip(self.finals, self._reals):
                if r in _claimed:
                    raise OutputError(f"{f} is being written by another run in this session; wait for it to "
                                      "finish or choose another output path")
            for r in self._reals:
                _claimed[r] = self.run_id
        self._released = False
        for f in self.finals:
            clean_stale(f, self.started)

    def temp(self, final: Path | str) -> Path:
        """The temporary file of ``final`` (created by the caller's writer)."""
        f = Path(final)
        if f not in self._temps:
            self._temps[f] = temp_path(f, self.run_id)
        return self._temps[f]

    def discard(self, final: Path | str) -> None:
        """Forget (and remove) the temporary file of ``final``: it will not be committed."""
        t = self._temps.pop(Path(final), None)
        if t is not None:
            remove_temp(t)

    def commit(self, extra: Sequence[tuple[Optional[Path], Path]] = ()) -> None:
        """Place every temporary file named by :meth:`temp` (plus ``extra`` pairs) together."""
        pairs: list[tuple[Optional[Path], Path]] = [(t, f) for f, t in self._temps.items()]
        pairs.extend(extra)
        commit_group(pairs)
        self._temps.clear()

    def abort(self) -> None:
        """Remove every temporary file of this run."""
        for t in self._temps.values():
            remove_temp(t)
        self._temps.clear()

    def release(self) -> None:
        """Give the claimed output paths back (after commit or abort)."""
        if self._released:
            return
        with _claims_lock:
            for r in self._reals:
                if _claimed.get(r) == self.run_id:
                    del _claimed[r]
        self._released = True

    def __enter__(self) -> "RunFiles":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.abort()
        finally:
            self.release()

    def __del__(self) -> None:  # a run object dropped without closing must not keep its claims
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to release
            self.release()


@contextmanager
def checked_gdal_write(path: Path | str) -> Iterator[None]:
    """Run GDAL writes of ``path`` with GDAL's messages kept quiet, then raise OutputError if
    GDAL reported a failure ("disk full at <path>" when it ran out of space). GDAL's error
    state is per thread, so writer threads check their own writes."""
    from osgeo import gdal

    gdal.ErrorReset()
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    except RuntimeError as e:  # GDAL with exceptions enabled (gdal.UseExceptions) raises instead
        raise _gdal_write_error(path, str(e)) from e
    finally:
        gdal.PopErrorHandler()
    if gdal.GetLastErrorType() >= gdal.CE_Failure:
        msg = gdal.GetLastErrorMsg() or "GDAL write failed"
        gdal.ErrorReset()
        raise _gdal_write_error(path, msg)


def _gdal_write_error(path: Path | str, msg: str) -> OutputError:
    if "no space left" in msg.lower() or "disk full" in msg.lower() or disk_nearly_full(path):
        return OutputError(f"disk full at {path}; free some space or choose another folder")
    return OutputError(f"cannot write {path}: {' '.join(msg.split())}")


def disk_nearly_full(path: Path | str, margin: int = 1 << 20) -> bool:
    """Whether the file system of ``path``'s folder has less than ``margin`` bytes free (GDAL's
    write errors do not always say that the disk is full)."""
    import shutil

    folder = Path(path).parent if str(Path(path).parent) else Path(".")
    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False
