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


class FetchConfig(_Section):
    url: str
    md5: str
    retries: Annotated[Int, Field(ge=0, le=100)]
    timeout_s: Annotated[Float, Field(gt=0)]

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
    val_fraction: Annotated[Float, Field(gt=0, lt=1)]


class EdaConfig(_Section):
    scatter_samples: Annotated[Int, Field(ge=10, le=1_000_000)]


class CorruptionConfig(_Section):
    """How the restoration tasks degrade the model's input (the target stays the clean image)."""

    blur_sigma: Annotated[Float, Field(gt=0, le=8)]  # deblur: Gaussian blur, in pixels
    noise_sigma: Annotated[Float, Field(gt=0, le=1)]  # denoise: additive Gaussian noise, pixels in [0, 1]


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


class ModelConfig(_Section):
    encoder_widths: tuple[Width, ...] = Field(min_length=1)
    decoder_widths: tuple[Width, ...] = Field(min_length=1)
    head: Literal["lstm", "dense"]
    # Every encoder and decoder LSTM reads both ways, half its width each way (the lstm head stays
    # one-way). Off by default so older params files and the report's model keep their meaning.
    bidirectional: Annotated[bool, Strict()] = False
    # The decoder reads each row's one-hot index beside the code (the same for every image, so
    # nothing passes around the code). Off by default, as above.
    row_index: Annotated[bool, Strict()] = False
    # float32 | mixed_bfloat16: compute in bfloat16, keep the weights in float32 (Keras mixed
    # precision). On a CPU with AVX512_BF16 it trains 1.8-1.9x the report's model's samples per CPU
    # second at batch 512-1024 (README: Throughput of the report's model).
    precision: Literal["float32", "mixed_bfloat16"] = "float32"

    @field_validator("bidirectional")
    @classmethod
    def _even_widths(cls, value: bool, info: ValidationInfo) -> bool:
        _check_even(value, info, "model", ("encoder_widths", "decoder_widths"))
        return value

    @property
    def latent_size(self) -> int:
        """Width of the code vector: the last encoder LSTM's output."""
        return self.encoder_widths[-1]


class TrainConfig(_Section):
    learning_rate: Annotated[Float, Field(gt=0, le=1)]
    batch_size: Annotated[Int, Field(gt=0, le=65536)]
    max_epochs: PositiveInt
    patience: PositiveInt
    # constant: Adam at learning_rate throughout (the report). cosine: warm up from a tenth of it
    # over the first tenth of max_epochs, then decay to zero at max_epochs (a fixed budget).
    # cooldown: constant for the first four fifths of max_epochs, then linearly down to zero.
    schedule: Literal["constant", "cosine", "cooldown"] = "constant"
    # Adam's global_clipnorm: scale every step's gradients down so that their joint L2 norm is at
    # most this (null: no clipping). It caps the rare huge step that can throw an LSTM off a good
    # solution at a high rate; ordinary steps of the default model have norms of about 0.03-0.05.
    global_clipnorm: Annotated[Float, Field(gt=0)] | None = None


# The report's model and recipe, now that params.yaml's default is the tuned model: what the
# benchmarks measure ours against (README: "The report's recipe").
REPORT_MODEL = ModelConfig(encoder_widths=(512, 256), decoder_widths=(256,), head="lstm")
REPORT_TRAIN = TrainConfig(learning_rate=1e-4, batch_size=128, max_epochs=200, patience=10)


class EvaluateConfig(_Section):
    examples: Annotated[Int, Field(ge=1, le=10)]
    best_worst: Annotated[Int, Field(ge=1, le=20)]


def _distinct(value: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(set(value)) != len(value):
        raise ValueError("choices must not repeat")
    return value


def _choices_of(item: Any) -> Any:
    """A non-empty list of distinct values: one categorical search parameter."""
    return Annotated[tuple[item, ...], Field(min_length=1), AfterValidator(_distinct)]


class LogRange(_Section):
    """A positive interval sampled on a log scale (learning rates)."""

    low: Annotated[Float, Field(gt=0, le=1)]
    high: Annotated[Float, Field(gt=0, le=1)]

    @model_validator(mode="after")
    def _ordered(self) -> LogRange:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class SearchSpace(_Section):
    """What a tuning trial may choose: lists are categorical choices, learning_rate a log range.

    Every hidden layer of a stack shares one width, so each parameter exists in every trial
    and parameter importances cover all of them.
    """

    latent_size: _choices_of(Width)
    encoder_layers: _choices_of(Annotated[Int, Field(ge=0, le=4)])  # LSTMs before the latent one
    encoder_width: _choices_of(Width)
    decoder_layers: _choices_of(Annotated[Int, Field(ge=1, le=4)])
    decoder_width: _choices_of(Width)
    learning_rate: LogRange
    batch_size: _choices_of(Annotated[Int, Field(gt=0, le=65536)])
    head: _choices_of(Literal["lstm", "dense"])
    bidirectional: _choices_of(Annotated[bool, Strict()]) = (False,)
    row_index: _choices_of(Annotated[bool, Strict()]) = (False,)

    @field_validator("bidirectional")
    @classmethod
    def _even_widths(cls, value: tuple[bool, ...], info: ValidationInfo) -> tuple[bool, ...]:
        _check_even(True in value, info, "tune.search", ("latent_size", "encoder_width", "decoder_width"))
        return value


class TuneConfig(_Section):
    study_name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    # A file path (relative to the project root) is an Optuna journal file; anything with
    # "://" is an Optuna storage URL (sqlite:///..., postgresql://user@host/db).
    storage: Annotated[str, Field(min_length=1)]
    n_trials: Annotated[Int, Field(ge=1, le=10_000)]
    timeout_s: Annotated[Float, Field(ge=0)]  # 0: no time limit
    workers: Annotated[Int, Field(ge=1, le=64)]
    # Trials one worker process runs before a fresh one replaces it: each process costs ~18 s of
    # start-up, and TensorFlow keeps ~17 MiB per model until its process ends. Missing: 1.
    trials_per_process: Annotated[Int, Field(ge=1, le=100)] = 1
    # Database storages only: a running trial silent for twice this long is failed.
    heartbeat_s: Annotated[Int, Field(ge=1, le=3600)]
    pruner: Literal["median", "hyperband", "none"]
    max_epochs: Annotated[Int, Field(ge=1, le=1000)]
    train_images: Annotated[Int, Field(ge=1)]
    val_images: Annotated[Int, Field(ge=1)]
    search: SearchSpace


class Config(_Section):
    seed: Annotated[Int, Field(ge=0, lt=2**32)]
    task: Task
    corruption: CorruptionConfig
    fetch: FetchConfig
    preprocess: PreprocessConfig
    eda: EdaConfig
    model: ModelConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    tune: TuneConfig

    @property
    def input_corruption(self) -> Corruption:
        """The corruption this task applies to the model's input (none for reconstruct)."""
        return Corruption.for_task(self.task, self.corruption.blur_sigma, self.corruption.noise_sigma)


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (check the spelling against the README's params table)"
    if error["type"] == "missing":
        return f"{key}: missing; add it"
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


def load_config(path: Path = Path("params.yaml")) -> Config:
    """Read and validate params.yaml, failing before any work with a one-line message."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run from the project root or pass --params") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text: byte {data[exc.start]:#04x} on line {line}; save it as UTF-8"
        ) from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: YAML error at {where}: {problem}") from None
    return parse_config(raw, str(path))
