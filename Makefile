# `make repro` and `make test` are the two commands a newcomer needs (see README.md).
VENV ?= .venv
PYTHON ?= python3
# Stages call `python -m lstm_ae`; putting the venv first on PATH makes DVC find the right one.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install repro smoke test test-fast lint docs ui tune dashboard tracking-server exps gpu-lock

# TensorFlow's GPU build (requirements-gpu.lock) on a machine with an NVIDIA GPU (nvidia-smi found),
# its CPU build (requirements.lock) elsewhere; `make install GPU=1` or `GPU=0` chooses (docs/sharing.md).
GPU ?= $(if $(shell command -v nvidia-smi),1,0)
LOCK := $(if $(filter 1,$(GPU)),requirements-gpu.lock,requirements.lock)
# The other build goes first: both write the same `tensorflow` package, so one would break the other.
OTHER_TF := $(if $(filter 1,$(GPU)),tensorflow-cpu,tensorflow)

# One stamp per lock, so switching builds reinstalls.
$(VENV)/.installed-$(LOCK): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	rm -f $(VENV)/.installed*
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip uninstall -qq --yes $(OTHER_TF)
	$(VENV)/bin/python -m pip install --quiet -r $(LOCK)
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed-$(LOCK)   ## create .venv with the exact pinned versions (GPU=1: TensorFlow's GPU build)

repro: install                ## run the whole pipeline on params.yaml (composed from conf/ by `dvc exp run`)
	dvc repro

smoke: install                ## the whole pipeline on 2,000 + 500 real images in minutes (conf/preset/smoke.yaml)
	dvc exp run -S preset=smoke

# Three pytest-xdist workers on two cores: the slow tests spend part of their time waiting (on a
# server that starts, a queue that is polled, a child process), and a third worker fills those
# gaps. Each test file runs whole on one worker (--dist loadfile), so a module fixture is built
# once and tests that build on one another keep their order; tests/conftest.py hands out the
# longest files first.
test: install                 ## every test, the end-to-end pipeline runs included
	pytest -n 3 --dist loadfile

test-fast: install            ## unit tests only
	pytest -m "not slow"

lint: install                 ## style, kept by ruff (pinned in requirements.lock)
	ruff check .
	ruff format --check .

# docs/settings.md is generated from the field descriptions in src/lstm_ae/config.py.
docs: install                 ## regenerate docs/settings.md
	python -m lstm_ae.settings_reference params.yaml > docs/settings.md.tmp && mv docs/settings.md.tmp docs/settings.md

# MLflow 3 opens an experiment on its GenAI overview, where no run is listed: open the URL printed
# first instead, the runs table sorted by test MSE with the test metrics shown (tracking.ui_url).
ui: install                   ## browse the runs at the URL printed first
	@python -c 'from lstm_ae.startup import import_quietly; print("runs:", import_quietly("lstm_ae.tracking.ui").ui_url())'
	@case "$$MLFLOW_TRACKING_URI" in http://*|https://*) echo "the tracking server serves this UI itself";; \
	  *) mlflow ui --backend-store-uri sqlite:///mlflow.db;; esac

tune: install                 ## an Optuna study as params.yaml's tune section says
	lstm-ae tune

dashboard: install            ## browse the tuning study at http://127.0.0.1:8080
	optuna-dashboard optuna-journal.log

# An MLflow tracking server on PostgreSQL (it creates the database), artifacts proxied, on loopback:
# then `export MLFLOW_TRACKING_URI=http://127.0.0.1:5000` (docs/tracking-server.md).
TRACKING_DB ?= postgresql:///mlflow
tracking-server: install      ## MLflow tracking server on PostgreSQL (TRACKING_DB=postgresql://USER@HOST/DB)
	lstm-ae tracking-server --backend-store-uri '$(TRACKING_DB)' --create-database

# The columns worth comparing: test metrics, then task, corruption, model and train settings.
EXPS_HIDDEN := Created|pca_test_(psnr|ssim)|.*_strength|(tv|wavelet|nl_means|wiener|richardson_lucy)_test_(mse|ssim)|mean_image|brightness|corr_|fetch|preprocess|eda|evaluate|tune|data/|models/|reports/|src/
exps: install                 ## experiments side by side, without file hashes and rarely changed settings
	dvc exp show --drop '$(EXPS_HIDDEN)'

# requirements.lock with tensorflow[and-cuda] of the same version in place of tensorflow-cpu, every
# package pinned as pip resolves it (without installing; about 2 minutes). Run after changing requirements.lock.
gpu-lock: install             ## regenerate requirements-gpu.lock from requirements.lock
	sed 's/^tensorflow[-_]cpu==/tensorflow[and-cuda]==/' requirements.lock > $(VENV)/gpu-request.txt
	python -m pip install --dry-run --ignore-installed --quiet --report $(VENV)/gpu-report.json -r $(VENV)/gpu-request.txt
	python -m lstm_ae.hardware $(VENV)/gpu-report.json > requirements-gpu.lock.tmp && mv requirements-gpu.lock.tmp requirements-gpu.lock
