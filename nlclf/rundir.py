"""Output folders that nlclf owns: atomic writes, a manifest of what it wrote, a lock, and a
staging folder where a run's result is assembled before it replaces the previous one.

The promises (README, "What nlclf promises"):

- nlclf writes only into a folder that does not exist yet, is empty, or holds its manifest
  ``.nlclf.json`` (so nlclf created it). It never writes into ``/``, the home folder or the
  working directory itself.
- It replaces or deletes only files the manifest lists: files it wrote there. Any other file
  in the folder is left alone, and a file of a name nlclf uses that it did not write stops
  the command instead of being replaced.
- One command at a time holds a folder: ``.nlclf.lock``, locked with ``fcntl.flock`` for as
  long as the command runs (the kernel releases it when the process ends, even by kill -9).
  A second command fails at once, naming the holder's PID.
- A training run assembles its files in ``.nlclf-partial/`` inside the folder (the best model
  so far, the state for ``--resume``) and moves them into place only when it is complete, so
  the previous result stays whole until the new one replaces it.
- Temporary files of a write that was killed (``.<name>.tmp<pid>``) are removed when the
  folder is next claimed.

Nothing here prints; errors are OutputError.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import json
import os
import re
import shutil
import time
from pathlib import Path

from .errors import OutputError

MANIFEST = ".nlclf.json"
LOCK = ".nlclf.lock"
PARTIAL = ".nlclf-partial"
RUN_INFO = "run.json"                       # in PARTIAL: who is assembling it, and how it ended
MANIFEST_FORMAT = 1
_TMP = re.compile(r"^\..+\.tmp\d+$")        # atomic_write's temporary files
_OURS = {MANIFEST, LOCK, PARTIAL}


def atomic_write(path, data) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it. ``data``: bytes,
    or a function writing them into the open file (a large file is then never whole in memory)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:                 # a writer's own error too (bad input, Ctrl-C): no temporary left
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _refuse_special(path: Path) -> None:
    """/, the home folder and the working directory are never output folders."""
    real = path.resolve()
    special = {Path("/"): "the root folder", Path.home().resolve(): "your home folder",
               Path.cwd().resolve(): "the working directory"}
    if real in special:
        raise OutputError(f"{path}: is {special[real]}; nlclf writes its results into a folder of their "
                          f"own: choose another --out (e.g. runs/NAME)")


def _entries(path: Path) -> list:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise OutputError(f"{path}: cannot read the output folder: {e.strerror or e}") from None


def _foreign(path: Path, names: list) -> OutputError:
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return OutputError(f"{path}: holds files nlclf did not write ({shown}) and no {MANIFEST}; nlclf writes "
                       f"only into a new or empty folder, or one it created (--overwrite does not change "
                       f"that): choose another --out")


def _holder(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text().strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "another process"


class RunFolder:
    """A claimed output folder: locked, with its manifest loaded. Use ``claim``."""

    def __init__(self, path: Path, made: bool, lock_fd: int, manifest: dict):
        self.path, self.made, self._lock_fd, self.manifest = path, made, lock_fd, manifest

    # --- claiming -------------------------------------------------------------

    @classmethod
    def claim(cls, path, overwrite: bool = False, writes: tuple = (), resume: bool = False) -> "RunFolder":
        """Lock ``path`` for this command and check that it may write ``writes`` (file name
        patterns) there: a new or empty folder, or one holding nlclf's manifest; with files
        already there, ``overwrite`` (replace those nlclf wrote) or ``resume`` (continue them)."""
        path = Path(path)
        _refuse_special(path)
        if path.exists() and not path.is_dir():
            raise OutputError(f"{path}: exists and is not a folder")
        existing = [n for n in _entries(path) if n != LOCK]
        if existing and MANIFEST not in existing:
            raise _foreign(path, existing)
        made = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{path}: cannot create the output folder: {e.strerror or e}") from None
        fd = cls._lock(path)
        folder = cls(path, made, fd, {})
        try:
            folder._check(overwrite, writes, resume)
        except BaseException:
            folder.release(failed=True)
            raise
        return folder

    @staticmethod
    def _lock(path: Path) -> int:
        lock_path = path / LOCK
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"{path}: cannot write to the output folder: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise OutputError(f"{path}: in use by another nlclf command ({_holder(lock_path)}); "
                                      f"wait for it to end, or choose another --out") from None
                raise OutputError(f"{path}: cannot lock the output folder: {e.strerror or e}") from None
            try:                        # the holder before us may have removed the file: lock the new one
                same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)

    def _check(self, overwrite: bool, writes: tuple, resume: bool) -> None:
        names = [n for n in _entries(self.path) if n != LOCK]
        if names and MANIFEST not in names:                 # appeared while we waited for the lock
            raise _foreign(self.path, names)
        self.manifest = self._read_manifest() if MANIFEST in names else {}
        self._remove_stale_temporaries()
        names = [n for n in _entries(self.path) if n not in _OURS]
        if resume:
            return
        unfinished = self.unfinished()
        if (names or unfinished) and not overwrite:
            if unfinished:
                raise OutputError(f"{self.path}: holds an unfinished training run ({unfinished}); continue "
                                  f"it with --resume {self.path}, or start again with --overwrite")
            raise OutputError(f"{self.path}: output folder exists and is not empty; use --overwrite to "
                              f"replace what nlclf wrote there, or choose another --out")
        for name in names:
            if any(fnmatch.fnmatchcase(name, w) for w in writes) and not self.owns(name):
                raise OutputError(f"{self.path / name}: was not written by nlclf (not listed in {MANIFEST}); "
                                  f"refusing to replace it: move it away, or choose another --out")
        if not self.manifest:
            self._write_manifest([])

    def _read_manifest(self) -> dict:
        p = self.path / MANIFEST
        try:
            m = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise OutputError(f"{p}: damaged nlclf manifest ({e}); nlclf will not touch this folder") from None
        if not (isinstance(m, dict) and isinstance(m.get("files"), list)
                and all(isinstance(f, str) for f in m["files"])):
            raise OutputError(f"{p}: damaged nlclf manifest; nlclf will not touch this folder")
        return m

    def _write_manifest(self, files) -> None:
        from . import __version__
        self.manifest = {"format": MANIFEST_FORMAT, "written_by": f"nlclf {__version__}",
                         "files": sorted(set(files))}
        atomic_write(self.path / MANIFEST, (json.dumps(self.manifest, indent=1) + "\n").encode())

    def _remove_stale_temporaries(self) -> None:
        """Temporaries of writes that were killed: no one else writes here while we hold the lock."""
        for folder in (self.path, self.path / PARTIAL):
            for name in _entries(folder):
                if _TMP.match(name):
                    try:
                        (folder / name).unlink()
                    except OSError:
                        pass

    # --- what is there ----------------------------------------------------------

    def owns(self, name: str) -> bool:
        return name in self.manifest.get("files", ())

    @property
    def partial(self) -> Path:
        return self.path / PARTIAL

    def unfinished(self) -> str:
        """'' or how the run assembling PARTIAL ended: 'interrupted', or 'crashed' (its process
        ended without saying: kill -9, power loss)."""
        info = read_run_info(self.path)
        if info is None:
            return ""
        return "interrupted" if info.get("status") == "interrupted" else "crashed"

    # --- writing ------------------------------------------------------------------

    def write(self, name: str, data: bytes) -> Path:
        """Write one file of this folder atomically, listing it in the manifest first."""
        target = self.path / name
        if target.exists() and not self.owns(name):
            raise OutputError(f"{target}: was not written by nlclf; refusing to replace it")
        if not self.owns(name):
            self._write_manifest(self.manifest["files"] + [name])
        atomic_write(target, data)
        return target

    def start_partial(self, fresh: bool, info: dict) -> Path:
        """The staging folder of a training run (emptied when ``fresh``), marked as being
        assembled by this process."""
        if fresh and self.partial.exists():
            shutil.rmtree(self.partial, ignore_errors=True)
        try:
            self.partial.mkdir(exist_ok=True)
        except OSError as e:
            raise OutputError(f"{self.partial}: cannot create: {e.strerror or e}") from None
        self.set_run_info(dict(info, status="running", pid=os.getpid(), started=time.time()))
        return self.partial

    def set_run_info(self, info: dict) -> None:
        atomic_write(self.partial / RUN_INFO, (json.dumps(info, indent=1) + "\n").encode())

    def promote(self, names: list, replaces: tuple = ()) -> None:
        """Move ``names`` from PARTIAL into the folder, in order (arrays before the JSON that
        names them), then delete the files nlclf wrote earlier that match ``replaces`` and were
        not moved now (an older arrays file, an old picture), and PARTIAL itself."""
        keep = set(names)
        old = [n for n in self.manifest.get("files", ()) if n not in keep
               and any(fnmatch.fnmatchcase(n, p) for p in replaces)]
        self._write_manifest(self.manifest.get("files", []) + names)     # listed before they appear
        for name in names:
            try:
                os.replace(self.partial / name, self.path / name)
            except OSError as e:
                raise OutputError(f"{self.path / name}: cannot move the new result into place: "
                                  f"{e.strerror or e}") from None
        _fsync_dir(self.path)
        for name in old:
            try:
                (self.path / name).unlink(missing_ok=True)
            except OSError:
                pass
        self._write_manifest([n for n in self.manifest["files"] if n not in old])
        shutil.rmtree(self.partial, ignore_errors=True)

    # --- ending -------------------------------------------------------------------

    def discard_partial(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)

    def release(self, failed: bool = False) -> None:
        """Unlock. After a failure, a folder left holding nothing but nlclf's own bookkeeping
        (manifest, lock) loses it, and is removed if this command created it: a failed first
        run leaves nothing behind."""
        if self._lock_fd < 0:
            return
        if failed and not [n for n in _entries(self.path) if n not in (MANIFEST, LOCK)]:
            for name in (MANIFEST, LOCK):
                try:
                    (self.path / name).unlink(missing_ok=True)
                except OSError:
                    pass
            if self.made:
                try:
                    self.path.rmdir()
                except OSError:
                    pass
        else:
            try:
                (self.path / LOCK).unlink(missing_ok=True)
            except OSError:
                pass
        os.close(self._lock_fd)
        self._lock_fd = -1


def refuse_if_owned(path, option: str) -> None:
    """A file a user names (--report FILE, a picture in --plots DIR) must not be one that nlclf
    wrote into one of its folders: ``--report runs/x/model.json`` would destroy the model."""
    path = Path(path)
    manifest = path.parent / MANIFEST
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return
    if path.name in files or path.name in _OURS:
        raise OutputError(f"{path}: {option} would replace a file of the nlclf folder {path.parent}; "
                          f"choose a path outside it")


def read_run_info(path) -> dict | None:
    """The run.json of a folder's PARTIAL, or None when there is no unfinished run."""
    p = Path(path) / PARTIAL / RUN_INFO
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return info if isinstance(info, dict) else None
