"""Where task records come from: local files under `task.data_dir`, or the hub via `datasets`.

Local readers check every record and fail with the file, line and field, so bad data never turns into a
silent wrong score. A `parse(record, where)` callback turns each record into what the task needs while its
location is still known, so a bad value (say, an unknown label) is reported at its line too.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lora_lab.config.errors import ConfigError, DataError

Parse = Callable[[dict[str, Any], str], Any]  # (record, "file:line") -> the task's value


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, decoded line by line so that an undecodable byte, a folder or an
    unreadable file is one DataError naming the file (and line) instead of a decoder traceback."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a regular file")
    try:
        with path.open("rb") as handle:
            for line_no, raw in enumerate(handle, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DataError(f"{path}:{line_no}: invalid UTF-8 (byte 0x{raw[err.start]:02x} at column "
                                    f"{err.start + 1}); save the file as UTF-8") from None
                yield line_no, text.removeprefix("\ufeff") if line_no == 1 else text
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None


def parse_json_line(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not valid JSON ({err.msg}, column {err.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: not valid JSON (nested too deeply)") from None


def read_jsonl(path: Path, required: Sequence[str], parse: Parse | None = None) -> list[Any]:
    records = []
    for line_no, line in text_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        record = parse_json_line(line, where)
        check_fields(record, required, where)
        records.append(parse(record, where) if parse else record)
    if not records:
        raise DataError(f"{path}: no records (empty file)")
    return records


def read_tsv(path: Path, fieldnames: Sequence[str], *, header: bool, parse: Parse | None = None) -> list[Any]:
    records = []
    for line_no, line in text_lines(path):
        if header and line_no == 1:
            continue
        row = next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE), [])
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < len(fieldnames):
            raise DataError(f"{path}:{line_no}: expected fields {list(fieldnames)}, got {len(row)} column(s)")
        record = dict(zip(fieldnames, row, strict=False))
        records.append(parse(record, f"{path}:{line_no}") if parse else record)
    if not records:
        raise DataError(f"{path}: no records (empty file)")
    return records


def check_fields(record: Any, required: Sequence[str], where: str) -> None:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key in required:
        if key not in record or record[key] is None:
            raise DataError(f"{where}: missing field {key!r} (have: {', '.join(map(str, record))})")


def data_folder(tcfg) -> Path:
    """`task.data_dir`, with `~` expanded."""
    return Path(tcfg.data_dir).expanduser()


def local_file(tcfg, split: str, files: Mapping[str, str] | None = None) -> Path:
    """The file of `split` under `task.data_dir`: `files[split]` (a split the table lacks is a config error
    naming those it has), or `<split>.jsonl` when the task names no table."""
    if files is None:
        return data_folder(tcfg) / f"{split}.jsonl"
    if split not in files:
        raise ConfigError("task.train_split/eval_split", split, "no local file for this split", choices=list(files))
    return data_folder(tcfg) / files[split]


def load_split_records(tcfg, split: str, required: Sequence[str], parse: Parse | None = None, *,
                       local: Callable[[], list[Any]] | None = None) -> list[Any]:
    """The records of one split, from local files when `task.data_dir` is set, else from the hub
    (`task.hub_id`): the one place a task's source is picked. Locally `local()` reads the split (by default
    `<split>.jsonl` with `required` fields, each record given to `parse`); from the hub every row must have the
    `required` fields and is given to `parse`."""
    if tcfg.data_dir:
        return local() if local is not None else read_jsonl(local_file(tcfg, split), required, parse=parse)
    return load_hub_split(tcfg, split, required, parse=parse)


def load_hub_split(tcfg, split: str, required: Sequence[str], parse: Parse | None = None) -> list[Any]:
    """Load a split with `datasets` from the hub id in the config, with one clear error when offline."""
    if not tcfg.hub_id:
        raise ConfigError("task.data_dir", None, f"task {tcfg.name!r} has no hub_id; set task.data_dir to local files")
    try:
        from datasets import load_dataset

        dataset = load_dataset(tcfg.hub_id, tcfg.hub_config, split=split)
    except Exception as err:  # network, missing split, auth: all end the same way for the user
        raise ConfigError(
            "task.data_dir", None,
            f"could not load hub dataset {tcfg.hub_id!r} split {split!r} ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}); offline, point task.data_dir at local files",
        ) from None
    records = []
    for index, row in enumerate(dataset):
        record, where = dict(row), f"{tcfg.hub_id}[{split}][{index}]"
        check_fields(record, required, where)
        records.append(parse(record, where) if parse else record)
    return records
