"""The tuning room: the Optuna search space and objective (search) and the trial workers (workers)."""
