"""Thin pipeline stages: each reads its params, calls the core, writes its dvc.yaml outs, logs to MLflow."""
