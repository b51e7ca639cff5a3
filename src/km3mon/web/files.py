"""Serving files from ``plots/`` and ``logs/`` without ever leaving them."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, PlainTextResponse, Response


def safe_path(folder: Path, name: str, suffixes: tuple[str, ...]) -> Path | None:
    """``folder/name`` if it is a plain file inside ``folder`` with an allowed suffix.

    Refuses absolute names, ``..``, backslashes, NULs, hidden files (our temporary files) and
    symbolic links pointing out of the folder (the resolved path must stay inside).
    """
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return None
    parts = Path(name).parts
    if any(part in ("..", ".") or part.startswith(".") for part in parts):
        return None
    if Path(name).suffix not in suffixes:
        return None
    root = folder.resolve()
    candidate = (folder / name).resolve()
    if root not in candidate.parents or not candidate.is_file():
        return None
    return candidate


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
    """A ``.log`` file of ``folder`` as plain text, or 404."""
    path = safe_path(folder, name, (".log",)) if folder is not None else None
    if path is None:
        return PlainTextResponse("no such log\n", status_code=404)
    return FileResponse(path, media_type="text/plain; charset=utf-8")
