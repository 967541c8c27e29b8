"""The workbench cache directory and atomic file writes.

Everything expensive to rebuild (dequantized weights, tokenizers, statistics)
lives under one directory, ``$INTERP_CACHE`` or ``~/.cache/interp``. Every file
is written to a temporary sibling and moved into place with ``os.replace``, so a
killed process never leaves a half-written file where a reader would find it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "cache_dir", "check_writable", "slug", "write_json"]


def cache_dir(*parts: str) -> Path:
    """The cache directory (created), or a sub-directory of it."""
    root = Path(os.environ.get("INTERP_CACHE") or Path.home() / ".cache" / "interp")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success move it onto ``target``.

    Works for a file or a directory written at the yielded path. On an exception
    the temporary is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
    try:
        yield tmp
        if target.is_dir() and tmp.is_dir():
            # os.replace cannot replace a non-empty directory; swap via a rename.
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def slug(name: str) -> str:
    """``name`` made safe as part of a cache file name (a model name such as ``org/model``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def check_writable(target: str | os.PathLike, what: str, directory: bool = True) -> None:
    """Refuse, before any work, a ``target`` this process cannot write: a directory (``directory``)
    or a file to be created, checked by creating and removing a probe file in the directory that
    would hold it (or its nearest existing parent). Permissions alone are not enough to ask: root
    ignores them, and a read-only file system does not show in them."""
    import errno
    import tempfile

    from interp.errors import InterpError

    path = Path(target)
    where = path if directory else path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        return  # a file in the way: the caller's own check names it
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".interp-write-check-")
    except OSError as err:
        why = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.ENOSPC: "no space left"}.get(err.errno, err.strerror)
        raise InterpError(f"{what} {path}: cannot write in {where} ({why}); give a path you can write") from None
    os.close(fd)
    os.unlink(probe)
