# `make repro` and `make test` are the two commands a newcomer needs (see README.md).
VENV ?= .venv
PYTHON ?= python3
# Stages call `python -m lstm_ae`; putting the venv first on PATH makes DVC find the right one.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install repro smoke test test-fast lint docs ui tune dashboard exps

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed   ## create .venv with the exact pinned versions

repro: install                ## run the whole pipeline on params.yaml
	dvc repro

smoke: install                ## the whole pipeline on 2,000 + 500 real images in minutes (presets/smoke.yaml)
	dvc exp run -S preset=smoke

# Two pytest-xdist workers: most slow tests wait on one thing at a time (a Python start,
# TensorFlow's import, a tiny model), so two at once cut CI time on two cores. Each test file
# runs whole on one worker (--dist loadfile), so a module fixture is built once and tests that
# build on one another keep their order.
test: install                 ## every test, the end-to-end pipeline runs included
	pytest -n 2 --dist loadfile

test-fast: install            ## unit tests only
	pytest -m "not slow"

lint: install                 ## style, kept by ruff (pinned in requirements.lock)
	ruff check .
	ruff format --check .

# docs/settings.md is generated from the field descriptions in src/lstm_ae/config.py.
docs: install                 ## regenerate docs/settings.md
	python -m lstm_ae.reference params.yaml > docs/settings.md.tmp && mv docs/settings.md.tmp docs/settings.md

# MLflow 3 opens an experiment on its GenAI overview, where no run is listed: open the URL printed
# first instead, the runs table sorted by test MSE with the test metrics shown (tracking.ui_url).
ui: install                   ## browse the runs at the URL printed first
	@python -c 'from lstm_ae.startup import import_quietly; print("runs:", import_quietly("lstm_ae.tracking").ui_url())'
	mlflow ui --backend-store-uri sqlite:///mlflow.db

tune: install                 ## an Optuna study as params.yaml's tune section says
	lstm-ae tune

dashboard: install            ## browse the tuning study at http://127.0.0.1:8080
	optuna-dashboard optuna-journal.log

# The columns worth comparing: test metrics, then task, corruption, model and train settings.
EXPS_HIDDEN := Created|pca_test_(psnr|ssim)|mean_image|brightness|corr_|fetch|preprocess|eda|evaluate|tune|data/|models/|reports/|src/|presets/
exps: install                 ## experiments side by side, without file hashes and rarely changed settings
	dvc exp show --drop '$(EXPS_HIDDEN)'
