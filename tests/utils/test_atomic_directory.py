"""`atomic_directory`'s swap (old folder aside, new one in) and its recovery from a kill between the two renames."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lora_lab.config.errors import StorageError
from lora_lab.utils.io import atomic_directory, recover_directory, retired_path


def _write(target: Path, content: bytes, **kwargs) -> None:
    with atomic_directory(target, **kwargs) as folder:
        (folder / "weights.bin").write_bytes(content)


def _entries(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# A child that writes `out` once, then dies by SIGKILL between the swap's two renames of a second write: right
# after the old folder went aside, before the new one came in (no except or finally of the helper runs).
KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from lora_lab.utils.io import atomic_directory

target = Path(sys.argv[1])
with atomic_directory(target) as folder:
    (folder / "weights.bin").write_bytes(b"old")
rename = os.rename
def rename_then_die(src, dst):
    if Path(dst) == target:
        os.kill(os.getpid(), signal.SIGKILL)
    rename(src, dst)
os.rename = rename_then_die
with atomic_directory(target) as folder:
    (folder / "weights.bin").write_bytes(b"new")
"""


def test_a_kill_between_the_two_renames_is_recovered(tmp_path: Path) -> None:
    target = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(target)], capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not target.exists() and (retired_path(target) / "weights.bin").read_bytes() == b"old"

    assert recover_directory(target)
    assert (target / "weights.bin").read_bytes() == b"old" and not retired_path(target).exists()
    assert not recover_directory(target)  # nothing left to recover


def test_the_next_write_recovers_a_killed_swap_first_and_leaves_no_retired_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    _write(target, b"old")
    os.rename(target, retired_path(target))  # what a kill between the renames leaves
    _write(target, b"new")
    assert (target / "weights.bin").read_bytes() == b"new"
    assert _entries(tmp_path) == ["out"]


def test_recovery_leaves_an_incomplete_retired_folder_alone(tmp_path: Path) -> None:
    target = tmp_path / "out"
    retired_path(target).mkdir()
    assert not recover_directory(target, complete=lambda old: (old / "weights.bin").is_file())
    assert not target.exists() and retired_path(target).is_dir()


def test_recovery_never_replaces_a_target_in_place(tmp_path: Path) -> None:
    target = tmp_path / "out"
    _write(target, b"current")
    retired_path(target).mkdir()
    assert not recover_directory(target)
    assert (target / "weights.bin").read_bytes() == b"current"


def test_a_failed_second_rename_puts_the_old_folder_back_at_once(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out"
    _write(target, b"old")
    rename = os.rename

    def refuse_the_new_folder(src, dst):
        if Path(dst) == target and Path(src).name.startswith(".out-tmp-"):
            raise OSError(errno.EIO, "Input/output error")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", refuse_the_new_folder)
    with pytest.raises(StorageError, match=rf"^{target}: cannot write \(Input/output error\)$"):
        _write(target, b"new")
    monkeypatch.undo()
    assert (target / "weights.bin").read_bytes() == b"old"
    assert _entries(tmp_path) == ["out"]


def test_replace_false_keeps_a_target_another_process_finished_first(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_directory(target, replace=False) as folder:
        (folder / "weights.bin").write_bytes(b"ours")
        _write(target, b"theirs")  # the other process swaps its folder in while ours is being written
    assert (target / "weights.bin").read_bytes() == b"theirs"
    assert _entries(tmp_path) == ["out"]


def test_a_killed_writers_temps_are_removed_by_the_next_write_and_live_ones_kept(tmp_path):
    """A SIGKILL between creating a temp and renaming it leaves the temp; the next atomic write into the same folder
    on this host removes it, whatever its target (its writer's pid is gone), and keeps a temp of a live writer or
    of another host."""
    import subprocess
    import sys

    from lora_lab.utils import io

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = io._HOST
    stale_file = tmp_path / f".metrics.json.{dead.pid}@{host}.ab12.tmp.json"
    stale_dir = tmp_path / f".adapter-tmp-{dead.pid}@{host}-xy"
    live = tmp_path / f".metrics.json.{os.getppid()}@{host}.cd34.tmp.json"
    elsewhere = tmp_path / f".metrics.json.{dead.pid}@other-host.ef56.tmp.json"
    other_target = tmp_path / f".attempt-7.json.{dead.pid}@{host}.gh78.tmp.json"  # a target never written again
    for path in (stale_file, live, elsewhere, other_target):
        path.write_text("{")
    stale_dir.mkdir()
    (stale_dir / "adapter_model.safetensors").write_bytes(b"\x00")
    io.atomic_write_text(tmp_path / "metrics.json", "{}")
    with io.atomic_directory(tmp_path / "adapter") as staging:
        (staging / "a.txt").write_text("a")
    assert not stale_file.exists() and not stale_dir.exists() and not other_target.exists()
    assert live.exists() and elsewhere.exists()
    assert (tmp_path / "metrics.json").read_text() == "{}" and (tmp_path / "adapter" / "a.txt").is_file()
