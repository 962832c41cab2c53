"""Hyperparameter search: an Optuna study driven through Hydra's sweeper interface (`hparams_search=<preset>`)."""
