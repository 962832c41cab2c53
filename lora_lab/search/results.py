"""What a finished (or resumed) search leaves in its sweep dir: `search_results.json` with every trial, the best
one and the command that reruns it, and Optuna's optimisation-history and parameter-importance figures."""

from __future__ import annotations

import logging
import shlex
import warnings
from pathlib import Path
from typing import Any

import optuna

from lora_lab.search.space import trial_overrides
from lora_lab.utils.io import atomic_write_json

log = logging.getLogger("lora_lab")
RESULTS_FILE = "search_results.json"


def trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {"number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
            "params": trial.params, **{k: v for k, v in trial.user_attrs.items()}}


def write_results(study: optuna.Study, sweep_dir: Path, *, fixed: list[str], space: dict, seeds: list[int],
                  final: dict[str, Any] | None, n_trials: int,
                  confirmed: dict[str, Any] | None = None) -> dict[str, Any]:
    trials = study.trials
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if completed else None
    if confirmed and confirmed.get("chosen") is not None:  # the confirmation's pick, not the one-seed best
        best = trials[confirmed["chosen"]]
    results: dict[str, Any] = {
        "study": study.study_name, "direction": study.direction.name.lower(), "n_trials": n_trials,
        "states": states, "space": {key: repr(dist) for key, dist in space.items()}, "fixed": fixed,
        "seeds_per_trial": seeds or None,
        "best": None if best is None else {
            "number": best.number, "value": best.value, "params": best.params,
            "command": shlex.join(["lora-lab", *fixed, *trial_overrides(best.params)]),
        },
        "chosen_by": "confirmation" if confirmed and confirmed.get("chosen") is not None else "trial value",
        "confirmation": confirmed,
        "final_seeds": final,
        "trials": [trial_record(t) for t in trials],
        "figures": write_figures(study, sweep_dir) if len(completed) >= 2 else [],
    }
    atomic_write_json(sweep_dir / RESULTS_FILE, results)
    if best is not None:
        chosen = next((r for r in (confirmed or {}).get("trials", []) if r["trial"] == best.number), None)
        value = f"{best.value:.4g}" if chosen is None or chosen["mean"] is None else \
            f"{chosen['mean']:.4g} over {1 + len(confirmed['seeds'])} seeds"
        print(f"lora-lab: search {sweep_dir}: best trial {best.number}: {value} "
              f"({', '.join(f'{k}={v}' for k, v in best.params.items())})\n  rerun: {results['best']['command']}",
              flush=True)
    return results


def write_figures(study: optuna.Study, sweep_dir: Path) -> list[str]:
    """Optuna's own plots (matplotlib backend); a figure Optuna cannot draw for this study is skipped, with why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    written = []
    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental; nothing a user can act on
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Target and region quantiles select the same set of trials")
        for name, draw in (("optimization_history.png", plots.plot_optimization_history),
                       ("param_importances.png", plots.plot_param_importances)):
            try:
                axes = draw(study)
                axes.figure.savefig(sweep_dir / name, dpi=100, bbox_inches="tight")
                plt.close(axes.figure)
                written.append(name)
            except (ValueError, RuntimeError, ImportError) as err:  # e.g. importances need 2+ varied parameters
                log.info("search: %s not drawn (%s)", name, err)
    return written
