"""``ScratchSpace``: the one temp folder of a server process, holding every request's files.

Uploaded images (``medgraph-request-*``), ingest uploads (``medgraph-upload-*``) and, under
``medgraph serve``, the web page's uploads live in ``<tmp>/medgraph-server-<pid>-<random>``
(mode 0700). The server removes that parent at shutdown, and at start-up removes the parents left
by processes that died without shutting down (a kill -9, a crash): those whose pid is no longer
alive, and those named with this process's own pid that it did not make (an earlier process had
the pid: a restarted container's server is often pid 1 again). Only folders owned by this user
are touched, never a link.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import threading
from pathlib import Path

logger = logging.getLogger(__name__)
PARENT_PREFIX = "medgraph-server-"
_PARENT = re.compile(rf"{re.escape(PARENT_PREFIX)}(\d+)-")
_MADE_HERE: set[str] = set()
"""Parents made by this process's ScratchSpaces and not yet closed (several apps may share one
process, as in tests)."""
_MADE_HERE_LOCK = threading.Lock()


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (of any user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True


class ScratchSpace:
    """This process's parent folder under ``root`` (default: the system temp folder).

    The parent is made on first use; :meth:`close` removes it with everything in it, and
    :meth:`remove_dead_leftovers` removes the parents of processes that are gone.
    """

    def __init__(self, root: Path | None = None) -> None:
        """Keep the parent under ``root`` (``tempfile.gettempdir()`` when None)."""
        self.root = Path(root) if root is not None else Path(tempfile.gettempdir())
        self._parent: Path | None = None
        self._lock = threading.Lock()

    @property
    def parent(self) -> Path:
        """This process's parent folder, made (mode 0700) on first use."""
        with self._lock:
            if self._parent is None or not self._parent.is_dir():
                made = tempfile.mkdtemp(prefix=f"{PARENT_PREFIX}{os.getpid()}-", dir=self.root)
                with _MADE_HERE_LOCK:
                    if self._parent is not None:  # removed from outside: forget it
                        _MADE_HERE.discard(os.path.abspath(self._parent))
                    _MADE_HERE.add(os.path.abspath(made))
                self._parent = Path(made)
            return self._parent

    def subfolder(self, name: str) -> Path:
        """A folder ``name`` of the parent (made if missing), for files that live as long as the
        process (the web page's uploads)."""
        folder = self.parent / name
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder

    def new_folder(self, prefix: str) -> Path:
        """A fresh folder (mode 0700) in the parent for one request's or job's files; the caller
        removes it when that is done (:meth:`close` removes whatever is left)."""
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.parent))

    def remove_dead_leftovers(self) -> list[Path]:
        """Remove the parents (in ``root``) of processes that no longer run; the paths removed."""
        removed = []
        try:
            entries = list(os.scandir(self.root))
        except OSError as error:
            logger.warning("cannot list %s for leftover server folders: %s", self.root, error)
            return []
        for entry in entries:
            match = _PARENT.match(entry.name)
            if match is None or not _left_over(entry.path, int(match.group(1))):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue  # a link, a file, or another user's folder: not ours to remove
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
        if removed:
            logger.info("removed %d temp folder(s) of server processes that died", len(removed))
        return removed

    def close(self) -> None:
        """Remove this process's parent folder and everything in it."""
        with self._lock:
            parent, self._parent = self._parent, None
        if parent is not None:
            shutil.rmtree(parent, ignore_errors=True)
            with _MADE_HERE_LOCK:
                _MADE_HERE.discard(os.path.abspath(parent))


def _left_over(path: str, pid: int) -> bool:
    """Whether the parent ``path`` named with ``pid`` belongs to no running server process."""
    if pid == os.getpid():
        with _MADE_HERE_LOCK:
            return os.path.abspath(path) not in _MADE_HERE
    return not pid_alive(pid)
