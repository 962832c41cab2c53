"""docs/reliability.md, items 6 and 8: saved adapters are evaluated as trained and checked before the base
model loads; disk problems are one line naming the path, leave no half-written file, and outputs get the
umask's permissions."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lora_lab.config.errors import ConfigError, DataError, StorageError
from lora_lab.jobs import evaluate as eval_recipe
from lora_lab.jobs import run_job
from lora_lab.jobs.steps import save_atomically
from lora_lab.utils.io import atomic_directory, atomic_write_json, atomic_write_text
from tests.helpers.lab_helpers import tiny_cfg

QUICK = ["train.max_steps=2", "eval.before=false", "task.eval_limit=4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One tiny LoRA and one tiny QLoRA run (a few seconds each), under umask 027."""
    root = tmp_path_factory.mktemp("trained")
    old = os.umask(0o027)
    try:
        runs = {}
        for method in ("lora", "qlora"):
            runs[method] = root / method
            runs[method].mkdir()
            assert run_job(tiny_cfg(f"method={method}", *QUICK), runs[method])["status"] == "ok"
    finally:
        os.umask(old)
    return runs


def _eval(adapter: Path, run_dir: Path, *extra: str) -> dict:
    return run_job(tiny_cfg("method=none", f"adapter_path={adapter}", "task.eval_limit=4", *extra), run_dir)


# ----- item 6: an adapter is evaluated as it was trained -----

def test_a_qlora_adapter_is_evaluated_on_the_4bit_base_it_was_trained_on(trained, tmp_path, monkeypatch):
    import bitsandbytes as bnb

    seen = {}
    real = eval_recipe.evaluate

    def spy(ctx, model, *args, **kwargs):
        seen["4bit"] = any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
        return real(ctx, model, *args, **kwargs)

    monkeypatch.setattr(eval_recipe, "evaluate", spy)
    for base, label, four_bit in (("recorded", "nf4-4bit", True), ("config", "float32", False)):
        run = tmp_path / base
        run.mkdir()
        metrics = _eval(trained["qlora"] / "adapter", run, f"method.adapter_base={base}")
        assert (metrics["eval_base"], seen["4bit"]) == (label, four_bit)
    after = (trained["qlora"] / "predictions_after.jsonl").read_text().splitlines()
    again = (tmp_path / "recorded" / "predictions_eval.jsonl").read_text().splitlines()
    assert [json.loads(r)["prediction"] for r in again] == [json.loads(r)["prediction"] for r in after]
    (tmp_path / "lora").mkdir()
    assert _eval(trained["lora"] / "adapter", tmp_path / "lora")["eval_base"] == "float32"


def _truncate(path: Path, keep: int = -16) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


WEIGHTS = "adapter_model.safetensors"
ADAPTER_FAULTS = {  # fault on a copy of a good adapter -> (extra overrides, error type, message after the path)
    "no_weights": (lambda d: (d / WEIGHTS).unlink(), [], DataError,
                   r"{d}: no adapter weights \(adapter_model.safetensors or adapter_model.bin\)"),
    "truncated_weights": (lambda d: _truncate(d / WEIGHTS), [], DataError,
                          r"{d}/adapter_model.safetensors: truncated: tensor '.*' ends at byte \d+"),
    "weights_cut_in_header": (lambda d: _truncate(d / WEIGHTS, 40), [], DataError,
                              r"{d}/adapter_model.safetensors: corrupt or truncated safetensors file"),
    "empty_weights": (lambda d: (d / WEIGHTS).write_bytes(b""), [], DataError,
                      r"{d}/adapter_model.safetensors: truncated safetensors file \(0 bytes, no header\)"),
    "config_bad_json": (lambda d: (d / "adapter_config.json").write_text('{"r": 8,\n'), [], DataError,
                        r"{d}/adapter_config.json: line 2: invalid JSON"),
    "config_not_object": (lambda d: (d / "adapter_config.json").write_text("null"), [], DataError,
                          r"{d}/adapter_config.json: expected a JSON object, got NoneType"),
    "config_bad_rank": (lambda d: _edit_json(d / "adapter_config.json", r="eight"), [], DataError,
                        r"{d}/adapter_config.json: field 'r' is 'eight', expected a positive number"),
    "record_bad_json": (lambda d: (d / "lora_lab_method.json").write_text("{"), [], DataError,
                        r"{d}/lora_lab_method.json: line 1: invalid JSON"),
    "other_base_recorded": (lambda d: _edit_json(d / "lora_lab_method.json", base_model={
        "name": "smollm2_135m", "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct"}), [], ConfigError,
        r"model='tiny': the adapter in {d} was trained on 'HuggingFaceTB/SmolLM2-135M-Instruct'"),
    "other_hidden_size": (lambda d: None, ["model.tiny.hidden_size=32"], DataError,
                          r"{d}/adapter_model.safetensors: tensor '.*lora_A.weight' has shape \[8, 64\], but "
                          r"model.layers.0.self_attn.\w+ of model=tiny has 32 inputs"),
    "fewer_layers": (lambda d: None, ["model.tiny.num_hidden_layers=1"], DataError,
                     r"{d}/adapter_model.safetensors: tensor '.*layers.1.*' adapts module 'model.layers.1.*', "
                     r"which model=tiny does not have"),
    "no_config": (lambda d: (d / "adapter_config.json").unlink(), [], ConfigError,
                  r"adapter_path='{d}': no adapter_config.json in this folder"),
    "no_folder": (lambda d: shutil.rmtree(d), [], ConfigError, r"adapter_path='{d}': no such folder"),
}


@pytest.mark.parametrize("fault", ADAPTER_FAULTS)
def test_a_broken_adapter_is_one_line_found_before_the_base_model_loads(trained, tmp_path, monkeypatch, fault):
    damage, extra, error, message = ADAPTER_FAULTS[fault]
    adapter = shutil.copytree(trained["lora"] / "adapter", tmp_path / "adapter")
    damage(adapter)

    def must_not_load(*args, **kwargs):
        raise AssertionError("the base model was loaded before the adapter was checked")

    monkeypatch.setattr(eval_recipe, "load_model_and_tokenizer", must_not_load)
    (tmp_path / "run").mkdir()
    with pytest.raises(error, match="^" + message.format(d=adapter)):
        _eval(adapter, tmp_path / "run", *extra)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"


def test_the_cli_prints_the_adapter_problem_as_one_line(trained, tmp_path):
    adapter = shutil.copytree(trained["lora"] / "adapter", tmp_path / "adapter")
    _truncate(adapter / WEIGHTS)
    env = {**os.environ, "LORA_LAB_OUTPUTS": str(tmp_path / "out")}
    env.pop("LORA_LAB_RUN_TOKEN", None)
    result = subprocess.run([sys.executable, "-m", "lora_lab", "model=tiny", "method=none", f"adapter_path={adapter}"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith(f"lora-lab: data error: {adapter / WEIGHTS}: truncated: tensor ")
    assert "Traceback" not in result.stderr


# ----- item 8: disk problems, half-written files, permissions -----

def _modes(root: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]}


def test_a_run_writes_what_the_umask_allows(trained):
    """The fixture ran under umask 027: files 0640, folders 0750 (tempfile alone would give 0600/0700)."""
    run = trained["lora"]
    modes = _modes(run / "adapter") | {("file", stat.S_IMODE((run / n).stat().st_mode))
                                       for n in ("metrics.json", "predictions_after.jsonl")}
    assert modes == {("dir", 0o750), ("file", 0o640)}


WRITERS = {
    "text": lambda path: atomic_write_text(path, "new"),
    "json": lambda path: atomic_write_json(path, {"status": "new"}),
    "folder": lambda path: _fill(atomic_directory(path)),
    "adapter": lambda path: save_atomically(lambda tmp: (tmp / "adapter_config.json").write_text("{}"), path),
}


def _fill(context) -> None:
    with context as folder:
        (folder / "weights.bin").write_bytes(b"new")


@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
@pytest.mark.parametrize("writer", WRITERS)
def test_atomic_writers_apply_the_umask(tmp_path, writer, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        WRITERS[writer](tmp_path / "out")
    finally:
        os.umask(old)
    expected = {("file", file_mode)} if writer in ("text", "json") else {("dir", dir_mode), ("file", file_mode)}
    assert _modes(tmp_path / "out") == expected


DISK_FAULTS = {  # what fails -> the errno it raises
    "full_disk": (errno.ENOSPC, "No space left on device", "fsync"),
    "quota": (errno.EDQUOT, "Disk quota exceeded", "fsync"),
    "read_only": (errno.EROFS, "Read-only file system", "mkstemp"),
    "no_permission": (errno.EACCES, "Permission denied", "mkstemp"),
}


def _inject(monkeypatch, code: int, reason: str, where: str) -> None:
    def fail(*args, **kwargs):
        raise OSError(code, reason)

    if where == "fsync":
        monkeypatch.setattr(os, "fsync", fail)
    else:
        monkeypatch.setattr(tempfile, "mkstemp", fail)
        monkeypatch.setattr(tempfile, "mkdtemp", fail)


@pytest.mark.parametrize("fault", DISK_FAULTS)
@pytest.mark.parametrize("writer", WRITERS)
def test_a_failed_write_is_one_line_naming_the_path_and_keeps_the_old_content(tmp_path, monkeypatch, fault,
                                                                               writer):
    code, reason, where = DISK_FAULTS[fault]
    target = tmp_path / "out"
    WRITERS[writer](target)
    before = {str(p.relative_to(tmp_path)): p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    _inject(monkeypatch, code, reason, where)
    with pytest.raises(StorageError, match=rf"^{target}(/[\w.]+)?: cannot write \({reason}\)$"):
        WRITERS[writer](target)
    monkeypatch.undo()
    after = {str(p.relative_to(tmp_path)): p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    assert after == before  # old content intact, no temp file or folder left


def test_a_full_disk_while_saving_an_adapter_fails_the_job_in_one_line_without_a_half_adapter(tmp_path,
                                                                                            monkeypatch):
    import lora_lab.methods.lora as lora_method

    def record_on_a_full_disk(folder, record):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "lora_lab_method.json"))

    monkeypatch.setattr(lora_method, "write_record", record_on_a_full_disk)
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(StorageError, match=rf"^{run}/adapter/lora_lab_method.json: cannot write \(No space left"):
        run_job(tiny_cfg("method=lora", *QUICK), run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error_type"] == "StorageError"
    assert not [p.name for p in run.iterdir() if "adapter" in p.name]  # neither adapter/ nor a temp folder


def test_an_os_write_error_anywhere_in_a_job_is_one_cli_line(tmp_path):
    prelude = ("import errno, lora_lab.evaluation.records as r\n"
               "def full(self, path): raise OSError(errno.ENOSPC, 'No space left on device', str(path))\n"
               "r.EvalResult.save_predictions = full\n")
    code = f"{prelude}import sys\nfrom lora_lab.cli import main\nsys.argv = ['lora-lab', *sys.argv[1:]]\nmain()\n"
    env = {**os.environ, "LORA_LAB_OUTPUTS": str(tmp_path)}
    env.pop("LORA_LAB_RUN_TOKEN", None)
    result = subprocess.run([sys.executable, "-c", code, "model=tiny", "method=none", "task.eval_limit=2"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("lora-lab:")]
    assert line.startswith("lora-lab: disk error: ") and line.endswith(
        "predictions_eval.jsonl: No space left on device")
    assert "Traceback" not in result.stderr
