"""A model registered before 57f6aa2 moved the package into rooms still loads, predicts and serves.

Such a model carries its own copy of the old package (code/lstm_ae, with serving.py a module) and
an entry file, served_model.py, that runs ``from lstm_ae.serving import ReconstructionModel``.
Loading it, MLflow 3.17 only puts the model's code/ folder first on sys.path
(mlflow.utils.model_utils._add_code_to_system_path); it neither removes nor swaps modules already
imported. So which lstm_ae serves depends on the process:

- a fresh process (``mlflow.pyfunc.load_model`` in a new interpreter, the worker that
  ``mlflow models serve`` starts): nothing has imported lstm_ae yet, so all of it comes from the
  model's code/ copy, old layout and all; the installed package is never imported;
- a process that has imported lstm_ae already (``lstm-ae reconstruct --model models:/...``): the
  package and every submodule come from the installed package, the model's code/ copy is never
  read, and the old entry file's import is answered by ``lstm_ae.serving.__getattr__`` (without
  it: "cannot import name 'ReconstructionModel' from 'lstm_ae.serving'").

The fixture is the folder of a logged model, made with commit 1a04b3e's code by this script
(``PYTHONPATH=/tmp/oldlayout/src .venv/bin/python make_fixture.py WORK tests/fixtures/...``, WORK
an empty folder; see the fixture's README.md)::

    import shutil
    import sys
    from pathlib import Path

    import keras
    import mlflow

    from lstm_ae.config import ModelConfig
    from lstm_ae.model import build_autoencoder
    from lstm_ae.tracking.registry import log_reconstruction_model

    work, dest = Path(sys.argv[1]), Path(sys.argv[2])
    keras.utils.set_random_seed(0)
    cfg = ModelConfig(
        encoder_widths=(8,), decoder_widths=(8,), head="dense", bidirectional=True, row_index=True
    )
    build_autoencoder(cfg).save(work / "model.keras")
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    experiment = mlflow.create_experiment("fixture", artifact_location=(work / "art").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    with mlflow.start_run():
        log_reconstruction_model(work / "model.keras")
    [logged] = mlflow.search_logged_models(output_format="list")
    local = mlflow.artifacts.download_artifacts(logged.model_uri, dst_path=str(work / "download"))
    shutil.copytree(local, dest, ignore=shutil.ignore_patterns("__pycache__"))
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

import lstm_ae
from tests.helpers.servers import model_server, post_json

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "model_logged_before_layout_move"
NAME = "cifar10-lstm-autoencoder"  # tracking.registry.REGISTERED_MODEL; importing it would load TensorFlow
MODEL_URI = f"models:/{NAME}@champion"
INSTALLED = Path(lstm_ae.__file__).resolve().parent  # the new package, as installed in this venv
BIN = Path(sys.executable).parent
# Modules only the old layout has, and one only the new layout has.
OLD_ONLY = ("lstm_ae.inference", "lstm_ae.sequences")
NEW_ONLY = "lstm_ae.serving.pyfunc"


def user_env(store: str, **extra: str) -> dict[str, str]:
    """A user's shell: the venv's bin first, the package as installed (no PYTHONPATH), no MLflow or
    DVC settings but the test's store as the tracking URI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_")) and k != "PYTHONPATH"}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", MLFLOW_TRACKING_URI=store, **extra)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def imported_lstm_ae_modules(importtime_log: str) -> set[str]:
    """The lstm_ae modules that any process imported, from its PYTHONPROFILEIMPORTTIME=1 stderr."""
    return set(
        re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(lstm_ae(?:\.\w+)*)\s*$", importtime_log, re.MULTILINE)
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh SQLite store holding the fixture as train and evaluate left a model before the move:
    a run's logged model named "model" with the fixture's files, registered from its models:/ URI
    (as registry.register_model does) as version 1 and made champion.

    Registering a models:/<id> URI looks the logged model up through the global tracking URI
    (MLflow's SQL registry ignores the client's own), so that is set here and put back after.
    """
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            patch.setenv(variable, uri)  # and restored on leaving
        patch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
        patch.setattr(mlflow.tracking._model_registry.utils, "_registry_uri", None)
        client = mlflow.MlflowClient()
        experiment = client.create_experiment(NAME, artifact_location=(root / "mlartifacts").as_uri())
        run_id = client.create_run(experiment, run_name="trained before the move").info.run_id
        logged = client.create_logged_model(experiment, name="model", source_run_id=run_id)
        client.log_model_artifacts(logged.model_id, str(FIXTURE))
        client.finalize_logged_model(logged.model_id, "READY")
        client.set_terminated(run_id)
        version = mlflow.register_model(logged.model_uri, NAME, tags={"test_mse": "0.06"})
        client.set_registered_model_alias(NAME, "champion", version.version)
    return uri


# Loads the model in a new interpreter and reports what it predicted and where lstm_ae came from.
LOAD = """
import json, sys
import numpy as np
if sys.argv[1] == "new-package-first":
    import lstm_ae.serving.pyfunc  # as `lstm-ae reconstruct` has done by the time it loads a model
import mlflow
model = mlflow.pyfunc.load_model(sys.argv[2])
images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
out = model.predict(images)
recon, mse = np.asarray(out["reconstruction"]), np.asarray(out["mse"])
served = type(model.unwrap_python_model())
print(json.dumps({
    "keys": sorted(out), "recon_shape": recon.shape, "mse_shape": mse.shape,
    "min": float(recon.min()), "max": float(recon.max()), "mse_finite": bool(np.isfinite(mse).all()),
    "served_class": f"{served.__module__}.{served.__qualname__}", "first_on_path": sys.path[0],
    "modules": {n: m.__file__ for n, m in sys.modules.items() if n.split(".")[0] == "lstm_ae"},
}))
"""


def load_in_new_process(store: str, mode: str, tmp_path: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", LOAD, mode, MODEL_URI],
        cwd=tmp_path,
        env=user_env(store),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The current package also gives an autoencoder's code (its last encoder LSTM's state).
    assert report["keys"] in (["mse", "reconstruction"], ["code", "mse", "reconstruction"])
    assert report["recon_shape"] == [2, 32, 32, 3] and report["mse_shape"] == [2]
    assert 0.0 <= report["min"] <= report["max"] <= 1.0 and report["mse_finite"]
    return report


def test_the_fixture_is_a_model_logged_before_the_move() -> None:
    flavor = yaml.safe_load((FIXTURE / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model" and flavor["code"] == "code"
    assert Path(flavor["model_code_path"]).name == "served_model.py"
    assert (FIXTURE / flavor["artifacts"]["keras_model"]["path"]).is_file()
    assert (FIXTURE / "code/lstm_ae/serving.py").is_file() and not (FIXTURE / "code/lstm_ae/serving").exists()
    assert "from lstm_ae.serving import ReconstructionModel" in (FIXTURE / "served_model.py").read_text()
    assert sum(f.stat().st_size for f in FIXTURE.rglob("*") if f.is_file()) < 500_000


def test_the_old_entry_files_import_finds_the_current_class() -> None:
    from lstm_ae.serving import ReconstructionModel
    from lstm_ae.serving.pyfunc import ReconstructionModel as current

    assert ReconstructionModel is current
    with pytest.raises(ImportError, match="NoSuchName"):
        from lstm_ae.serving import NoSuchName  # noqa: F401


@pytest.mark.slow
def test_a_fresh_process_serves_it_with_the_models_own_old_code(store: str, tmp_path: Path) -> None:
    report = load_in_new_process(store, "fresh", tmp_path)
    code = Path(report["first_on_path"])
    assert code.name == "code" and (code.parent / "MLmodel").is_file()  # the downloaded model's copy
    assert report["served_class"] == "lstm_ae.serving.ReconstructionModel"  # old serving.py
    assert report["modules"]["lstm_ae.serving"] == str(code / "lstm_ae" / "serving.py")
    assert all(Path(file).is_relative_to(code / "lstm_ae") for file in report["modules"].values())
    assert set(OLD_ONLY) <= report["modules"].keys() and NEW_ONLY not in report["modules"]
    assert report["keys"] == ["mse", "reconstruction"]  # the old code knew no code output


@pytest.mark.slow
def test_a_process_that_imported_the_new_package_serves_it_with_that(store: str, tmp_path: Path) -> None:
    report = load_in_new_process(store, "new-package-first", tmp_path)
    assert Path(report["first_on_path"]).name == "code"  # MLflow still put the model's copy first
    assert report["served_class"] == "lstm_ae.serving.pyfunc.ReconstructionModel"
    assert all(Path(file).resolve().is_relative_to(INSTALLED) for file in report["modules"].values())
    assert not set(OLD_ONLY) & report["modules"].keys()
    assert report["keys"] == ["code", "mse", "reconstruction"]


@pytest.mark.slow
def test_the_reconstruct_tool_takes_it_by_its_registry_uri(store: str, tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    result = subprocess.run(
        [str(BIN / "lstm-ae"), "reconstruct", str(image), "--model", MODEL_URI, "--out", str(out), "-q"],
        cwd=tmp_path,
        env=user_env(store, PYTHONPROFILEIMPORTTIME="1"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = (out / "errors.csv").read_text().splitlines()
    assert lines[0] == "rank,file,mse,psnr,original_size,model_size,figure"
    assert len(lines) == 2 and lines[1].startswith(f"1,{image},") and lines[1].endswith(",32x32,photo.png")
    assert (out / "photo.png").is_file()
    modules = imported_lstm_ae_modules(result.stderr)
    assert NEW_ONLY in modules and not set(OLD_ONLY) & modules  # the installed package served it


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_models_own_old_code(store: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with model_server(MODEL_URI, tmp_path, user_env(store, PYTHONPROFILEIMPORTTIME="1"), log) as base:
        image = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        status, answer = post_json(f"{base}/invocations", {"inputs": [image.tolist()]})
        assert status == 200, answer
        recon = np.asarray(answer["predictions"]["reconstruction"])
        mse = np.asarray(answer["predictions"]["mse"])
        assert recon.shape == (1, 32, 32, 3) and 0 <= recon.min() <= recon.max() <= 1 and mse.shape == (1,)
    modules = imported_lstm_ae_modules(log.read_text())
    assert set(OLD_ONLY) <= modules and NEW_ONLY not in modules  # the worker imported the model's copy
