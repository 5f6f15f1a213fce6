"""The command line: help for every stage, and one-line errors (no traceback) for a user's mistakes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_ae.cli import STAGES, main, setting_values

PARAMS = Path(__file__).parents[1] / "params.yaml"


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    command = [sys.executable, "-m", "lstm_ae", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_help_lists_the_stages_and_tune(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert list(STAGES) == ["fetch", "preprocess", "eda", "train", "evaluate", "tune"]
    for stage in STAGES:
        assert stage in out


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_has_help(stage: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([stage, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"lstm-ae {stage}" in out and "--params" in out


def test_unknown_stage_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fit"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def last_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), stderr
    return last


def test_unknown_params_key_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = PARAMS.read_text(encoding="utf-8").replace("train:\n", "train:\n  lr: 0.01\n")
    bad.write_text(text, encoding="utf-8")
    result = run_cli(tmp_path, "train", "--params", str(bad))
    assert result.returncode == 2
    line = last_line_error(result.stderr)
    assert "train.lr" in line and "unknown key" in line


@pytest.mark.parametrize(
    ("pairs", "extra", "expected"),
    [
        (["train.max_epochs=3"], [], {"train.max_epochs": 3}),
        (
            [],
            ["--train.max_epochs", "3", "--model.encoder_widths=[64, 32]"],
            {
                "train.max_epochs": 3,
                "model.encoder_widths": [64, 32],
            },
        ),  # the form `mlflow run -P key=value` passes
        (
            ["train.global_clipnorm=null", "task=denoise"],
            [],
            {"train.global_clipnorm": None, "task": "denoise"},
        ),
    ],
)
def test_settings_on_the_command_line_are_read_as_yaml(pairs, extra, expected) -> None:
    assert setting_values(pairs, extra) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-S", "train.max_epochs"], "expected KEY=VALUE"),
        (["--train.max_epochs"], "expected a value after it"),
        (["stray"], "unexpected argument 'stray'"),
        (["-S", "train.max_epoch=3"], "command line: train.max_epoch: not a key of params.yaml"),
        (["-S", "train.max_epochs=-1"], "train.max_epochs: Input should be greater than 0"),
    ],
)
def test_bad_settings_on_the_command_line_fail_in_one_line(
    tmp_path: Path, args, expected, capsys, monkeypatch
) -> None:
    (tmp_path / "params.yaml").write_bytes(PARAMS.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert main(["train", "-q", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ") and expected in err, err


def test_preprocess_without_archive_names_it_and_the_fetch_stage(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_bytes(PARAMS.read_bytes())
    result = run_cli(tmp_path, "preprocess", "-q")
    assert result.returncode == 1
    line = last_line_error(result.stderr)
    assert "data/raw/cifar-10-python.tar.gz" in line and "dvc repro fetch" in line
    assert not (tmp_path / "data" / "processed").exists()


def test_tune_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    out = capsys.readouterr().out
    for option in (
        "--n-trials",
        "--timeout",
        "--study-name",
        "--storage",
        "--workers",
        "--trials-per-process",
        "--pruner",
    ):
        assert option in out


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--workers", "0"], "tune.workers: Input should be greater than or equal to 1 (got 0)"),
        (
            ["--trials-per-process", "0"],
            "tune.trials_per_process: Input should be greater than or equal to 1 (got 0)",
        ),
        (["--pruner", "asha"], "tune.pruner: Input should be 'median', 'hyperband' or 'none'"),
        (["--study_name", "a b"], "tune.study_name: String should match pattern"),
    ],
)
def test_bad_tune_options_fail_like_bad_params(options: list[str], expected: str, capsys) -> None:
    assert main(["tune", "--params", str(PARAMS), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: command-line options: ") and expected in err
    assert err.count("\n") == 1


def test_tune_without_processed_data_names_the_preprocess_stage(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(PARAMS.read_text(encoding="utf-8"), encoding="utf-8")
    result = run_cli(tmp_path, "tune", "--n-trials", "1")
    assert result.returncode == 1
    assert "data/processed/cifar10.npz not found; run `dvc repro preprocess`" in result.stderr
    assert not (tmp_path / "optuna-journal.log").exists()


def test_the_tracking_server_command_needs_a_backend_store(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI", raising=False)
    assert main(["tracking-server"]) == 1
    assert capsys.readouterr().err == (
        "error: no backend store: give --backend-store-uri postgresql://USER@HOST/mlflow "
        "(or set MLFLOW_BACKEND_STORE_URI)\n"
    )
    assert main(["tracking-server", "--backend-store-uri", "sqlite:///mlflow.db", "--create-database"]) == 1
    assert "--create-database needs a PostgreSQL URL" in capsys.readouterr().err


def test_the_tracking_server_serves_artifacts_on_loopback_with_the_installed_driver() -> None:
    from lstm_ae.cli import build_parser
    from lstm_ae.tracking.databases import with_installed_driver
    from lstm_ae.tracking.server import server_command

    args = build_parser().parse_args(["tracking-server"])
    assert (args.host, args.port, args.artifacts_destination) == ("127.0.0.1", 5000, "mlartifacts-server")
    command = server_command("/srv/artifacts", "127.0.0.1", 5000, None)
    assert command[1:] == [
        "-m",
        "mlflow",
        "server",
        "--serve-artifacts",
        "--artifacts-destination",
        "/srv/artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        "5000",
    ]
    assert with_installed_driver("postgresql://me@db/mlflow") == "postgresql+psycopg2://me@db/mlflow"
    assert with_installed_driver("postgresql+psycopg2://me@db/x") == "postgresql+psycopg2://me@db/x"
