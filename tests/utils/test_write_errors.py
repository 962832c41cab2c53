"""A failed write is recognised in every shape its writer raises it, including the libraries' own."""

from __future__ import annotations

import errno
import sqlite3

import pytest
import torch
from safetensors import SafetensorError

from lora_lab.config.errors import StorageError, as_input_error
from lora_lab.utils.io import as_storage_error, writing


def sqlite_full(tmp_path) -> sqlite3.OperationalError:
    """SQLite's own error for a full database (a page limit stands in for the disk)."""
    db = sqlite3.connect(tmp_path / "full.db")
    db.execute("create table t (x blob)")
    db.execute("pragma max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as caught:
        for _ in range(100):
            db.execute("insert into t values (?)", (b"x" * 4096,))
    return caught.value



CASES = {
    "oserror": (lambda tmp: OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    "oserror_with_file": (lambda tmp: PermissionError(errno.EACCES, "Permission denied", str(tmp / "x.json")),
                          "Permission denied"),
    "safetensors": (lambda tmp: SafetensorError('Error while serializing: I/O error: No space left on device '
                                                f'(os error 28) at path "{tmp}/.tmpA1b2"'),
                    "out.safetensors: No space left on device"),
    "torch": (lambda tmp: RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed "
                                       "writing file data/0: file write failed"), "write failed"),
    "sqlite": (sqlite_full, "database or disk is full"),
    "chained": (lambda tmp: _chained(), "Input/output error"),
    "copytree": (lambda tmp: _copytree_error(tmp), "b/c.yaml: No space left on device"),
}


def _copytree_error(tmp) -> Exception:
    import shutil

    return shutil.Error([(str(tmp / "a" / "c.yaml"), str(tmp / "b" / "c.yaml"), "[Errno 28] No space left on device")])


def _chained() -> Exception:
    try:
        try:
            raise OSError(errno.EIO, "Input/output error")
        except OSError as err:
            raise ValueError("while saving") from err
    except ValueError as outer:
        return outer


@pytest.mark.parametrize("case", CASES)
def test_every_shape_of_a_failed_write_is_one_storage_error(tmp_path, case):
    make, expected = CASES[case]
    err = make(tmp_path)
    mapped = as_storage_error(err, tmp_path / "out.safetensors")
    assert isinstance(mapped, StorageError) and expected in str(mapped)
    assert as_input_error(err) is not None
    with pytest.raises(StorageError, match=expected):  # and `writing` converts it where it happens
        with writing(tmp_path / "out.safetensors"):
            raise err


@pytest.mark.parametrize("err", [ValueError("bad"), RuntimeError("CUDA out of memory"),
                                 OSError(errno.ENOENT, "No such file or directory"),
                                 SafetensorError("Error while deserializing header: HeaderTooLarge")])
def test_other_errors_are_left_alone(err):
    assert as_storage_error(err) is None and as_input_error(err) is None


def test_a_real_safetensors_write_failure_is_recognised(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "file").write_text("a file where a folder should be")  # the OS answers ENOTDIR
    with pytest.raises(StorageError, match=r"file/a.safetensors: Not a directory"):
        with writing(tmp_path / "file" / "a.safetensors"):
            save_file({"a": torch.zeros(2)}, str(tmp_path / "file" / "a.safetensors"))
