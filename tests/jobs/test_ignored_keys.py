"""No key without effect: each recipe declares the keys it reads (jobs/recipe.py). A key the user set that the job
does not read is one config error line on a single run's command line; in a multirun (or from a preset) the job
runs and records it as `ignored_keys`. The declarations are checked against what each recipe really reads."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

import lora_lab.jobs as jobs
from lora_lab.config.compose import CONF_DIR
from lora_lab.config.errors import ConfigError
from lora_lab.config.user_keys import COMMAND_LINE, SetKey, UserKeys
from lora_lab.config.validate import validate_config
from lora_lab.jobs import recipe_of, run_job
from lora_lab.jobs.ignored_keys import ignored_keys
from lora_lab.meta.from_runs import build_bank_from_runs
from tests.helpers.lab_helpers import compose_cfg, tiny_cfg
from tests.helpers.sweep_helpers import run_cli

QUICK = ["task.num_train=16", "task.eval_limit=2", "train.max_steps=1", "train.batch_size=2", "eval.batch_size=2",
         "hardware.num_threads=1", "print_summary=false"]


def check(overrides: list[str], *, multirun: bool = False, experiment: str | None = None) -> list:
    raw = compose_cfg(overrides)
    cfg = validate_config(raw)
    return ignored_keys(cfg, raw, UserKeys.of(overrides, experiment, multirun=multirun), recipe_of(cfg))


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    """Two tiny LoRAs trained by the project's own runs (different operand ranges), as a bank."""
    root = tmp_path_factory.mktemp("bank")
    for job, operand in enumerate((5, 60)):
        raw = tiny_cfg("train.max_steps=1", "task.num_train=16", "task.eval_limit=2", "eval.before=false",
                       f"task.max_operand={operand}")
        run_job(raw, root / "runs" / str(job))
        (root / "runs" / str(job) / ".hydra").mkdir()
        OmegaConf.save(raw, root / "runs" / str(job) / ".hydra" / "config.yaml")
    build_bank_from_runs(root / "runs", root / "bank")
    return root / "bank"


# ----- the check on composed configs -----

@pytest.mark.parametrize(("overrides", "line"), [
    (["method=none", "train.lr=5e-4"],
     "train.lr=0.0005: the evaluate recipe (method=none) does not read it (it reads: seed, adapter_path, model.*, "),
    (["method=none", "eval.after=false"], "eval.after=False: the evaluate recipe (method=none) does not read it"),
    (["method=meta", "method.bank_dir=b", "train.max_steps=10"],
     "train.max_steps=10: the meta recipe (method=meta) does not read it (it reads: seed, model.*, task.*, method.*, "
     "metric.*, "),
    (["method=meta", "method.bank_dir=b", "eval.after=false"], "eval.after=False: the meta recipe (method=meta) "),
    (["method=lora", "adapter_path=a"], "adapter_path='a': the finetune recipe (method=lora) does not read it"),
    (["method=lora", "metric=kl"], "metric='kl': the finetune recipe (method=lora) does not read it"),
    (["method=lora", "metric.kl_epsilon=0.5"], "metric.kl_epsilon=0.5: the finetune recipe (method=lora) "),
    (["task=arith", "task.max_input_chars=5"], "task.max_input_chars=5: task=arith does not read it (it reads: name, "),
    (["method=galore", "train.lr=1e-3"], "train.lr=0.001: method=galore reads method.lr=0.0001 instead"),
    (["method=galore", "train.optimizer=adamw"], "train.optimizer='adamw': method=galore reads method.optimizer=auto "),
    (["method=lora", "method.lr=1e-3", "train.lr=2e-3"], "train.lr=0.002: method=lora reads method.lr=0.001 instead"),
])
def test_an_unread_key_is_refused_in_a_single_run_and_recorded_in_a_multirun(overrides: list[str], line: str) -> None:
    with pytest.raises(ConfigError) as err:
        check(["model=tiny", *overrides])
    assert str(err.value).startswith(line), str(err.value)
    key = line.split("=", 1)[0]
    assert [i.key for i in check(["model=tiny", *overrides], multirun=True)] == [key]


@pytest.mark.parametrize("method", ["lora", "none", "meta"])
def test_keys_a_recipe_reads_or_that_never_change_a_result_pass(method: str) -> None:
    own = {"lora": ["train.lr=2e-3", "eval.after=false", "hardware.precision=float32", "method.r=4"],
           "none": ["adapter_path=a", "method.adapter_base=config", "train.max_seq_len=64"],
           "meta": ["method.bank_dir=b", "metric=kl", "metric.kl_epsilon=1e-6", "eval.before=false"]}[method]
    anyhow = ["model=tiny", "task=sst2", "task.max_input_chars=30", "task.train_limit=8" if method != "none" else
              "task.eval_limit=3", "seed=3", "hardware=cpu", "hardware.num_threads=1", "hardware.slurm.mem_gb=8",
              "logger=wandb", "logger.tags=[a]", "print_summary=false", "resume=true", "overwrite=true",
              "eval.batch_size=4", "hydra.run.dir=somewhere", "hydra/launcher=local"]
    assert check([*anyhow, f"method={method}", *own]) == []


def test_a_preset_key_a_job_does_not_read_is_set_aside_not_refused() -> None:
    ignored = check(["experiment=smoke", "method=none", "task=sst2"], experiment="smoke")
    assert [(i.key, i.source) for i in ignored] == [
        ("task.num_train", "experiment=smoke"), ("task.num_test", "experiment=smoke"),
        ("train.max_steps", "experiment=smoke"), ("train.batch_size", "experiment=smoke")]
    assert ignored[0].why == "task=sst2 does not read it"
    assert ignored[2].why == "the evaluate recipe (method=none) does not read it"


def sweep_params(node: dict) -> dict[str, list[str]]:
    params = ((node.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    return {key: [v.strip() for v in str(values).split(",") if v.strip()] for key, values in params.items()}


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes_and_its_jobs_read_every_key_it_sets(preset: str) -> None:
    node = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "experiment" / f"{preset}.yaml"), resolve=False)
    axes = [[f"{key}={value}" for value in values[:2]] for key, values in sweep_params(node).items()]
    for job in itertools.product(*axes):  # the first two values of each swept key, in every combination
        overrides = [f"experiment={preset}", *job]
        if compose_cfg(overrides).method.get("bank_dir", "") is None:
            overrides.append("method.bank_dir=bank")  # a meta job needs a bank; the preset leaves it to the user
        # as a single run: a key of the preset (set aside) or of its sweep (refused) that the job does not read
        assert check(overrides, experiment=preset) == [], overrides


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml")))
def test_every_search_preset_searches_keys_its_recipe_reads(preset: str) -> None:
    node = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "hparams_search" / f"{preset}.yaml"), resolve=False)
    raw = compose_cfg([f"hparams_search={preset}", *(["method.bank_dir=bank"] if preset == "meta" else [])])
    searched = UserKeys(tuple(SetKey(key, COMMAND_LINE) for key in sweep_params(node)))  # each trial sets them all
    cfg = validate_config(raw)
    assert searched.keys and ignored_keys(cfg, raw, searched, recipe_of(cfg)) == []


@pytest.mark.parametrize("method", ["lora", "qlora", "galore", "sparse_lora", "rosa", "hira", "none", "meta"])
def test_the_default_config_with_each_method_passes(method: str) -> None:
    overrides = [f"method={method}", *(["method.bank_dir=bank"] if method == "meta" else [])]
    assert check(overrides) == [] and check([]) == []


# ----- end to end on the tiny model -----

@pytest.mark.parametrize(("args", "line"), [
    (["method=lora", "adapter_path=nowhere"],
     "lora-lab: config error: adapter_path='nowhere': the finetune recipe (method=lora) does not read it (it reads: "
     "seed, model.*, task.*, method.*, hardware.*, train.*, eval.*)"),
    (["method=none", "train.lr=5e-4"],
     "lora-lab: config error: train.lr=0.0005: the evaluate recipe (method=none) does not read it (it reads: "),
    (["method=meta", "method.bank_dir=nowhere", "train.max_steps=10"],
     "lora-lab: config error: train.max_steps=10: the meta recipe (method=meta) does not read it (it reads: "),
], ids=["finetune", "evaluate", "meta"])
def test_a_single_run_with_a_key_its_recipe_does_not_read_is_one_line_and_exit_2(tmp_path: Path, args, line) -> None:
    result = run_cli(["model=tiny", "task.eval_limit=2", *args, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                     timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(line), lines
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error_type"] == "ConfigError"
    assert not list((tmp_path / "run").glob("predictions_*")) and not (tmp_path / "run" / "adapter").exists()


def test_a_multirun_runs_the_jobs_that_ignore_a_key_and_records_it(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "model=tiny", *QUICK, "method=lora,none", "train.lr=2e-3", "eval.before=false",
                      f"hydra.sweep.dir={sweep}"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lora, none = (json.loads((sweep / n / "metrics.json").read_text()) for n in ("0", "1"))
    assert lora["status"] == none["status"] == "ok"
    assert "ignored_keys" not in lora  # it reads them all
    assert none["ignored_keys"] == ["train.max_steps", "train.batch_size", "train.lr", "eval.before"]
    warnings = [x for x in result.stdout.splitlines() + result.stderr.splitlines() if "ignored for this job" in x]
    assert len(warnings) == 1 and "train.lr (the evaluate recipe (method=none) does not read it)" in warnings[0]


def test_a_meta_multirun_records_the_training_keys_it_ignores(tmp_path: Path, bank: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "model=tiny", "method=meta", f"method.bank_dir={bank}", "method.target=arith_0",
                      "metric=js,kl", "train.max_steps=3", "task.eval_limit=2", "eval.before=false",
                      "print_summary=false", f"hydra.sweep.dir={sweep}"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["status"] == "ok" and metrics["ignored_keys"] == ["train.max_steps"]
        assert metrics["score_stage"] == "after" and metrics["score"] == metrics["after_accuracy"]


# ----- the declarations against what each recipe reads -----

class ReadKeys:
    """Every key of the job's config (as composed, and as checked) a job touches from the moment it is prepared
    until its score is taken (the checks before look at every key on purpose; they are not the job reading them;
    a bank member's dataset reference is a config of its own)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, raw: DictConfig) -> None:
        self.keys: set[str] = set()
        self.on = False
        roots = {id(raw)}
        get_node, check_before_launch = DictConfig._get_node, jobs.check_before_launch

        def checked(cfg):
            validated = check_before_launch(cfg)
            roots.add(id(validated))
            return validated

        def spy(node, key, *args, **kwargs):
            if self.on and isinstance(key, str) and id(node._get_root()) in roots:
                self.on = False  # naming the key walks the config again
                try:
                    self.keys.add(node._get_full_key(key))
                finally:
                    self.on = True
            return get_node(node, key, *args, **kwargs)

        def start(prepare):
            def wrapped(*args, **kwargs):
                self.on = True
                return prepare(*args, **kwargs)
            return wrapped

        def stop(score):
            def wrapped(*args, **kwargs):
                try:
                    return score(*args, **kwargs)
                finally:
                    self.on = False
            return wrapped

        monkeypatch.setattr(DictConfig, "_get_node", spy)
        monkeypatch.setattr(jobs, "check_before_launch", checked)
        monkeypatch.setattr(jobs, "prepare", start(jobs.prepare))
        monkeypatch.setattr(jobs, "primary_score", stop(jobs.primary_score))


# keys a recipe reads only in a configuration the tiny runs here do not take, and where
CONDITIONAL = {
    "hardware.distributed_backend": "training/distributed.py, with hardware.num_processes > 1",
    "train.max_seq_len": "evaluation/choice_mode.py, a classifier head (encoder models); finetune: always",
    "adapter_path": "jobs/evaluate.py, read on every run (null here)",
}


@pytest.mark.parametrize("method", ["lora", "none", "meta"])
def test_each_recipe_reads_what_it_declares_and_nothing_else(tmp_path: Path, monkeypatch, bank: Path,
                                                             method: str) -> None:
    extra = {"lora": [], "none": [], "meta": [f"method.bank_dir={bank}", "method.target=arith_0"]}[method]
    raw = tiny_cfg(f"method={method}", "train.max_steps=1", "task.eval_limit=2", "task.num_train=16", *extra)
    recipe = recipe_of(validate_config(raw))
    read = ReadKeys(monkeypatch, raw)
    assert run_job(raw, tmp_path / "run")["status"] == "ok"
    assert read.keys and not read.on
    unread = sorted(k for k in read.keys if not recipe.covers(k))
    assert unread == [], f"the {recipe.name} recipe reads keys it does not declare: {unread}"
    for pattern in recipe.reads:
        section = pattern.removesuffix(".*")
        touched = any(k == section or k.startswith(f"{section}.") for k in read.keys)
        assert touched or pattern in CONDITIONAL, f"the {recipe.name} recipe declares {pattern} but never read it"


def test_the_unread_key_check_runs_before_anything_heavy(tmp_path: Path, monkeypatch) -> None:
    import lora_lab.jobs.evaluate as evaluate

    monkeypatch.setattr(evaluate, "load_model_and_tokenizer", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(ConfigError, match=r"^train.lr=0.0005: the evaluate recipe"):
        run_job(tiny_cfg("method=none", "train.lr=5e-4"), tmp_path / "run",
                UserKeys.of(["model=tiny", "method=none", "train.lr=5e-4"]))
