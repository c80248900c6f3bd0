"""The files of one imaging study, from a folder or a zip, opened one at a time and never trusted.

A study arrives as a folder of DICOM files (any nesting) or as a zip of one. Both are listed here
before anything is decoded: the total size and file count are checked against limits, zip members
with absolute or ``..`` names are refused (the archive is never extracted to disk), and symbolic
links in a folder are skipped. Each :class:`StudyFile` opens its bytes on demand, so a caller can
read headers of every file and pixels of a few without holding the study in memory.

Files are labelled by their position ("file 12 of 300"), never by name: exported file names often
carry a patient's name or id, and labels end up in warnings that reach answers.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from medgraph.errors import ImageLoadError, StudyTooLargeError, UnsafeArchiveError

__all__ = [
    "DEFAULT_MAX_STUDY_BYTES",
    "DEFAULT_MAX_STUDY_FILES",
    "StudyFile",
    "is_dicom_file",
    "is_zip_file",
    "study_files",
]

DEFAULT_MAX_STUDY_BYTES: int = 2 * 1024**3
"""Largest uncompressed size of one study (folder or zip contents) accepted by default."""

DEFAULT_MAX_STUDY_FILES: int = 5000
"""Most files in one study accepted by default."""

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_DICOM_MAGIC = b"DICM"


@dataclass(frozen=True)
class StudyFile:
    """One file of a study: a position label, its size, and a way to read its bytes."""

    label: str
    size: int
    read: Callable[[], bytes]


def is_zip_file(path: Path) -> bool:
    """Whether ``path`` is a zip archive, by its first bytes (never by its extension)."""
    try:
        with path.open("rb") as handle:
            return handle.read(4) in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)
    except OSError:
        return False


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM file, by its ``DICM`` marker at offset 128."""
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:132] == _DICOM_MAGIC
    except OSError:
        return False


def study_files(
    source: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_STUDY_BYTES,
    max_files: int = DEFAULT_MAX_STUDY_FILES,
) -> list[StudyFile]:
    """List the files of a study folder, zip or DICOM file, checked against the limits, in order.

    Raises :class:`StudyTooLargeError` over ``max_bytes`` (uncompressed) or ``max_files``,
    :class:`UnsafeArchiveError` for a zip member with a path-traversal name, and
    :class:`ImageLoadError` for a missing, empty or unreadable source.
    """
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir():
        return _folder_files(path, max_bytes=max_bytes, max_files=max_files)
    if path.is_file() and is_zip_file(path):
        return _zip_files(path, max_bytes=max_bytes, max_files=max_files)
    if path.is_file() and is_dicom_file(path):
        size = path.stat().st_size
        _too_large("the DICOM file", 1, size, max_files, max_bytes)
        return [StudyFile(label="file 1 of 1", size=size, read=_file_reader(path, 1))]
    if not path.exists():
        raise ImageLoadError(f"{path}: study folder or zip not found; check the path")
    raise ImageLoadError(
        f"{path}: not a folder or a zip archive; pass a folder of DICOM files, a zip of one "
        "study, or a single image file"
    )


def _too_large(what: str, count: int, size: int, max_files: int, max_bytes: int) -> None:
    if count > max_files:
        raise StudyTooLargeError(
            f"{what} holds more than {max_files} files, over the study limit; pass one study "
            "(or raise graph.max_study_files)"
        )
    if size > max_bytes:
        raise StudyTooLargeError(
            f"{what} holds more than {max_bytes:,} bytes, over the study limit; pass one series "
            "or study (or raise graph.max_study_bytes)"
        )


def _folder_files(folder: Path, *, max_bytes: int, max_files: int) -> list[StudyFile]:
    found: list[tuple[str, Path, int]] = []
    total = 0
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            file_path = Path(root) / name
            try:
                info = file_path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
                continue  # links, sockets and empty files are not study files
            found.append((str(file_path.relative_to(folder)), file_path, info.st_size))
            total += info.st_size
            _too_large("the study folder", len(found), total, max_files, max_bytes)
    if not found:
        raise ImageLoadError(f"{folder}: folder has no files; pass a folder of DICOM files")
    found.sort(key=lambda item: item[0])
    count = len(found)
    return [
        StudyFile(
            label=f"file {number} of {count}", size=size, read=_file_reader(file_path, number)
        )
        for number, (_, file_path, size) in enumerate(found, start=1)
    ]


def _file_reader(path: Path, number: int) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return path.read_bytes()
        except OSError as error:
            raise ImageLoadError(
                f"study file {number} cannot be read ({error.strerror}); check its permissions"
            ) from error

    return read


def _unsafe_name(name: str) -> bool:
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    return (
        posix.is_absolute()
        or windows.is_absolute()
        or bool(windows.drive)
        or ".." in posix.parts
        or ".." in windows.parts
    )


def _zip_files(path: Path, *, max_bytes: int, max_files: int) -> list[StudyFile]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ImageLoadError(
            f"{path}: zip archive cannot be read ({error}); re-create it from the study folder"
        ) from error
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
    for number, member in enumerate(members, start=1):
        if _unsafe_name(member.filename):
            raise UnsafeArchiveError(
                f"{path}: zip member {number} of {len(members)} has an absolute or '..' path "
                "(path traversal), so the archive is refused; re-create the zip from the study "
                "folder"
            )
    wanted = [
        m for m in members if m.file_size > 0 and not PurePosixPath(m.filename).name.startswith(".")
    ]
    _too_large(
        f"{path}: the zip", len(wanted), sum(m.file_size for m in wanted), max_files, max_bytes
    )
    if not wanted:
        raise ImageLoadError(f"{path}: zip archive has no files; zip the study folder")
    count = len(wanted)
    return [
        StudyFile(
            label=f"file {number} of {count}",
            size=member.file_size,
            read=_member_reader(path, member, number),
        )
        for number, member in enumerate(sorted(wanted, key=lambda m: m.filename), start=1)
    ]


def _member_reader(path: Path, member: zipfile.ZipInfo, number: int) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
                # The stated size was checked against the limit; never read past it (a member
                # whose header lies about its size fails zipfile's own length check).
                data = handle.read(member.file_size + 1)
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise ImageLoadError(
                f"{path}: zip member {number} cannot be read ({error}); re-create the zip"
            ) from error
        if len(data) > member.file_size:
            raise StudyTooLargeError(
                f"{path}: zip member {number} is larger than its header states; the archive "
                "is refused"
            )
        return data

    return read
