"""Writing tables (pandas DataFrames) to CSV or Parquet, atomically: a temporary file renamed into
place, so a failure never leaves half a file."""

from __future__ import annotations

from pathlib import Path


def write_table(frame, path: str | Path) -> Path:
    """CSV, or Parquet when the path ends in .parquet (needs pyarrow)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
