"""Checks for the model directories that ``train``, ``fit-fei`` and ``export-triton`` read back.

A wrong ``--model`` / ``--forecaster`` / ``--advisor`` path is a user error, not a crash: it gets
one line that names the folder, what is missing and which command writes it."""

from __future__ import annotations

from pathlib import Path


class ModelDirError(ValueError):
    """A model directory is missing, incomplete or from an incompatible version; the message says which."""


def require_files(path: str | Path, files: tuple[str, ...], written_by: str) -> Path:
    """``path`` as a Path if it is a directory holding every name in ``files``; else ModelDirError."""
    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(f"{path}: no such model directory (write one with `liftstream {written_by}`)")
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        raise ModelDirError(
            f"{path}: not a model directory written by `liftstream {written_by}` (missing {', '.join(missing)})"
        )
    return path
