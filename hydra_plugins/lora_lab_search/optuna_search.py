"""Hydra accepts a sweeper only from the `hydra_plugins` namespace: this registers lora-lab's Optuna search there.

Hydra imports every module here at start-up, in every run; the search module imports Optuna only once a search
starts, so a plain run pays nothing for it.
"""

from lora_lab.search.sweeper import OptunaSearch as _OptunaSearch


class OptunaSearch(_OptunaSearch):
    """`hydra/sweeper=optuna` (conf/hydra/sweeper/optuna.yaml); see lora_lab/search/sweeper.py."""
