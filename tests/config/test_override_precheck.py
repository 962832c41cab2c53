"""Overrides Hydra cannot compose are one line naming key, value and choices, before Hydra runs (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lora_lab.config.errors import ConfigError
from lora_lab.config.precheck import check_overrides, job_override_sets, run_overrides


@pytest.mark.parametrize("argv,message", [
    (["train.batch_size=2.5"], r"train.batch_size='2.5': Value '2.5' of type 'float' could not be converted"),
    (["metric=foo"], r"metric='foo': no such option \(choices: cosine, js, kl, l2, mmd, wd\)"),
    (["train.nope=2"], r"train.nope='2': unknown key \(choices: .*batch_size.*lr"),
    (["train.lr=["], r"train.lr='\[': cannot parse this override"),
    (["-m", "method=lora,nope"], r"method='nope': no such option \(choices: galore, hira, lora, meta"),
    (["-m", "train.batch_size=2,x"], r"train.batch_size='x': Value 'x' of type 'str'"),
    (["hydra/launcher=nope"], r"hydra/launcher='nope': no such option \(choices: basic, local, slurm"),
])
def test_an_override_hydra_cannot_compose_is_one_config_error(argv, message) -> None:
    with pytest.raises(ConfigError, match=message):
        check_overrides(["model=tiny", *argv])


def test_good_runs_and_sweeps_pass_and_other_modes_are_left_to_hydra() -> None:
    check_overrides(["model=tiny", "-m", "method=lora,qlora", "train.lr=1e-3,2e-3", "hydra/launcher=local"])
    assert run_overrides(["model=tiny", "--cfg", "job"]) is None  # printing, help, another config: Hydra's
    assert run_overrides(["--help"]) is None
    assert run_overrides(["-m", "a=1,2"]) == ["a=1,2"]


def test_each_swept_value_is_composed_with_the_first_value_of_the_others() -> None:
    sets = job_override_sets(["a=1,2", "b=x,y,z", "c=3"])
    assert sets == [["a=1", "b=x", "c=3"], ["a=2", "b=x", "c=3"], ["a=1", "b=y", "c=3"], ["a=1", "b=z", "c=3"]]


def test_the_cli_prints_one_line_and_exits_2(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "lora_lab", "model=tiny", "train.batch_size=2.5"],
                            capture_output=True, text=True, timeout=300,
                            env={"LORA_LAB_OUTPUTS": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["lora-lab: config error: train.batch_size='2.5': Value '2.5' of type 'float' could not be "
                     "converted to Integer"]
    assert not any(tmp_path.iterdir())  # nothing was created
