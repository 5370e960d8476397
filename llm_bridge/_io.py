"""Writing files so that a crash never leaves half of one: one atomic, fsync'ed write.

Every file the package writes for a user to keep (datasets, manifests, run records, results,
analyses, figures) goes through ``atomic_write``: the bytes go to a temporary file in the same
directory, are fsync'ed, and the file is renamed over the target, so a reader sees the old file
or the new one. ``write_json`` is the same for a JSON document.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_json"]


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` all at once: a temporary file in the same
    directory, fsync'ed, then renamed over ``path``. A crash leaves the old file or the new one,
    never half of one. Creates the directory; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any, *, allow_nan: bool = True) -> Path:
    """``obj`` as indented, key-sorted JSON (one trailing newline), written atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=allow_nan)
    return atomic_write(path, text + "\n")
