"""Pure, seeded corruptions for the restoration tasks: the model sees the corrupted rows, the
target is always the clean image.

- ``reconstruct``: no corruption (the report's identity task).
- ``deblur``: Gaussian blur of each colour channel, ``corruption.blur_sigma`` pixels.
- ``denoise``: additive Gaussian noise of ``corruption.noise_sigma`` (pixels in [0, 1]), clipped to [0, 1].

A corrupted image is then rounded to 8 bits, as a camera or an image file would store it. Without
that rounding, a known blur can be undone exactly (Wiener deconvolution scores 100 dB on float32
blurred images), and deblurring would measure arithmetic precision instead of restoration.

Every function takes and returns (N, 32, 96) row sequences in [0, 1], the model's layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.ndimage import gaussian_filter

from lstm_ae.data.sequences import to_images, to_sequences

Task = Literal["reconstruct", "deblur", "denoise"]

# One random stream per fixed split, so the validation and test inputs never share noise and are
# the same on every run with the same seed. Training batches use (seed, TRAIN, epoch, batch).
STREAMS = {"val": 1, "test": 2, "train": 3}


LEVELS = 255  # an 8-bit image: 256 levels per channel


def to_8_bits(values: np.ndarray) -> np.ndarray:
    """Round [0, 1] values to the nearest of 256 levels, as saving an 8-bit image does."""
    return (np.rint(np.asarray(values, dtype=np.float32) * LEVELS) / np.float32(LEVELS)).astype(np.float32)


def gaussian_blur(sequences: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each image's channels separately in the image plane (not across rows of the sequence
    layout, where neighbouring values are different colours). Borders are mirrored."""
    images = to_images(np.asarray(sequences, dtype=np.float32))
    blurred = gaussian_filter(images, sigma=(0, sigma, sigma, 0), mode="reflect", truncate=4.0)
    return to_sequences(np.clip(blurred, 0.0, 1.0))


def gaussian_noise(sequences: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, sigma^2) noise to every value and clip to [0, 1], as a sensor would saturate."""
    sequences = np.asarray(sequences, dtype=np.float32)
    noise = rng.standard_normal(sequences.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(sequences + noise, 0.0, 1.0)


@dataclass(frozen=True)
class Corruption:
    """The degradation a task applies to the model's input; ``strength`` is its sigma (0 for none)."""

    task: Task
    strength: float = 0.0

    @classmethod
    def for_task(cls, task: Task, blur_sigma: float, noise_sigma: float) -> Corruption:
        """The corruption ``task`` uses, with only the sigma that applies to it."""
        strength = {"reconstruct": 0.0, "deblur": blur_sigma, "denoise": noise_sigma}[task]
        return cls(task, float(strength))

    @property
    def is_identity(self) -> bool:
        return self.task == "reconstruct"

    @property
    def is_random(self) -> bool:
        """Noise is drawn anew for every training batch; blur is the same every time."""
        return self.task == "denoise"

    def describe(self) -> str:
        """Human-readable, for logs, MLflow tags and figure titles."""
        if self.task == "deblur":
            return f"Gaussian blur, sigma {self.strength:g} px"
        if self.task == "denoise":
            return f"Gaussian noise, sigma {self.strength:g}"
        return "none"

    def apply(self, sequences: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The corrupted copy of ``sequences`` (the input itself for reconstruct); noise needs ``rng``."""
        if self.task == "deblur":
            return to_8_bits(gaussian_blur(sequences, self.strength))
        if self.task == "denoise":
            if rng is None:
                raise ValueError("denoise draws noise: pass a numpy Generator as rng")
            return to_8_bits(gaussian_noise(sequences, self.strength, rng))
        return sequences

    def fixed(self, sequences: np.ndarray, seed: int, split: Literal["val", "test"]) -> np.ndarray:
        """The corrupted validation or test inputs: the same on every run with the same seed."""
        return self.apply(sequences, np.random.default_rng((seed, STREAMS[split])))
