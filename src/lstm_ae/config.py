"""params.yaml -> frozen, validated settings; every error is one line that names the key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lstm_ae.data.corruption import Corruption, Task
from lstm_ae.errors import UserError


def _number(value: Any) -> Any:
    """Accept YAML's `1e-4` (a string to PyYAML) as a number; refuse booleans, which are ints to Python."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")  # noqa: TRY004 - pydantic reports ValueError
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError("expected a number") from None
    return value


# Integers are strict (no `true` -> 1, no `3.0` -> 3); floats must be finite.
Int = Annotated[int, Strict()]
Float = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]
PositiveInt = Annotated[Int, Field(gt=0)]
Width = Annotated[Int, Field(gt=0, le=4096)]


class ConfigError(UserError, ValueError):
    """A params.yaml problem, phrased as ``file: key: what is expected``."""


class _Section(BaseModel):
    # Unknown keys are errors (a typo must not silently fall back to a default), and settings
    # are immutable once loaded so no stage can change what was recorded.
    model_config = ConfigDict(extra="forbid", frozen=True)


def doc(text: str, **constraints: Any) -> Any:
    """A Field whose description is the key's entry in the settings reference (docs/settings.md)."""
    return Field(description=text, **constraints)


class FetchConfig(_Section):
    url: Annotated[str, doc("Where the archive comes from: a URL, a `file://` URL or a local path.")]
    md5: Annotated[str, doc("The archive's md5 (`md5sum FILE`); nothing is kept unless it matches.")]
    retries: Annotated[
        Int, doc("Extra attempts after a failed or cut-off download (each resumes).", ge=0, le=100)
    ]
    timeout_s: Annotated[Float, doc("Seconds to wait for each network read.", gt=0)]

    @field_validator("url")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected a URL, a file:// URL or a path to the archive")
        return value.strip()

    @field_validator("md5")
    @classmethod
    def _hex_md5(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-fA-F]{32}", value):
            raise ValueError("expected 32 hexadecimal characters (the output of `md5sum FILE`)")
        return value.lower()


class PreprocessConfig(_Section):
    val_fraction: Annotated[
        Float, doc("Share of the training images held out for validation (the report: 0.2).", gt=0, lt=1)
    ]
    max_train_images: Annotated[
        Int | None,
        doc(
            "Keep only the first N of the 50,000 training images, before the validation split "
            "(null: all). For quick runs such as the smoke preset.",
            ge=10,
            le=50_000,
        ),
    ] = None
    max_test_images: Annotated[
        Int | None, doc("Keep only the first N of the 10,000 test images (null: all).", ge=1, le=10_000)
    ] = None


class EdaConfig(_Section):
    scatter_samples: Annotated[Int, doc("Pixels drawn for the RGB scatter-plot matrix.", ge=10, le=1_000_000)]


class CorruptionConfig(_Section):
    """How the restoration tasks degrade the model's input (the target stays the clean image)."""

    blur_sigma: Annotated[Float, doc("deblur: Gaussian blur of the input, in pixels.", gt=0, le=8)]
    noise_sigma: Annotated[
        Float,
        doc("denoise: standard deviation of the added noise (pixels in [0, 1]), then clipped.", gt=0, le=1),
    ]


def _check_even(bidirectional: bool, info: ValidationInfo, section: str, keys: tuple[str, ...]) -> None:
    """A bidirectional LSTM splits its width between two directions, so every width must be even.

    Runs on the ``bidirectional`` key, declared after the widths so they are already validated
    (a width that failed its own check is absent and reported under its own name)."""
    if bidirectional:
        for key in keys:
            odd = [w for w in info.data.get(key, ()) if w % 2]
            if odd:
                raise ValueError(
                    f"true splits each LSTM's width between two directions, so {section}.{key} "
                    f"must hold even widths (it has {odd[0]})"
                )


class RestorerConfig(_Section):
    """The restorer (model.family restorer): LSTMs that sweep rows and columns, no bottleneck."""

    features: Annotated[Width, doc("Per-pixel features the pixels are projected to before the sweeps.")] = 32
    units: Annotated[
        Width, doc("LSTM units per direction of each sweep; a pixel leaves a sweep with twice as many.")
    ] = 32
    blocks: Annotated[
        Int, doc("Row-then-column sweep pairs; after one, every pixel has seen the whole image.", ge=1, le=8)
    ] = 1
    sweeps: Annotated[
        bool,
        Strict(),
        doc(
            "`false`: the ablation, each sweep replaced by a per-pixel Dense layer of the same width, "
            "so no pixel sees another."
        ),
    ] = True


class SweepConfig(_Section):
    """The sweep autoencoder (model.family sweep_ae): a linear code decoded by LSTM sweeps."""

    code_size: Annotated[
        Int,
        doc("Floats per image in the code, the only path to the decoder (the report: 256).", ge=1, le=3072),
    ] = 256
    linear_rate: Annotated[
        Float,
        doc(
            "The encoder's and the linear decoder's learning rate as a share of train.learning_rate "
            "(both start at PCA); 0 keeps them fixed at PCA, the ablation.",
            ge=0,
            le=1,
        ),
    ] = 0.05
    patch: Annotated[
        Literal[1, 2, 4], doc("The sweeps run over blocks of patch x patch pixels (1: every pixel).")
    ] = 2
    features: Annotated[Width, doc("Features per block before the sweeps.")] = 32
    units: Annotated[
        Width, doc("LSTM units per direction of each sweep; a block leaves a sweep with twice as many.")
    ] = 32
    blocks: Annotated[
        Int, doc("Row-then-column sweep pairs; after one, every block has seen the whole image.", ge=1, le=8)
    ] = 1
    sweeps: Annotated[
        Literal["both", "rows", "none"],
        doc(
            "`both`: rows then columns; the ablations: `rows` (row sweeps only, each block sees its "
            "row) and `none` (per-block Dense layers of the same width, no block sees another)."
        ),
    ] = "both"


class ModelConfig(_Section):
    family: Annotated[
        Literal["autoencoder", "sweep_ae", "restorer"],
        doc(
            "`autoencoder`: the report's LSTM autoencoder, every image through one code vector; "
            "`sweep_ae`: a linear code, started at PCA and decoded by LSTM sweeps (see model.sweep); "
            "`restorer`: LSTMs sweep the rows and columns and keep every pixel (deblur and denoise "
            "only, any image size; see model.restorer)."
        ),
    ] = "sweep_ae"
    encoder_widths: Annotated[
        tuple[Width, ...],
        doc(
            "Encoder LSTM widths; the last one is the latent size, the only path to the decoder.",
            min_length=1,
        ),
    ]
    decoder_widths: Annotated[
        tuple[Width, ...], doc("Decoder LSTM widths, after RepeatVector(32).", min_length=1)
    ]
    head: Annotated[
        Literal["lstm", "dense"],
        doc(
            "`lstm`: an LSTM(96, sigmoid) output layer, as in the report; `dense`: tanh LSTMs, then "
            "TimeDistributed Dense(96, sigmoid)."
        ),
    ]
    # Every default here is conf/config.yaml's value (tests/test_config.py checks it), so code that
    # builds a section without naming a key gets what the settings file says.
    bidirectional: Annotated[
        bool,
        Strict(),
        doc(
            "Each LSTM is two of half its width, one reading the rows top-down and one bottom-up "
            "(widths, and so the latent size, keep their meaning; they must be even)."
        ),
    ] = True
    row_index: Annotated[
        bool,
        Strict(),
        doc(
            "The decoder reads each row's one-hot index beside the code (the same for every image, so "
            "nothing passes around the code) instead of counting rows itself."
        ),
    ] = True
    precision: Annotated[
        Literal["float32", "mixed_bfloat16"],
        doc(
            "`mixed_bfloat16`: bfloat16 arithmetic with float32 weights (Keras mixed precision); faster "
            "only on CPUs with bfloat16 instructions (docs/results.md: throughput)."
        ),
    ] = "float32"
    restorer: Annotated[
        RestorerConfig,
        doc("The restorer's shape (model.family restorer); the keys above are the autoencoder's."),
    ] = RestorerConfig()
    sweep: Annotated[SweepConfig, doc("The sweep autoencoder's shape (model.family sweep_ae).")] = (
        SweepConfig()
    )

    @field_validator("bidirectional")
    @classmethod
    def _even_widths(cls, value: bool, info: ValidationInfo) -> bool:
        _check_even(value, info, "model", ("encoder_widths", "decoder_widths"))
        return value

    @property
    def latent_size(self) -> int:
        """Width of the code vector: the last encoder LSTM's output, or the sweep autoencoder's code."""
        return self.sweep.code_size if self.family == "sweep_ae" else self.encoder_widths[-1]


class TrainConfig(_Section):
    learning_rate: Annotated[Float, doc("Adam's learning rate; the peak of the schedule.", gt=0, le=1)]
    batch_size: Annotated[Int, doc("Images per training step.", gt=0, le=65536)]
    max_epochs: Annotated[PositiveInt, doc("Epochs at most (early stopping may end sooner).")]
    patience: Annotated[
        PositiveInt,
        doc("Epochs without a better validation loss before training stops; the best weights are kept."),
    ]
    schedule: Annotated[
        Literal["constant", "cosine", "cooldown"],
        doc(
            "`constant` (the report); `cosine`: warm up over the first tenth of max_epochs, then decay "
            "to zero at max_epochs; `cooldown`: the full rate for four fifths of max_epochs, then "
            "linearly to zero."
        ),
    ] = "cooldown"
    global_clipnorm: Annotated[
        Float | None,
        doc(
            "Scale each step's gradients down to at most this joint L2 norm (Adam's global_clipnorm; "
            "null: off). Guards long runs at a high rate against a rare huge step.",
            gt=0,
        ),
    ] = None


class EvaluateConfig(_Section):
    examples: Annotated[
        Int, doc("Test images, one per class, shown over their reconstructions.", ge=1, le=10)
    ]
    best_worst: Annotated[Int, doc("Best and worst reconstructed test images shown.", ge=1, le=20)]
    classical: Annotated[
        bool,
        Strict(),
        doc(
            "deblur / denoise: also score scikit-image's classical restorations of the same test inputs "
            "(denoise: total variation, wavelet, non-local means; deblur: Wiener, Richardson-Lucy)."
        ),
    ] = True
    classical_val_images: Annotated[
        Int,
        doc(
            "Validation images that choose each classical method's strength (never test images).",
            ge=1,
            le=50_000,
        ),
    ] = 500


def _distinct(value: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(set(value)) != len(value):
        raise ValueError("choices must not repeat")
    return value


def _choices_of(item: Any, text: str) -> Any:
    """A non-empty list of distinct values: one categorical search parameter."""
    return Annotated[tuple[item, ...], doc(text, min_length=1), AfterValidator(_distinct)]


class LogRange(_Section):
    """A positive interval sampled on a log scale (learning rates)."""

    low: Annotated[Float, doc("Lowest value.", gt=0, le=1)]
    high: Annotated[Float, doc("Highest value.", gt=0, le=1)]

    @model_validator(mode="after")
    def _ordered(self) -> LogRange:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


# Each family's search space has its own rate range and batch sizes, of these two kinds.
RateRange = Annotated[LogRange, doc("Adam's learning rate, sampled on a log scale.")]
BatchSizes = _choices_of(Annotated[Int, Field(gt=0, le=65536)], "Batch sizes to try.")


class RestorerSpace(_Section):
    """The restorer's search space (model.family restorer): lists are choices."""

    features: _choices_of(Width, "Per-pixel feature widths to try (model.restorer.features).") = (32,)
    units: _choices_of(Width, "LSTM units per sweep direction to try (model.restorer.units).") = (16, 32)
    blocks: _choices_of(
        Annotated[Int, Field(ge=1, le=8)], "Row-then-column sweep pairs to try (model.restorer.blocks)."
    ) = (1, 2)
    # Its own rate and batch, apart from the autoencoder's: the restorer learns fastest at smaller
    # batches and higher rates (docs/results.md, "Restoration").
    learning_rate: RateRange = LogRange(low=0.001, high=0.01)
    batch_size: BatchSizes = (16, 32, 64)


class SweepSpace(_Section):
    """The sweep autoencoder's search space (model.family sweep_ae): lists are choices; the code
    size stays model.sweep.code_size, so every trial is compared at one code size."""

    features: _choices_of(Width, "Features per block to try (model.sweep.features).") = (32, 64)
    units: _choices_of(Width, "LSTM units per sweep direction to try (model.sweep.units).") = (32, 64)
    patch: _choices_of(Literal[1, 2, 4], "Block sides to try (model.sweep.patch).") = (1, 2)
    linear_rate: _choices_of(
        Annotated[Float, Field(ge=0, le=1)], "Linear maps' rate shares to try (model.sweep.linear_rate)."
    ) = (0.0, 0.03, 0.1)
    learning_rate: RateRange = LogRange(low=0.001, high=0.01)
    batch_size: BatchSizes = (32, 64)


class SearchSpace(_Section):
    """What a tuning trial may choose: lists are categorical choices, learning_rate a log range.

    Every hidden layer of a stack shares one width, so each parameter exists in every trial
    and parameter importances cover all of them.
    """

    latent_size: _choices_of(Width, "Latent sizes to try (the last encoder width).")
    encoder_layers: _choices_of(
        Annotated[Int, Field(ge=0, le=4)], "Encoder LSTMs before the latent one (0 to 4)."
    )
    encoder_width: _choices_of(Width, "Width of those encoder LSTMs.")
    decoder_layers: _choices_of(Annotated[Int, Field(ge=1, le=4)], "Decoder LSTMs (1 to 4).")
    decoder_width: _choices_of(Width, "Width of the decoder LSTMs.")
    learning_rate: RateRange
    batch_size: BatchSizes
    head: _choices_of(Literal["lstm", "dense"], "Output heads to try (see model.head).")
    bidirectional: _choices_of(Annotated[bool, Strict()], "Try one-way and/or bidirectional LSTMs.") = (
        False,
        True,
    )
    row_index: _choices_of(
        Annotated[bool, Strict()], "Try the decoder without and/or with the row index."
    ) = (False, True)
    restorer: Annotated[
        RestorerSpace,
        doc("What a trial may choose when model.family is restorer (the keys above are the autoencoder's)."),
    ] = RestorerSpace()
    sweep: Annotated[SweepSpace, doc("What a trial may choose when model.family is sweep_ae.")] = SweepSpace()

    @field_validator("bidirectional")
    @classmethod
    def _even_widths(cls, value: tuple[bool, ...], info: ValidationInfo) -> tuple[bool, ...]:
        _check_even(True in value, info, "tune.search", ("latent_size", "encoder_width", "decoder_width"))
        return value


class TuneConfig(_Section):
    study_name: Annotated[
        str,
        doc(
            "The study to create or continue (`--study-name`).",
            min_length=1,
            max_length=200,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        ),
    ]
    storage: Annotated[
        str,
        doc(
            "A file path (an Optuna journal file, relative to the project root) or an Optuna storage URL "
            "such as postgresql://user@host/db for several machines (`--storage`).",
            min_length=1,
        ),
    ]
    n_trials: Annotated[
        Int,
        doc(
            "Finished trials the study should hold; running again tops it up (`--n-trials`).", ge=1, le=10_000
        ),
    ]
    timeout_s: Annotated[
        Float, doc("Start no new trial after this many seconds; 0: no limit (`--timeout`).", ge=0)
    ]
    workers: Annotated[Int, doc("Trials run at once, each in its own process (`--workers`).", ge=1, le=64)]
    trials_per_process: Annotated[
        Int,
        doc(
            "Trials a worker process runs before a fresh one replaces it: more saves start-up, "
            "at the cost of memory that grows with each trial (`--trials-per-process`).",
            ge=1,
            le=100,
        ),
    ] = 1
    heartbeat_s: Annotated[
        Int,
        doc("Database storages: a running trial silent for twice this long is failed.", ge=1, le=3600),
    ]
    pruner: Annotated[
        Literal["median", "hyperband", "none"], doc("Stops trials whose validation loss lags (`--pruner`).")
    ]
    max_epochs: Annotated[Int, doc("Epochs per trial (train.patience still applies).", ge=1, le=1000)]
    train_images: Annotated[Int, doc("Training images per trial (a subset, so a study takes minutes).", ge=1)]
    val_images: Annotated[
        Int, doc("Validation images that score each trial; the test set is never used.", ge=1)
    ]
    search: Annotated[SearchSpace, doc("The search space: lists are choices.")]


PRESET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"


class Config(_Section):
    preset: Annotated[
        str,
        doc(
            "The recipe conf/preset/NAME.yaml whose keys were laid over conf/config.yaml's (`default`: "
            "none); set by the preset file itself (`dvc exp run -S preset=report`, `lstm-ae train --preset "
            "report`).",
            pattern=PRESET_NAME,
        ),
    ] = "default"
    seed: Annotated[
        Int,
        doc(
            "Seeds the split, weight initialisation, batch order, corruptions and EDA sample.", ge=0, lt=2**32
        ),
    ]
    task: Annotated[
        Task,
        doc(
            "What the model learns: `reconstruct` its input (the report), or restore the clean image from a "
            "blurred (`deblur`) or noisy (`denoise`) one."
        ),
    ]
    corruption: CorruptionConfig
    fetch: FetchConfig
    preprocess: PreprocessConfig
    eda: EdaConfig
    model: ModelConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    tune: TuneConfig

    @model_validator(mode="after")
    def _restorer_restores(self) -> Config:
        if self.model.family == "restorer" and self.task == "reconstruct":
            raise ValueError(
                "model.family restorer adds a correction to its input, so on task reconstruct it would "
                "learn the identity; set task to deblur or denoise, or model.family to autoencoder"
            )
        return self

    @property
    def input_corruption(self) -> Corruption:
        """The corruption this task applies to the model's input (none for reconstruct)."""
        return Corruption.for_task(self.task, self.corruption.blur_sigma, self.corruption.noise_sigma)

    def model_identity(self) -> dict[str, Any]:
        """What a trained model is bound to: the task, its input's corruption and the model section.
        train records it beside the model; evaluate refuses a model trained under other values."""
        return {
            "task": self.task,
            "corruption": self.input_corruption.describe(),
            "model": self.model.model_dump(mode="json"),
        }


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (check the spelling against docs/settings.md)"
    if error["type"] == "missing":
        return f"{key}: missing; add it"
    if not key:  # a check across sections (model_validator on Config): its message names the keys
        return message
    if isinstance(error["input"], dict):  # a check across keys of a section: its message names them
        return f"{key}: {message}"
    return f"{key}: {message} (got {error['input']!r})"


def parse_config(raw: Any, source: str = "params.yaml") -> Config:
    """Validate an already-parsed params mapping; raise ConfigError naming every bad key on one line."""
    if raw is None:
        raise ConfigError(f"{source}: empty; expected the sections {', '.join(Config.model_fields)}")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}"
        )
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        # Unknown keys first: a misspelt key also shows up as a missing one, and the typo is the clue.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise ConfigError(f"{source}: " + "; ".join(_describe(e) for e in errors)) from None


def override(cfg: Config, section: str, values: dict[str, Any]) -> Config:
    """``cfg`` with some keys of one section replaced, validated like params.yaml itself."""
    raw = cfg.model_dump(mode="json")
    raw[section] = {**raw[section], **values}
    return parse_config(raw, "command-line options")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one section", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path, what: str) -> Any:
    """Parse one YAML file, turning every read or syntax problem into a one-line ConfigError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; {what}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text: byte {data[exc.start]:#04x} on line {line}; save it as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: YAML error at {where}: {problem}") from None


def presets_dir(params: Path) -> Path:
    """Recipe files live in conf/preset/ beside params.yaml, where DVC's Hydra composition looks."""
    return Path(params).parent / "conf" / "preset"


def _overlay(
    base: dict[str, Any], top: dict[str, Any], source: str | Path, prefix: str = ""
) -> dict[str, Any]:
    """``base`` with ``top``'s values put in, section by section; a key base lacks is an error,
    so a misspelt preset key cannot silently do nothing."""
    merged = dict(base)
    for key, value in top.items():
        name = f"{prefix}{key}"
        if not isinstance(base, dict) or key not in base:
            raise ConfigError(f"{source}: {name}: not a key of params.yaml; check its spelling")
        if isinstance(value, dict) and isinstance(base[key], dict):
            merged[key] = _overlay(base[key], value, source, f"{name}.")
        else:
            merged[key] = value
    return merged


def read_preset(params: Path, name: str) -> tuple[dict[str, Any], Path]:
    """conf/preset/<name>.yaml as a mapping of params.yaml keys, and its path; or a one-line error
    naming the file."""
    if not isinstance(name, str) or not re.fullmatch(PRESET_NAME, name):
        raise ConfigError(f"preset: expected the name of a file in {presets_dir(params)} (got {name!r})")
    path = presets_dir(params) / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in presets_dir(params).glob("*.yaml"))
        raise ConfigError(
            f"preset: no preset {name!r}; the presets are: {', '.join(known) or 'none'} "
            f"(files in {presets_dir(params)})"
        )
    top = _read_yaml(path, "") or {}
    if not isinstance(top, dict):
        raise ConfigError(f"{path}: expected a mapping of params.yaml sections, got {type(top).__name__}")
    if top.get("preset", name) != name:
        raise ConfigError(
            f"{path}: preset: must be the file's own name, {name!r} (got {top['preset']!r}); "
            "it records which recipe ran"
        )
    return {**top, "preset": name}, path


def apply_preset(raw: Any, params: Path, preset: str | None = None) -> tuple[Any, str]:
    """params.yaml's mapping with conf/preset/<preset>.yaml laid over it, and a label for errors.

    Only a preset asked for here (the command line's --preset) is laid over: params.yaml's own
    ``preset`` key records which recipe DVC composed it from, whose values are already in the
    file, and laying that recipe over again would undo a ``-S key=value`` given on top of it.
    Laying a preset over params.yaml gives what Hydra composes from conf/config.yaml, as long as
    params.yaml is conf/config.yaml's composition (a test keeps it so).
    """
    if preset is None or not isinstance(raw, dict):
        return raw, str(params)
    top, path = read_preset(params, preset)
    return _overlay(raw, top, path), f"{params} with {path}"


def set_values(raw: Any, values: dict[str, Any], source: str = "command line") -> Any:
    """``raw`` with dotted keys (``train.max_epochs``) set to the given values; as with a preset, a
    key that params.yaml lacks is an error, so a typo cannot silently do nothing."""
    if not isinstance(raw, dict):
        return raw
    for dotted, value in values.items():
        *sections, key = dotted.split(".")
        top: Any = {key: value}
        for name in reversed(sections):
            top = {name: top}
        raw = _overlay(raw, top, source)
    return raw


def load_config(
    path: Path = Path("params.yaml"), preset: str | None = None, values: dict[str, Any] | None = None
) -> Config:
    """Read and validate params.yaml, with a preset and then single values laid over it (the order
    of `dvc exp run -S preset=NAME -S key=value`: the later wins), failing before any work with a
    one-line message."""
    path = Path(path)
    raw = _read_yaml(path, "run from the project root or pass --params")
    raw, source = apply_preset(raw, path, preset)
    if values:
        raw = set_values(raw, values)
        source = f"{source} with the command line's settings"
    return parse_config(raw, source)
