"""Serving files from ``plots/`` and ``logs/`` without ever leaving them.

A file that is not there (or not allowed) raises :class:`~starlette.exceptions.HTTPException`
404, answered in plain text by the application's handler (:mod:`km3mon.web.forms`).
"""

from __future__ import annotations

import os
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response

#: Longest file name component most filesystems allow (bytes).
NAME_MAX = 255


def safe_path(folder: Path, name: str, suffixes: tuple[str, ...]) -> Path | None:
    """``folder/name`` if it is a plain file inside ``folder`` with an allowed suffix.

    Refuses absolute names, ``..``, backslashes, NULs, hidden files (our temporary files),
    names the filesystem cannot hold (any bad name is "not found", never an error) and
    symbolic links pointing out of the folder (the resolved path must stay inside).
    """
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return None
    parts = Path(name).parts
    if any(part in ("..", ".") or part.startswith(".") for part in parts):
        return None
    if any(len(part.encode("utf-8", "surrogateescape")) > NAME_MAX for part in parts):
        return None
    if Path(name).suffix not in suffixes:
        return None
    try:
        root = folder.resolve()
        candidate = (folder / name).resolve()
        if root not in candidate.parents or not candidate.is_file():
            return None
    except (OSError, ValueError):  # too long a path, a loop of links, ...
        return None
    return candidate


def read_snapshot(path: Path) -> tuple[bytes, os.stat_result] | None:
    """The whole file and its status from one open: a monitor replacing it by a rename
    meanwhile cannot make the two disagree (None if it is gone)."""
    try:
        with path.open("rb") as stream:
            status = os.fstat(stream.fileno())
            return stream.read(), status
    except OSError:
        return None


def entity_tag(status: os.stat_result) -> str:
    """Changes with every rewrite (a rename gives a new inode, a rewrite a new mtime)."""
    return f'"{status.st_ino:x}-{status.st_mtime_ns:x}-{status.st_size:x}"'


def snapshot_response(
    path: Path, request_headers: Headers, media_type: str, cache_control: str = "no-cache"
) -> Response:
    """``path`` served from one open (see :func:`read_snapshot`), with ``ETag`` and
    ``Last-Modified``; a conditional request for the same version gets 304, a file gone
    since it was found 404."""
    snapshot = read_snapshot(path)
    if snapshot is None:
        raise HTTPException(404, "no such file\n")
    data, status = snapshot
    tag = entity_tag(status)
    headers = {
        "ETag": tag,
        "Last-Modified": formatdate(status.st_mtime, usegmt=True),
        "Cache-Control": cache_control,
    }
    if _not_modified(request_headers, tag, status.st_mtime):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


def _not_modified(request_headers: Headers, tag: str, mtime_s: float) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if_none_match = request_headers.get("if-none-match")
    if if_none_match is not None:
        given = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in given or tag in given
    if_modified_since = request_headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since_s = parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    # The exact mtime: a rewrite within the second of the client's copy is not "unmodified".
    return mtime_s <= since_s


def count_levels(path: Path) -> dict[str, int]:
    """Lines with ERROR and with WARNING in a DAQ log file."""
    errors = warnings = 0
    with path.open("rb") as stream:
        for line in stream:
            errors += b"ERROR" in line
            warnings += b"WARNING" in line
    return {"errors": errors, "warnings": warnings}


def archived_logs(folder: Path, cache: dict) -> list[dict[str, object]]:
    """``MSG_*.log`` newest first, with size and level counts (cached per file version)."""
    listing = []
    for path in sorted(folder.glob("MSG_*.log"), reverse=True):
        status = path.stat()
        key = (path.name, status.st_mtime, status.st_size)
        if key not in cache:
            cache[key] = count_levels(path)
        listing.append({"name": path.name, "bytes": status.st_size, **cache[key]})
    return listing


def log_file_response(folder: Path | None, name: str) -> Response:
    """A ``.log`` file of ``folder`` as plain text; 404 for any other name."""
    path = safe_path(folder, name, (".log",)) if folder is not None else None
    if path is None:
        raise HTTPException(404, "no such log\n")
    return FileResponse(path, media_type="text/plain; charset=utf-8")
