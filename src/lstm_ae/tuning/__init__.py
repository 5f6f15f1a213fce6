"""The tuning room: the Optuna search space and objective (search), the trial workers (workers)
and the light entry point of a spawned worker process (spawn)."""
