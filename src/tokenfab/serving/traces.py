"""Streaming readers of public request traces (../shared/traces).

Formats:
- Azure LLM inference trace (CSV `TIMESTAMP,ContextTokens,GeneratedTokens`, timestamps
  `YYYY-MM-DD HH:MM:SS.fffffff`, optionally with a time zone offset in the 2024 files);
- Mooncake (JSONL `timestamp` in ms, `input_length`, `output_length`, `hash_ids` of 512-token
  prefix blocks).
Rows are yielded one at a time (memory does not grow with the trace). Timestamps are made
relative to the first row; a negative or decreasing timestamp is an error naming the row.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenfab.errors import DataFileError

MOONCAKE_BLOCK_TOKENS = 512  # the Mooncake release's hash-block size (its README)


@dataclass(frozen=True, slots=True)
class TraceRow:
    arrival_s: float
    prompt_len: int
    output_len: int
    hash_ids: tuple[int, ...] | None


def detect_format(path: Path) -> str:
    if path.suffix in (".jsonl", ".json"):
        return "mooncake"
    if path.suffix == ".csv":
        return "azure"
    raise DataFileError(f"cannot tell the trace format of {path} (use .csv for Azure or .jsonl for Mooncake, or --trace-format)")


def read_trace(path: str | Path, fmt: str = "auto") -> Iterator[TraceRow]:
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"trace file {path} does not exist")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "azure":
        return _read_azure(path)
    if fmt == "mooncake":
        return _read_mooncake(path)
    raise DataFileError(f"unknown trace format '{fmt}' (valid: auto, azure, mooncake)")


def _azure_seconds(stamp: str, row: int, path: Path) -> float:
    """Seconds since the epoch of an Azure timestamp (7 fractional digits; 2024 files add +00:00)."""
    try:
        t = dt.datetime.fromisoformat(stamp.strip())
    except ValueError:
        raise DataFileError(f"{path}: row {row}: cannot parse timestamp {stamp!r}") from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


def _check(row: int, path: Path, t: float, last: float, prompt: int, output: int) -> None:
    if t < last:
        raise DataFileError(f"{path}: row {row}: timestamp goes backwards ({t:.6f} s after {last:.6f} s); sort the trace")
    if prompt < 0 or output < 0:  # zero-length rows are the simulator's to reject (and count)
        raise DataFileError(f"{path}: row {row}: negative token count")


def _read_azure(path: Path) -> Iterator[TraceRow]:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        need = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
        if header is None or any(col not in header for col in need):
            raise DataFileError(f"{path}: Azure trace needs columns {', '.join(need)} (found {header})")
        it, ic, ig = (header.index(c) for c in need)
        first = last = None
        for n, fields in enumerate(reader, start=2):
            if not fields:
                continue
            try:
                prompt, output = int(fields[ic]), int(fields[ig])
            except (ValueError, IndexError):
                raise DataFileError(f"{path}: row {n}: token counts must be integers ({fields})") from None
            t = _azure_seconds(fields[it], n, path)
            first = t if first is None else first
            rel = t - first
            _check(n, path, rel, last if last is not None else 0.0, prompt, output)
            last = rel
            yield TraceRow(rel, prompt, output, None)


def _read_mooncake(path: Path) -> Iterator[TraceRow]:
    with path.open() as f:
        first = last = None
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                t = float(rec["timestamp"]) / 1000.0
                prompt, output = int(rec["input_length"]), int(rec["output_length"])
                hashes = rec.get("hash_ids")
            except json.JSONDecodeError as exc:
                raise DataFileError(f"{path}: line {n}: malformed JSON ({exc.msg})") from None
            except KeyError as exc:
                raise DataFileError(f"{path}: line {n}: missing field {exc.args[0]!r} (needs timestamp, input_length, output_length)") from None
            except (TypeError, ValueError):
                raise DataFileError(f"{path}: line {n}: fields must be numbers") from None
            if not 0 <= t < float("inf"):
                raise DataFileError(f"{path}: line {n}: timestamp must be a finite number >= 0")
            if hashes is not None and not (isinstance(hashes, list) and all(
                    isinstance(h, int) and not isinstance(h, bool) and h >= 0 for h in hashes)):
                raise DataFileError(f"{path}: line {n}: hash_ids must be a list of non-negative integers")
            first = t if first is None else first
            rel = t - first
            _check(n, path, rel, last if last is not None else 0.0, prompt, output)
            last = rel
            yield TraceRow(rel, prompt, output, tuple(int(h) for h in hashes) if hashes else None)
