"""Writing output files atomically: a temporary file beside the target, renamed into place, so a
failure never leaves half a file. Every output file of the package goes through here, so a bad
path (unknown extension, missing folder, no permission, a directory) is one `DataFileError` line,
checked before any work is done when the caller asks with `check_output_path`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from tokenfab.errors import DataFileError

TABLE_SUFFIXES = (".csv", ".parquet")
HTML_SUFFIXES = (".html", ".htm")
YAML_SUFFIXES = (".yaml", ".yml")


def check_output_path(path: str | Path, suffixes: tuple[str, ...], what: str = "output") -> Path:
    """`path` as a Path if a file with one of `suffixes` can be created there; else a one-line error.

    Called before a long computation, so a typo in an output name fails at once, not after the run."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise DataFileError(f"{what} file {path}: unknown extension '{path.suffix}' (valid: {', '.join(suffixes)})")
    if path.is_dir():
        raise DataFileError(f"{what} file {path} is a directory; give a file name ending in {' or '.join(suffixes)}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DataFileError(f"cannot write {what} file {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise DataFileError(f"cannot write {what} file {path}: folder {parent} is not writable")
    return path


def _atomic(path: Path, write: Callable[[Path], None], what: str) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except OSError as exc:
        raise DataFileError(f"cannot write {what} file {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path


def write_table(frame, path: str | Path, what: str = "table") -> Path:
    """CSV, or Parquet when the path ends in .parquet; any other extension is refused."""
    path = check_output_path(path, TABLE_SUFFIXES, what)
    if path.suffix.lower() == ".parquet":
        return _atomic(path, lambda tmp: frame.to_parquet(tmp, index=False), what)
    return _atomic(path, lambda tmp: frame.to_csv(tmp, index=False), what)


def write_text(text: str, path: str | Path, suffixes: tuple[str, ...], what: str = "output") -> Path:
    """A text file (HTML report, YAML profile, JSON) whose name must end in one of `suffixes`."""
    path = check_output_path(path, suffixes, what)
    return _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what)
