"""Read an offline W&B run (`run-<id>.wandb`) back, like `wandb sync --view --verbose` would show it.

The file is a LevelDB-style log of protobuf `Record`s: a 7-byte header (":W&B", magic 0xBEE1, version), then
32 KiB blocks of chunks, each with a 7-byte header (crc32, length, type: full/first/middle/last).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1, f"not a W&B run file: {path}"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            records.append(pending + chunk)
            pending = b""
        elif kind == 0 and length == 0:
            break
    return records


def read_run(run_file: Path) -> dict:
    """{"history": [row dicts], "summary": {...}, "config": {...}, "run": RunRecord, "exit_code": int} of one
    offline run."""
    from wandb.proto import wandb_internal_pb2 as pb

    history, summary, config, run, exit_code = [], {}, {}, None, None
    for raw in raw_records(run_file):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({(item.key or "/".join(item.nested_key)): json.loads(item.value_json)
                            for item in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "exit":
            exit_code = record.exit.exit_code
        elif kind == "run":
            run = record.run
            for item in record.run.config.update:
                config[item.key] = json.loads(item.value_json)
    return {"history": history, "summary": summary, "config": config, "run": run, "exit_code": exit_code}


def run_files(run_dir: Path) -> list[Path]:
    return sorted(Path(run_dir).rglob("run-*.wandb"))
