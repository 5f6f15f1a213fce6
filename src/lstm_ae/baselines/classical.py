"""Classical restoration baselines (scikit-image denoisers, known-blur deconvolution), tuned on validation.

They are the bar a learned restorer has to clear: each knows the corruption's sigma, and its one
free strength is chosen by mean PSNR on validation images, never on test images. Images are
(N, H, W, 3) floats in [0, 1]; outputs are float32, clipped to [0, 1].
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from scipy.ndimage import gaussian_filter
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet, wiener

from lstm_ae.metrics import psnr_per_image

# Each method's grid of strengths, per task. Denoise strengths are multiples of the known noise
# sigma (TV weight, the sigma given to BayesShrink, NL-means' h), so one grid serves any
# corruption.noise_sigma. Deblur strengths are Wiener's balance and Richardson-Lucy's iterations.
# The grids bracket the optimum measured on validation images at sigma 0.1 / blur 1 px.
CLASSICAL: dict[str, dict[str, tuple[float, ...]]] = {
    "denoise": {
        "tv": (0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        "wavelet": (0.8, 0.85, 0.9, 0.95, 1.0, 1.1),
        "nl_means": (0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    },
    "deblur": {
        # The blurred input is rounded to 8 bits (corruption.to_8_bits), and that rounding is the
        # only noise: small enough that the best Wiener balance is about 1e-4, and Richardson-Lucy
        # still gains at 100 iterations (validation images, blur 1 px).
        "wiener": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
        # 200 iterations take about 0.09 ms of CPU per image and iteration: 3 CPU minutes for
        # 10,000 images; the iterates nest, so the smaller counts come free.
        "richardson_lucy": (10, 20, 50, 100, 200),
    },
}
TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default, which corruption.gaussian_blur uses
T = TypeVar("T")
_RL_BATCH = 1000  # images per Richardson-Lucy batch: about 12 MB for each of its float32 arrays


def methods(task: str) -> tuple[str, ...]:
    """The classical methods for ``task`` ("denoise" or "deblur")."""
    if task not in CLASSICAL:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(CLASSICAL)}")
    return tuple(CLASSICAL[task])


def _task_of(method: str) -> str:
    for task, grids in CLASSICAL.items():
        if method in grids:
            return task
    names = ", ".join(name for grids in CLASSICAL.values() for name in grids)
    raise ValueError(f"unknown method {method!r}; choose one of: {names}")


def gaussian_psf(sigma: float, truncate: float = TRUNCATE) -> np.ndarray:
    """The 2-D kernel scipy's gaussian_filter applies: the outer product of its normalised 1-D kernel.

    Deconvolution needs the exact blur, including scipy's radius ``int(truncate * sigma + 0.5)``.
    """
    if sigma <= 0:
        raise ValueError(f"blur sigma must be > 0, got {sigma}")
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    return np.outer(kernel, kernel)


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """The deblur task's own blur (corruption.gaussian_blur's call, without its clip), in image layout."""
    return gaussian_filter(images, sigma=(0, sigma, sigma, 0), mode="reflect", truncate=TRUNCATE)


def _richardson_lucy(blurred: np.ndarray, sigma: float, iterations: Sequence[int]) -> list[np.ndarray]:
    """Richardson-Lucy deconvolution, returning the estimate after each of ``iterations``.

    The update is scikit-image's richardson_lucy (start at 0.5, multiply by the back-projected
    ratio), with the task's own mirrored-border blur as the forward model. That blur is symmetric
    (it is diagonal in the DCT-II basis), so it is also its own adjoint, and the estimate never
    sees a border the corruption did not make. skimage's version, on images padded by 16
    mirrored px, reached the same PSNR but took 2.8 ms of CPU per image and iteration against
    0.09 ms here: 100 iterations on 10,000 images would take 46 CPU minutes instead of 1.6.
    The iterates nest, so one pass scores every grid point.
    """
    results: list[list[np.ndarray]] = [[] for _ in iterations]
    for start in range(0, len(blurred), _RL_BATCH):
        # float32 gives the same PSNR as float64 (to 1e-8 dB) in half the time.
        observed = np.asarray(blurred[start : start + _RL_BATCH], dtype=np.float32)
        estimate = np.full_like(observed, 0.5)
        for step in range(1, max(iterations) + 1):
            estimate *= _blur(observed / np.maximum(_blur(estimate, sigma), 1e-12), sigma)
            for slot, wanted in enumerate(iterations):
                if wanted == step:
                    results[slot].append(estimate.copy())
    return [np.concatenate(parts) for parts in results]


def _wiener(blurred: np.ndarray, sigma: float, balance: float, mirror_pad: bool = True) -> np.ndarray:
    """skimage's Wiener filter (Laplacian regulariser) on each channel of each image.

    The filter works in the Fourier domain, i.e. it assumes the blur wrapped around the borders.
    Padding each image by half its size with mirrored borders makes the padded image one period
    of the mirrored extension, so that circular blur is exactly the corruption's mode="reflect"
    one: the filter then inverts the very blur that made the input. Without the padding the
    best balance (1e-2) reached 26.8 dB on 1,000 CIFAR-10 test images; with it, 100 dB (the cap
    of metrics.MSE_FLOOR), because the task's blur adds no noise.
    """
    _, h, w, channels = blurred.shape
    psf = gaussian_psf(sigma)
    top, left = (h // 2, w // 2) if mirror_pad else (0, 0)
    pads = ((0, 0), (top, h - top), (left, w - left), (0, 0)) if mirror_pad else ((0, 0),) * 4
    padded = np.pad(np.asarray(blurred, dtype=np.float64), pads, mode="symmetric")
    if psf.shape[0] > min(padded.shape[1:3]):
        raise ValueError(f"blur sigma {sigma} needs a {psf.shape[0]} px kernel, too large for {h}x{w} images")
    out = np.empty_like(padded)
    for n in range(len(padded)):
        for c in range(channels):
            out[n, ..., c] = wiener(padded[n, ..., c], psf, balance, clip=False)
    return out[:, top : top + h, left : left + w]


def _denoise_one(method: str, image: np.ndarray, factor: float, sigma: float) -> np.ndarray:
    """One image with one denoiser; the settings besides the strength were chosen on validation images."""
    if method == "tv":
        return denoise_tv_chambolle(image, weight=factor * sigma, channel_axis=-1)
    if method == "wavelet":
        # 3 levels of sym4 on 32 px touch the borders at every level (pywt warns), yet beat 2
        # levels by about 0.3 dB and 1 level by over 1 dB on validation images; so does YCbCr
        # against RGB (db1 and db2 were 0.2-0.5 dB worse).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Level value of .* is too high")
            return denoise_wavelet(
                image,
                sigma=factor * sigma,
                wavelet="sym4",
                wavelet_levels=3,
                mode="soft",
                method="BayesShrink",
                convert2ycbcr=True,
                rescale_sigma=True,
                channel_axis=-1,
            )
    # 5x5 patches searched within 7x7 windows suit 32 px images and take about 1.3 ms each.
    return denoise_nl_means(
        image, patch_size=5, patch_distance=3, h=factor * sigma, sigma=sigma, fast_mode=True, channel_axis=-1
    )


def _restore_chunk(
    method: str, images: np.ndarray, strengths: Sequence[float], sigma: float
) -> list[np.ndarray]:
    """``images`` restored once per strength: a list of (n, H, W, C) float32 arrays in [0, 1]."""
    if method == "richardson_lucy":
        outs = _richardson_lucy(images, sigma, [int(s) for s in strengths])
    elif method == "wiener":
        outs = [_wiener(images, sigma, s) for s in strengths]
    else:
        outs = [np.stack([_denoise_one(method, im, s, sigma) for im in images]) for s in strengths]
    return [np.clip(out, 0.0, 1.0).astype(np.float32, copy=False) for out in outs]


def _check_arguments(method: str, images: np.ndarray, strengths: Sequence[float], sigma: float) -> None:
    _task_of(method)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"expected a non-empty batch of RGB images (N, H, W, 3), got shape {images.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma (the corruption's known sigma) must be > 0, got {sigma}")
    for strength in strengths:
        if not strength > 0:
            raise ValueError(f"{method} strength must be > 0, got {strength}")
        if method == "richardson_lucy" and strength != int(strength):
            raise ValueError(f"richardson_lucy strength is a whole number of iterations, got {strength}")


def _in_chunks(function: Callable[..., T], arrays: Sequence[np.ndarray], n_jobs: int) -> list[T]:
    """``function`` on one slice of ``arrays`` per worker: joblib's processes sidestep the GIL of
    the per-image loops. n_jobs == 1 runs in this process, without joblib's start-up cost."""
    if n_jobs == 1:
        return [function(*arrays)]
    count = min(len(arrays[0]), effective_n_jobs(n_jobs))
    slices = zip(*(np.array_split(array, count) for array in arrays), strict=True)
    return Parallel(n_jobs=n_jobs)(delayed(function)(*parts) for parts in slices)


def _psnr_chunk(
    method: str, strengths: Sequence[float], sigma: float, corrupted: np.ndarray, clean: np.ndarray
) -> np.ndarray:
    """Per-image PSNR of each strength's restoration, (len(strengths), n): scored in the worker,
    so only numbers travel back from it, not a batch of images per strength."""
    return np.stack(
        [psnr_per_image(clean, out) for out in _restore_chunk(method, corrupted, strengths, sigma)]
    )


def restore(
    method: str, corrupted_images: np.ndarray, strength: float, sigma: float, n_jobs: int = 1
) -> np.ndarray:
    """Restore a batch with ``method`` at ``strength``, knowing the corruption's ``sigma``.

    ``sigma`` is the noise sigma for denoise methods and the blur sigma (pixels) for deblur ones;
    the result is float32 (N, H, W, 3) in [0, 1]. ``n_jobs`` > 1 (or -1: all cores) spreads the
    images over joblib worker processes.
    """
    images = np.asarray(corrupted_images)
    _check_arguments(method, images, [strength], sigma)
    restore_chunk = partial(_restore_chunk, method, strengths=[strength], sigma=sigma)
    return np.concatenate([part[0] for part in _in_chunks(restore_chunk, [images], n_jobs)])


def tune_strength(
    method: str,
    corrupted_val: np.ndarray,
    clean_val: np.ndarray,
    sigma: float,
    grid: Sequence[float] | None = None,
    n_jobs: int = 1,
) -> tuple[float, dict[float, float]]:
    """The strength from ``grid`` (default: CLASSICAL's) with the best mean PSNR on validation images.

    Returns ``(best_strength, val_psnr_by_strength)``. Pass validation images only: the choice
    must not see the test set it is then scored on.
    """
    grid = tuple(CLASSICAL[_task_of(method)][method] if grid is None else grid)
    if not grid:
        raise ValueError("grid must hold at least one strength")
    corrupted_val, clean_val = np.asarray(corrupted_val), np.asarray(clean_val)
    _check_arguments(method, corrupted_val, grid, sigma)
    if corrupted_val.shape != clean_val.shape:
        shapes = f"{corrupted_val.shape} and {clean_val.shape}"
        raise ValueError(f"corrupted_val and clean_val must have the same shape, got {shapes}")
    psnr_chunk = partial(_psnr_chunk, method, grid, sigma)
    per_image = np.concatenate(_in_chunks(psnr_chunk, [corrupted_val, clean_val], n_jobs), axis=1)
    scores = {strength: float(psnr) for strength, psnr in zip(grid, per_image.mean(axis=1), strict=True)}
    return max(scores, key=scores.__getitem__), scores
