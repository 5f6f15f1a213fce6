"""One command line over the pipeline stages; dvc.yaml and MLproject call it."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import sys
import time
from pathlib import Path

STAGES = {
    "fetch": "download the CIFAR-10 archive (or copy a mirror) and verify its md5",
    "preprocess": "read the archive safely, reshape to 32x96 row sequences, split train/validation",
    "eda": "figures and brightness statistics of the training images",
    "train": "train the LSTM autoencoder and log the run to MLflow",
    "evaluate": "test MSE/PSNR/SSIM next to the PCA baseline, figures, all into the training run",
    "tune": "an Optuna study over params.yaml's tune.search; each trial a nested MLflow run",
}

# The stages that log to MLflow.
LOGGING_STAGES = ("train", "evaluate", "tune")

# Commands beside the pipeline's stages: they read no params.yaml.
TOOLS = {
    "reconstruct": "reconstruct or restore your own PNG/JPEG images: each restored PNG, side-by-side PNGs "
    "and errors.csv, worst first",
}

SERVER = "tracking-server"  # a tool too, that reads no params.yaml
SENDER = "send-runs"  # sends what a tracking-server outage kept; reads no params.yaml

# `tune` options override the tune section of params.yaml for one invocation.
TUNE_OPTIONS = {
    "n_trials": (int, "N", "finished trials the study should hold; only the missing ones run"),
    "timeout_s": (float, "SECONDS", "stop starting new trials after this many seconds (0: no limit)"),
    "study_name": (str, "NAME", "study to create or continue"),
    "storage": (str, "PATH|URL", "journal file path or Optuna storage URL, e.g. postgresql://user@host/db"),
    "workers": (int, "N", "parallel worker processes"),
    "trials_per_process": (int, "N", "trials a worker process runs before a fresh one replaces it"),
    "pruner": (str, "NAME", "median, hyperband or none"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-ae",
        description="LSTM autoencoder on CIFAR-10. Run the whole pipeline with `dvc repro`; "
        "each stage is also a subcommand here.",
    )
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, summary in STAGES.items():
        _add_stage(sub, name, summary)
    _add_reconstruct(sub)
    _add_tracking_server(sub)
    summary = "send the runs a tracking-server outage kept (models/unsent-runs/) to their server"
    sender = sub.add_parser(SENDER, help=summary, description=summary[0].upper() + summary[1:] + ".")
    sender.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


def _add_stage(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    """One pipeline stage: the settings file, a preset and single values over it, in that order."""
    stage = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
    stage.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="settings file (default: %(default)s)"
    )
    stage.add_argument(
        "--preset",
        metavar="NAME",
        help="lay conf/preset/NAME.yaml over the settings file (default: none, the file as it is)",
    )
    stage.add_argument(
        "-S",
        "--set",
        dest="values",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set one key, e.g. train.max_epochs=3, after the preset (repeatable; as `dvc exp run -S`; "
        "`--train.max_epochs 3`, the form `mlflow run -P` passes, works too)",
    )
    stage.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only"
    )
    if name == "tune":
        for key, (kind, metavar, text) in TUNE_OPTIONS.items():
            flag = "--timeout" if key == "timeout_s" else "--" + key.replace("_", "-")
            # The underscore spelling is what `mlflow run -P key=value` passes through.
            flags = dict.fromkeys([flag, f"--{key}"])
            stage.add_argument(
                *flags,
                dest=key,
                type=kind,
                metavar=metavar,
                help=f"{text} (default: tune.{key} in params.yaml)",
            )


def _add_reconstruct(sub: argparse._SubParsersAction) -> None:
    tool = sub.add_parser(
        "reconstruct",
        help=TOOLS["reconstruct"],
        description=TOOLS["reconstruct"][0].upper() + TOOLS["reconstruct"][1:] + ".",
        epilog="Writes OUT/<name>.png (each image beside its reconstruction), OUT/restored/<name>.png "
        "(the reconstruction alone, at the size the model made it: the image's own for a restorer, "
        "32x32 for the autoencoder) and OUT/errors.csv. A restorer takes photos larger than 384 "
        "pixels in overlapping tiles, so memory stays bounded (docs/model.md).",
    )
    tool.add_argument(
        "inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER", help="image files, or folders of them"
    )
    tool.add_argument(
        "--model",
        default="models/model.keras",
        help="a .keras file or an MLflow model URI, e.g. models:/cifar10-lstm-autoencoder@champion "
        "(default: %(default)s)",
    )
    tool.add_argument(
        "--out", type=Path, default=Path("reports/reconstruct"), help="output folder (default: %(default)s)"
    )
    tool.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")


def _add_tracking_server(sub: argparse._SubParsersAction) -> None:
    summary = "an MLflow tracking server on PostgreSQL with proxied artifacts (docs/tracking-server.md)"
    server = sub.add_parser(SERVER, help=summary, description=summary[0].upper() + summary[1:] + ".")
    server.add_argument(
        "--backend-store-uri",
        metavar="URL",
        help="PostgreSQL database for runs and models, e.g. postgresql://USER@HOST/mlflow "
        "(default: $MLFLOW_BACKEND_STORE_URI)",
    )
    server.add_argument(
        "--create-database", action="store_true", help="create that database first if it does not exist"
    )
    server.add_argument(
        "--artifacts-destination",
        default="mlartifacts-server",
        metavar="DIR|URI",
        help="where the server keeps artifacts: a folder or e.g. s3://bucket/path (default: %(default)s)",
    )
    server.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 for other machines (default: %(default)s)",
    )
    server.add_argument("--port", type=int, default=5000, help="port to listen on (default: %(default)s)")
    server.add_argument("--workers", type=int, help="server processes (default: MLflow's, 4)")
    server.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def _configure_logging(quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # basicConfig does nothing once the root logger has a handler (a second command in one
    # process, e.g. in tests or a notebook): the level must still follow this command's --quiet.
    logging.getLogger().setLevel(level)
    # TensorFlow's C++ start-up chatter hides the lines that matter; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not _progress_wanted(quiet):  # MLflow's artifact bars would print as noise in logs
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _progress_wanted(quiet: bool) -> bool:
    """Bars in a terminal; plain log lines when piped, under CI or with --quiet."""
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


def setting_values(pairs: list[str], extra: list[str]) -> dict[str, object]:
    """``-S key=value`` pairs and the ``--key value`` / ``--key=value`` options that `mlflow run -P`
    passes through, as {dotted key: value}; each value is read as YAML (3, 0.5, null, [64, 64])."""
    import yaml

    from lstm_ae.config import ConfigError

    items = list(pairs)
    rest = iter(extra)
    for word in rest:
        if not word.startswith("--") or len(word) < 3:
            raise ConfigError(f"unexpected argument {word!r}; set a key with -S KEY=VALUE")
        key, eq, value = word[2:].partition("=")
        if not eq:
            value = next(rest, None)
            if value is None:
                raise ConfigError(f"{word}: expected a value after it (--{key} VALUE)")
        items.append(f"{key}={value}")
    values: dict[str, object] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"-S {item!r}: expected KEY=VALUE, e.g. -S train.max_epochs=3")
        try:
            values[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            values[key.strip()] = value  # not YAML: the plain text, judged by the key's own check
    return values


def run_stage(
    name: str,
    params: Path,
    quiet: bool = False,
    overrides: dict | None = None,
    preset: str | None = None,
    values: dict | None = None,
) -> object:
    """Validate params.yaml, its preset, any single values and overrides of the stage's section
    first, then import and run one stage (imports are heavy: TensorFlow)."""
    from lstm_ae.config import load_config, override
    from lstm_ae.startup import import_quietly

    cfg = load_config(params, preset, values)
    if overrides:
        cfg = override(cfg, name, overrides)
    module = import_quietly(f"lstm_ae.stages.{name}")
    if name in LOGGING_STAGES:  # a tracking server that is down: one line now, not a traceback after the work
        import_quietly("lstm_ae.tracking.health").require_tracking_server()
    if name in ("fetch", "preprocess", "tune"):
        return module.run(cfg, progress=_progress_wanted(quiet))
    return module.run(cfg)


def _dispatch(args: argparse.Namespace, extra: list[str]) -> None:
    """Run the command the arguments name; its heavy imports happen only here."""
    from lstm_ae.startup import import_quietly

    if args.stage == SERVER:
        from lstm_ae.tracking import server as tracking_server

        tracking_server.run(
            args.backend_store_uri,
            args.artifacts_destination,
            args.host,
            args.port,
            args.workers,
            args.create_database,
        )
    elif args.stage == SENDER:
        import_quietly("lstm_ae.tracking.unsent").send_unsent_runs()
    elif args.stage in TOOLS:
        tool = import_quietly(f"lstm_ae.serving.{args.stage}")
        tool.run(args.inputs, args.model, args.out, progress=_progress_wanted(args.quiet))
    else:
        overrides = {k: getattr(args, k) for k in TUNE_OPTIONS if getattr(args, k, None) is not None}
        values = setting_values(args.values, extra)
        run_stage(args.stage, args.params, args.quiet, overrides, args.preset, values)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.stage not in STAGES:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _configure_logging(args.quiet)
    from lstm_ae.config import ConfigError
    from lstm_ae.errors import UserError
    from lstm_ae.startup import handle_signals

    handle_signals()
    started = time.perf_counter()
    try:
        _dispatch(args, extra)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as lstm_ae.errors.Terminated
        signum = getattr(exc, "signum", signal.SIGINT)
        print(
            f"interrupted ({signal.Signals(signum).name}); outputs from before this run are unchanged",
            file=sys.stderr,
        )
        return 128 + signum
    # ru_maxrss is in KiB on Linux: the stage's peak resident memory, reported for the 6 GB budget.
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    logging.getLogger("lstm_ae").info(
        "%s done in %.1f s, peak memory %.2f GiB", args.stage, time.perf_counter() - started, peak_gib
    )
    return 0
