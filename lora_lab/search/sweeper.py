"""`hydra/sweeper=optuna`: an Optuna study whose trials are ordinary lora-lab jobs on any Hydra launcher.

Why not hydra-optuna-sweeper as is: it pins Optuna below 3, restarts its trial count on every rerun (a killed
search rerun with the same command runs `n_trials` more), and stops the whole search at the first failed trial
unless told otherwise. Here:
- the study lives in `<sweep dir>/optuna.db` (SQLite); a rerun of the same command (the presets give the sweep
  dir a stable name) loads it, closes the trials the killed run left running as failed ("interrupted"), and runs
  only the trials still missing; the seeded sampler sees every finished trial;
- trials go to the launcher in batches of `n_jobs` (basic: one after another; local/slurm: side by side); a
  multi-process job (DDP) is one job, so one trial;
- a trial whose job failed, diverged, was refused or was interrupted is told to the study as FAIL with the
  reason from its `metrics.json` (user attribute `failure`), never as a number, and the search goes on; the
  multirun's own accounting (`run_callbacks.SweepOutcome`) then exits 1 and names the failed jobs;
- `seeds`: each trial is scored as the mean over these seeds (one job per seed); `confirm_top` with
  `confirm_seeds`: after the trials, the `confirm_top` best are rerun on these seeds and the best is chosen by
  the mean over all its seeds (a cheap one-seed screen, then a confirmation where the noise is large);
  `final_seeds`: the chosen parameters are run again on held-out seeds at the end. Confirmation and final runs
  are recorded in the study as they finish, so a rerun does not repeat them;
- `search_results.json`, the optimisation-history and parameter-importance figures, and the command that reruns
  the best trial are written into the sweep dir (`search/results.py`).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from lora_lab.config.errors import ConfigError, exit_on_input_error

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("lora_lab")

DIRECTIONS = ("auto", "maximize", "minimize")
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler"}  # optuna.samplers.<name>
FINISHED = ("COMPLETE", "FAIL", "PRUNED")


def task_direction(config: DictConfig) -> str:
    """The task's primary metric decides: accuracy and Rouge-L up, perplexity down."""
    from lora_lab.tasks import TASKS  # upward on purpose: the direction is the task's

    name = OmegaConf.select(config, "task.name")
    return "maximize" if TASKS.get(str(name)).higher_is_better else "minimize"


INTERRUPTED = "interrupted: the search stopped while this trial ran"


def counts_toward_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """A finished trial uses up one of `n_trials`; one cut short by a killed search does not (it is rerun)."""
    return trial.state.name in FINISHED and trial.user_attrs.get("failure") != INTERRUPTED


def job_failure(ret: JobReturn) -> str | None:
    """None for a job with a finite score; else why not, from the job's own metrics.json where it has one."""
    if ret.status == JobStatus.COMPLETED and isinstance(ret.return_value, int | float) \
            and math.isfinite(float(ret.return_value)):
        return None
    from lora_lab.report.job_result import read_result  # the one reader of job results

    reason = None
    result = read_result(Path(str(ret.hydra_cfg.hydra.runtime.output_dir))) if ret.hydra_cfg else None
    if result is not None and result.metrics is None and result.unreadable:
        reason = f"{result.path}: {result.problem}"
    elif result is not None and result.metrics is not None:
        metrics = result.metrics
        if metrics.get("status") != "ok":
            reason = f"{metrics.get('status')}: {metrics.get('error_type') or ''} {metrics.get('error') or ''}".strip()
        else:
            note = metrics.get("score_note")  # why the recipe's result stage has no number (eval.after=false)
            reason = f"ok but no finite score (score={metrics.get('score')!r}" + (f": {note})" if note else ")")
    if reason is None and ret.status == JobStatus.FAILED:
        reason = f"job raised {type(ret._return_value).__name__}: {ret._return_value}"
    return reason or "refused or failed before writing metrics.json (see the job's log)"


def set_aside(sweep_dir: Path, job_nums: Sequence[int]) -> None:
    """An interrupted trial's job dirs move to `<sweep dir>/interrupted/`: kept for a look, out of the sweep's job
    count (the trial is rerun under a new number, and its failure stays recorded in the study)."""
    for num in job_nums:
        job_dir = sweep_dir / str(num)
        if job_dir.is_dir():
            (sweep_dir / "interrupted").mkdir(exist_ok=True)
            job_dir.rename(sweep_dir / "interrupted" / str(num))


class OptunaSearch(Sweeper):
    def __init__(self, n_trials: int = 16, n_jobs: int = 1, direction: str = "auto", sampler: str = "tpe",
                 seed: int = 0, storage: str | None = None, study_name: str | None = None,
                 params: dict[str, str] | None = None, seeds: Sequence[int] | None = None,
                 final_seeds: Sequence[int] | None = None, confirm_top: int = 0,
                 confirm_seeds: Sequence[int] | None = None) -> None:
        self.n_trials, self.n_jobs, self.direction = int(n_trials), int(n_jobs), direction
        self.sampler_name, self.seed, self.storage, self.study_name = sampler, int(seed), storage, study_name
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.seeds = [int(s) for s in seeds] if seeds else []
        self.final_seeds = [int(s) for s in final_seeds] if final_seeds else []
        self.confirm_top = int(confirm_top or 0)
        self.confirm_seeds = [int(s) for s in confirm_seeds] if confirm_seeds else []
        self.config: DictConfig | None = None
        self.launcher = None
        self.next_job = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    # ----- the search -----
    def sweep(self, arguments: list[str]) -> Any:
        # a bad space, another search in this dir, an unwritable results file or study: one line, exit 2
        with exit_on_input_error("lora-lab"):
            return self.search(arguments)

    def check(self) -> None:
        """The sweeper's own keys. Checked here, not in __init__: Hydra reports an exception raised while it
        builds the sweeper as a multi-line error, while `sweep` prints a ConfigError as the project's one line."""
        if self.direction not in DIRECTIONS:
            raise ConfigError("hydra.sweeper.direction", self.direction, "unknown direction", choices=DIRECTIONS)
        if self.sampler_name not in SAMPLERS:
            raise ConfigError("hydra.sweeper.sampler", self.sampler_name, "unknown sampler", choices=sorted(SAMPLERS))
        for key, value in (("n_trials", self.n_trials), ("n_jobs", self.n_jobs)):
            if value < 1:
                raise ConfigError(f"hydra.sweeper.{key}", value, "must be >= 1")
        if self.confirm_top < 0:
            raise ConfigError("hydra.sweeper.confirm_top", self.confirm_top, "must be >= 0")
        if bool(self.confirm_top) != bool(self.confirm_seeds):
            raise ConfigError("hydra.sweeper.confirm_seeds" if self.confirm_top else "hydra.sweeper.confirm_top",
                              self.confirm_seeds or self.confirm_top,
                              "confirm_top and confirm_seeds go together (the best trials, rerun on these seeds)")
        screened = set(self.seeds or [self.config_seed()])
        for key, seeds in (("confirm_seeds", self.confirm_seeds), ("final_seeds", self.final_seeds)):
            reused = sorted(screened & set(seeds))
            if reused:
                raise ConfigError(f"hydra.sweeper.{key}", seeds, f"seed(s) {reused} already score the trials; "
                                  "choose other seeds")
        if set(self.confirm_seeds) & set(self.final_seeds):
            raise ConfigError("hydra.sweeper.final_seeds", self.final_seeds,
                              "held-out seeds must differ from confirm_seeds (they chose the best)")

    def config_seed(self) -> int:
        """The seed every trial runs with when `seeds` is not given: the run's own `seed`."""
        return int(OmegaConf.select(self.config, "seed", default=0)) if self.config is not None else 0

    def search(self, arguments: list[str]) -> Any:
        # imported here, not at the top: Hydra imports the sweeper's module at the start of every run
        from lora_lab.search.results import write_results
        from lora_lab.search.space import parse_space

        assert self.config is not None and self.launcher is not None
        self.check()
        space, fixed = parse_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        if not space:
            raise ConfigError("hparams_search", None, "the search space is empty: choose a preset "
                              "(hparams_search=lora) or give a sweep such as method.r=choice(4,8,16)")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        direction = task_direction(self.config) if self.direction == "auto" else self.direction
        definition = {"space": {key: repr(dist) for key, dist in sorted(space.items())}, "fixed": sorted(fixed),
                      "seeds": self.seeds, "direction": direction}
        study = self.open_study(sweep_dir, direction, definition)
        self.next_job = self.first_free_job(sweep_dir, study)
        remaining = self.n_trials - sum(counts_toward_budget(t) for t in study.trials)
        log.info("search %s: %s %s, %d trials done, %d to run", study.study_name, direction,
                 OmegaConf.select(self.config, "task.name"), self.n_trials - max(remaining, 0), max(remaining, 0))
        while remaining > 0:
            batch = [study.ask(space) for _ in range(min(self.n_jobs, remaining))]
            self.run_trials(study, batch, fixed)
            remaining -= len(batch)
        confirmed = self.confirm(study, fixed) if self.confirm_top else None
        final = self.rerun_best(study, fixed, confirmed) if self.final_seeds else None
        write_results(study, sweep_dir, fixed=fixed, space=space, seeds=self.seeds, final=final,
                      n_trials=self.n_trials, confirmed=confirmed)
        return study

    def open_study(self, sweep_dir: Path, direction: str, definition: dict[str, Any]) -> optuna.Study:
        """The study of this sweep dir, new or resumed; a resumed one must be the same search (space, fixed
        overrides, seeds, direction): only `n_trials` may grow."""
        import optuna

        storage = self.storage or f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"
        name = self.study_name or sweep_dir.name
        study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True,
                                    sampler=getattr(optuna.samplers, SAMPLERS[self.sampler_name])(seed=self.seed))
        if study.direction.name.lower() != direction:
            raise ConfigError("hydra.sweeper.direction", direction,
                              f"the study in {storage} was made to {study.direction.name.lower()}")
        stored = study.user_attrs.get("definition")
        if stored is None and not study.trials:
            study.set_user_attr("definition", definition)
        elif stored != definition:
            changed = sorted(k for k in definition if (stored or {}).get(k) != definition[k])
            raise ConfigError("hydra.sweep.dir", str(sweep_dir),
                              f"holds a search with another {', '.join(changed) or 'definition'} "
                              f"(was: {json.dumps({k: (stored or {}).get(k) for k in changed})}); rerun the same "
                              "command to resume it, or give this search another hydra.sweep.dir")
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            # left running by a search that was killed: its job never reported back
            study._storage.set_trial_user_attr(trial._trial_id, "failure", INTERRUPTED)
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            set_aside(sweep_dir, trial.user_attrs.get("job_nums", []))
        return study

    @staticmethod
    def first_free_job(sweep_dir: Path, study: optuna.Study) -> int:
        """Job numbers continue after every number used before: the study's trials (an interrupted trial's dir
        was set aside, its number stays taken) and the job dirs (the held-out reruns are no trials), so no job
        ever reuses a dir or a set-aside name."""
        numbers = [int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        numbers += [num for trial in study.trials for num in trial.user_attrs.get("job_nums", [])]
        return max(numbers, default=-1) + 1

    def launch(self, job_overrides: list[list[str]]) -> list[JobReturn]:
        returns = list(self.launcher.launch([tuple(o) for o in job_overrides], initial_job_idx=self.next_job))
        self.next_job += len(job_overrides)
        return returns

    def run_trials(self, study: optuna.Study, batch: list[optuna.trial.Trial], fixed: list[str]) -> None:
        import optuna

        from lora_lab.search.space import trial_overrides

        seeds = self.seeds or [None]
        jobs = [[*fixed, *trial_overrides(trial.params), *([f"seed={s}"] if s is not None else [])]
                for trial in batch for s in seeds]
        for index, trial in enumerate(batch):  # recorded before launch: a killed search knows its trials' dirs
            first = self.next_job + index * len(seeds)
            trial.set_user_attr("job_nums", list(range(first, first + len(seeds))))
        returns = self.launch(jobs)
        for index, trial in enumerate(batch):
            rets = returns[index * len(seeds):(index + 1) * len(seeds)]
            trial.set_user_attr("run_dirs", [str(r.hydra_cfg.hydra.runtime.output_dir) for r in rets if r.hydra_cfg])
            failures = [f for f in map(job_failure, rets) if f]
            if failures:
                trial.set_user_attr("failure", failures[0])
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                log.warning("trial %d failed: %s", trial.number, failures[0])
                continue
            values = [float(r.return_value) for r in rets]
            if len(values) > 1:
                trial.set_user_attr("seed_values", values)
            study.tell(trial, statistics.fmean(values))

    def seed_runs(self, study: optuna.Study, attr: str, trial: optuna.trial.FrozenTrial, fixed: list[str],
                  seeds: list[int]) -> dict[str, float | None]:
        """`trial`'s parameters on `seeds`, each job's value (None: failed) kept in the study's user attribute
        `attr` as soon as its batch returns, so a rerun of the search launches only the seeds still missing."""
        from lora_lab.search.space import trial_overrides

        key = str(trial.number)
        done = dict(study.user_attrs.get(attr, {}).get(key, {}))
        todo = [s for s in seeds if str(s) not in done]
        for start in range(0, len(todo), self.n_jobs):
            chunk = todo[start:start + self.n_jobs]
            returns = self.launch([[*fixed, *trial_overrides(trial.params), f"seed={s}"] for s in chunk])
            for seed, ret in zip(chunk, returns, strict=True):
                failure = job_failure(ret)
                if failure:
                    log.warning("trial %d, seed %d failed: %s", trial.number, seed, failure)
                done[str(seed)] = None if failure else float(ret.return_value)
            recorded = dict(study.user_attrs.get(attr, {}))
            recorded[key] = done
            study.set_user_attr(attr, recorded)
        return {str(s): done[str(s)] for s in seeds}

    def confirm(self, study: optuna.Study, fixed: list[str]) -> dict[str, Any] | None:
        """The `confirm_top` best trials rerun on `confirm_seeds`; the chosen trial has the best mean over its
        own seeds and these (a trial with a failed confirmation run is not chosen)."""
        import optuna

        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not completed:
            return None
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        ranked = sorted(completed, key=lambda t: (-t.value if maximize else t.value, t.number))[:self.confirm_top]
        rows = []
        for trial in ranked:
            screened = trial.user_attrs.get("seed_values") or [trial.value]
            values = self.seed_runs(study, "confirmed", trial, fixed, self.confirm_seeds)
            ok = None not in values.values()
            every = [*screened, *(v for v in values.values() if v is not None)]
            rows.append({"trial": trial.number, "params": trial.params, "screen_value": trial.value,
                         "seeds": values, "mean": statistics.fmean(every) if ok else None,
                         "sd": statistics.stdev(every) if ok and len(every) > 1 else None})
        scored = [r for r in rows if r["mean"] is not None]
        chosen = (max if maximize else min)(scored, key=lambda r: r["mean"]) if scored else None
        if chosen is not None:
            log.info("search: confirmed on seeds %s: trial %d chosen, mean %.4g over %d seeds", self.confirm_seeds,
                     chosen["trial"], chosen["mean"], len(self.confirm_seeds) + 1)
        return {"seeds": self.confirm_seeds, "top": self.confirm_top, "trials": rows,
                "chosen": None if chosen is None else chosen["trial"]}

    def rerun_best(self, study: optuna.Study, fixed: list[str],
                   confirmed: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The chosen parameters again on held-out seeds: a score not chosen by the same noise that picked it.
        Chosen: the confirmation's pick where there was one, else the study's best trial."""
        import optuna

        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not completed:
            return None
        number = confirmed["chosen"] if confirmed and confirmed.get("chosen") is not None else study.best_trial.number
        best = study.trials[number]
        values = self.seed_runs(study, "held_out", best, fixed, self.final_seeds)
        finite = [v for v in values.values() if v is not None]
        return {"trial": best.number, "params": best.params, "seeds": values,
                "mean": statistics.fmean(finite) if finite else None,
                "sd": statistics.stdev(finite) if len(finite) > 1 else None}
