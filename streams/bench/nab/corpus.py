"""NAB's folder layout: ``data/<category>/<name>.csv`` and ``labels/combined_windows.json``."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from streams.errors import BenchmarkError

LABELS = Path("labels") / "combined_windows.json"
Window = tuple[datetime, datetime]


@dataclass(frozen=True)
class Corpus:
    """A NAB folder: every data file, by NAB's key ``<category>/<name>.csv``, with its
    label windows (first and last timestamps)."""

    root: Path
    windows: Mapping[str, tuple[Window, ...]]

    @property
    def keys(self) -> list[str]:
        return sorted(self.windows)

    def path(self, key: str) -> Path:
        return self.root / "data" / key


@dataclass(frozen=True)
class SeriesData:
    """One data file's rows: timestamps and values as written, and parsed."""

    path: Path
    stamps: list[str]
    texts: list[str]
    times: list[datetime]
    values: list[float]


def open_corpus(data: Path) -> Corpus:
    """The NAB folder at ``data`` (holding ``data/`` and ``labels/``), or whose ``data/``
    folder ``data`` is; every data file must have an entry in the labels."""
    root = _root(data)
    keys = sorted(p.relative_to(root / "data").as_posix()
                  for p in (root / "data").glob("*/*.csv"))
    if not keys:
        raise BenchmarkError(f"{root / 'data'}: no <category>/<name>.csv files; "
                             "is this a NAB folder?")
    labels_path = root / LABELS
    labels = _read_labels(labels_path)
    missing = [key for key in keys if key not in labels]
    if missing:
        raise BenchmarkError(f"{labels_path}: no entry for {missing[0]} ({len(missing)} data "
                             f"file(s) unlabelled); add \"{missing[0]}\": [] if it has no "
                             "anomaly windows")
    return Corpus(root, {key: labels[key] for key in keys})


def _root(data: Path) -> Path:
    if (data / "data").is_dir():
        return data
    if data.name == "data" and data.is_dir():
        return data.parent
    raise BenchmarkError(f"{data}: not a NAB folder; pass the folder holding data/ and "
                         "labels/ (or its data/ folder, with labels/ beside it)")


def _read_labels(path: Path) -> dict[str, tuple[Window, ...]]:
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise BenchmarkError(f"{path}: missing; NAB's label windows belong in "
                             f"{LABELS} beside data/") from None
    except OSError as exc:
        raise BenchmarkError(f"{path}: cannot read ({exc.strerror})") from None
    except orjson.JSONDecodeError as exc:
        raise BenchmarkError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BenchmarkError(f"{path}: expected an object of \"<category>/<name>.csv\": "
                             "[[start, end], ...]")
    return {key: tuple(_window(path, key, pair) for pair in _list(path, key, windows))
            for key, windows in raw.items()}


def _list(path: Path, key: str, windows: object) -> list[object]:
    if not isinstance(windows, list):
        raise BenchmarkError(f"{path}: {key}: expected a list of [start, end] pairs")
    return windows


def _window(path: Path, key: str, pair: object) -> Window:
    if not (isinstance(pair, list) and len(pair) == 2
            and all(isinstance(bound, str) for bound in pair)):
        raise BenchmarkError(f"{path}: {key}: window {pair!r} is not a [start, end] pair of "
                             "timestamps")
    try:
        return datetime.fromisoformat(pair[0]), datetime.fromisoformat(pair[1])
    except ValueError as exc:
        raise BenchmarkError(f"{path}: {key}: window {pair!r}: {exc}") from None


def read_series(path: Path) -> SeriesData:
    """The rows of a ``timestamp,value`` CSV file; errors name the file and row."""
    data = SeriesData(path, [], [], [], [])
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            columns = _columns(path, next(reader, None))
            for fields in reader:
                if fields:
                    _append(data, reader.line_num, columns, fields)
    except FileNotFoundError:
        raise BenchmarkError(f"{path}: missing") from None
    except OSError as exc:
        raise BenchmarkError(f"{path}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BenchmarkError(f"{path}: not a readable CSV file ({exc})") from None
    if not data.values:
        raise BenchmarkError(f"{path}: no rows after the header")
    return data


def _columns(path: Path, header: list[str] | None) -> tuple[int, int]:
    names = [name.strip() for name in header or []]
    if "timestamp" not in names or "value" not in names:
        raise BenchmarkError(f"{path}: the header {','.join(names)!r} lacks the columns "
                             "timestamp and value")
    return names.index("timestamp"), names.index("value")


def _append(data: SeriesData, line: int, columns: tuple[int, int], fields: list[str]) -> None:
    where = f"{data.path}: row {len(data.values) + 1} (line {line})"
    if len(fields) <= max(columns):
        raise BenchmarkError(f"{where}: {len(fields)} field(s), expected timestamp and value")
    stamp, text = fields[columns[0]].strip(), fields[columns[1]].strip()
    try:
        time = datetime.fromisoformat(stamp)
    except ValueError:
        raise BenchmarkError(f"{where}: timestamp {stamp!r} is not an ISO date and "
                             "time") from None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BenchmarkError(f"{where}: value {text!r} is not a finite number")
    data.stamps.append(stamp)
    data.texts.append(text)
    data.times.append(time)
    data.values.append(value)


def unix_seconds(time: datetime) -> float:
    """Seconds since the epoch; NAB's timestamps carry no zone and are read as UTC."""
    return (time if time.tzinfo else time.replace(tzinfo=UTC)).timestamp()
