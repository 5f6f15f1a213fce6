"""PCA baseline: exact at full rank, better with more components, clipped, and validated."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lstm_ae.baselines.pca import pca_reconstruct


def _low_rank_images(n: int, rank: int, seed: int = 0) -> np.ndarray:
    """Images of shape (n, 4, 4, 3) on a ``rank``-dimensional affine subspace, well inside (0, 1)."""
    rng = np.random.default_rng(seed)
    codes = rng.uniform(-1, 1, size=(n, rank))
    basis = rng.uniform(-1, 1, size=(rank, 48)) / rank
    return (0.5 + 0.4 * codes @ basis).reshape(n, 4, 4, 3)


def test_full_rank_reconstruction_is_exact() -> None:
    rng = np.random.default_rng(0)
    x_train = rng.uniform(size=(60, 4, 4, 3))
    x_eval = rng.uniform(size=(7, 4, 4, 3))
    recon = pca_reconstruct(x_train, x_eval, n_components=48)
    assert recon.shape == x_eval.shape
    assert recon.dtype == np.float32
    np.testing.assert_allclose(recon, x_eval, atol=1e-4)


def test_components_matching_data_rank_are_exact() -> None:
    x = _low_rank_images(50, rank=5)
    np.testing.assert_allclose(pca_reconstruct(x[:40], x[40:], n_components=5), x[40:], atol=1e-4)


def test_error_decreases_as_components_grow() -> None:
    rng = np.random.default_rng(1)
    x_train = rng.uniform(size=(200, 4, 4, 3))
    errors = [np.mean((pca_reconstruct(x_train, x_train, n) - x_train) ** 2) for n in (1, 4, 16, 32, 48)]
    assert all(a > b for a, b in itertools.pairwise(errors))
    assert errors[-1] < 1e-8


def test_output_is_clipped_to_unit_range() -> None:
    x_train = np.random.default_rng(2).uniform(size=(30, 12))
    # Far outside the training cloud, so the projection lands outside [0, 1] before clipping.
    x_eval = np.stack([np.full(12, 5.0), np.full(12, -5.0)])
    recon = pca_reconstruct(x_train, x_eval, n_components=3)
    assert recon.min() >= 0.0 and recon.max() <= 1.0
    assert recon.min() == 0.0 and recon.max() == 1.0


def test_same_seed_gives_same_result() -> None:
    x = np.random.default_rng(3).uniform(size=(80, 48))
    np.testing.assert_array_equal(pca_reconstruct(x, x, 5, seed=7), pca_reconstruct(x, x, 5, seed=7))


@pytest.mark.parametrize("n_components", [0, -1, 31, 49])
def test_bad_n_components_raises(n_components: int) -> None:
    x_train = np.random.default_rng(4).uniform(size=(30, 4, 4, 3))  # min(N, D) = 30
    with pytest.raises(ValueError, match="n_components"):
        pca_reconstruct(x_train, x_train, n_components=n_components)


def test_feature_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="same features"):
        pca_reconstruct(np.zeros((10, 12)), np.zeros((2, 13)), n_components=2)
