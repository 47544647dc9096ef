"""Files a command writes its results to, checked before it does the work: a benchmark or a
swarm runs for minutes, and a path it cannot write would lose its results at the end."""

from __future__ import annotations

import os
import pathlib


def unwritable(path: str | os.PathLike[str], *, make_parents: bool = False) -> str | None:
    """Why no file can be written at ``path`` (``strerror``), or None if one can.

    Leaves no trace: an existing file is opened for appending (its content kept until the
    command replaces it), a new one is removed again. ``make_parents``: create the missing
    directories first, as the command's writer does.
    """
    p = pathlib.Path(path)
    try:
        if make_parents:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                return f"{p.parent} is not a directory"
        if p.exists():
            open(p, "a", encoding="utf-8").close()
        else:
            open(p, "x", encoding="utf-8").close()
            p.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
