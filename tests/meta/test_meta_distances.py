import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, wasserstein_distance

from lora_lab.config.errors import ConfigError
from lora_lab.meta import distances as distances_module
from lora_lab.meta.distances import (
    MMD_BANDWIDTHS,
    check_metric_for_representation,
    pairwise_distance,
    smooth_distribution,
)

TOKEN_METRICS = ("wd", "kl", "js", "mmd")
HAND = np.array(
    [
        [4.0, 0.0, 0.0, 0.0],  # all mass on token 0
        [0.0, 0.0, 2.0, 0.0],  # all mass on token 2
        [1.0, 1.0, 1.0, 1.0],  # uniform
        [3.0, 1.0, 0.0, 0.0],
    ]
)


def sparse_histograms(n: int, vocab: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.0, size=(n, vocab)).astype(float)
    counts *= rng.random((n, vocab)) < 0.4  # ~60% of tokens unused per dataset
    counts[:, 0] += 1  # no empty rows
    return counts


def brute_force_mmd(p: np.ndarray, q: np.ndarray) -> float:
    ids = np.arange(p.size, dtype=float)
    squared_gaps = (ids[:, None] - ids[None, :]) ** 2
    kernel = sum(a * a / (a * a + squared_gaps) for a in MMD_BANDWIDTHS)
    p, q = p / p.sum(), q / q.sum()
    return float(p @ kernel @ p + q @ kernel @ q - 2 * p @ kernel @ q)


@pytest.mark.parametrize("metric", TOKEN_METRICS + ("l2", "cosine"))
def test_distance_to_itself_is_zero(metric):
    distances = pairwise_distance(metric, HAND, HAND)
    assert distances.shape == (4, 4) and distances.dtype == np.float64
    np.testing.assert_allclose(np.diag(distances), 0.0, atol=1e-12)
    assert (distances >= 0).all()


def test_hand_computed_values():
    point_0, point_2 = HAND[0:1], HAND[1:2]
    assert pairwise_distance("wd", point_0, point_2)[0, 0] == pytest.approx(2.0)  # move all mass 2 ids
    assert pairwise_distance("js", point_0, point_2)[0, 0] == pytest.approx(math.log(2))  # disjoint
    kappa = lambda d: sum(a * a / (a * a + d * d) for a in MMD_BANDWIDTHS)  # noqa: E731
    assert pairwise_distance("mmd", point_0, point_2)[0, 0] == pytest.approx(2 * kappa(0) - 2 * kappa(2))


def test_wasserstein_matches_scipy_on_weighted_samples():
    histograms = sparse_histograms(6, 40, seed=1)
    distances = pairwise_distance("wd", histograms, histograms)
    ids = np.arange(40)
    for i in range(6):
        for j in range(6):
            expected = wasserstein_distance(ids, ids, histograms[i], histograms[j])
            assert distances[i, j] == pytest.approx(expected, abs=1e-12)


def test_kl_matches_scipy_entropy_and_is_nonnegative():
    histograms = sparse_histograms(5, 30, seed=2)
    epsilon = 1e-3
    distances = pairwise_distance("kl", histograms, histograms, epsilon=epsilon)
    smoothed = smooth_distribution(histograms, epsilon)
    np.testing.assert_allclose(smoothed.sum(axis=1), 1.0)
    expected = np.array([[entropy(p, q) for q in smoothed] for p in smoothed])
    np.testing.assert_allclose(distances, expected, rtol=1e-10, atol=1e-12)
    assert (distances >= 0).all()
    assert not np.allclose(distances, distances.T)  # KL is directed: D[target, member] = KL(target || member)


def test_kl_default_epsilon_keeps_disjoint_supports_finite():
    value = pairwise_distance("kl", HAND[0:1], HAND[1:2])[0, 0]
    assert np.isfinite(value) and value > 10  # ~ ln(1 / 1e-10)


def test_js_matches_scipy_is_symmetric_and_bounded():
    histograms = sparse_histograms(9, 50, seed=3)
    distances = pairwise_distance("js", histograms, histograms)
    expected = np.array([[jensenshannon(p, q) ** 2 for q in histograms] for p in histograms])
    np.testing.assert_allclose(distances, expected, atol=1e-14)
    np.testing.assert_array_equal(distances, distances.T)
    assert (distances <= math.log(2) + 1e-15).all()


@pytest.mark.parametrize("metric", TOKEN_METRICS)
def test_many_vs_many_equals_rows_of_full_matrix(metric, monkeypatch):
    histograms = sparse_histograms(12, 64, seed=4)
    full = pairwise_distance(metric, histograms, histograms)
    monkeypatch.setattr(distances_module, "_BLOCK_ELEMENTS", 300)  # force many small blocks
    monkeypatch.setattr(distances_module, "_JS_TOKENS_PER_SLICE", 7)
    monkeypatch.setattr(distances_module, "_WD_ROWS_PER_BLOCK", 5)
    targets = histograms[[3, 7]] * 5.0  # counts vs frequencies must not matter
    np.testing.assert_allclose(pairwise_distance(metric, targets, histograms), full[[3, 7]], atol=1e-12)
    np.testing.assert_allclose(pairwise_distance(metric, histograms, histograms.copy()), full, atol=1e-12)


def test_mmd_matches_brute_force_kernel():
    histograms = sparse_histograms(5, 37, seed=5)
    distances = pairwise_distance("mmd", histograms, histograms)
    expected = np.array([[brute_force_mmd(p, q) for q in histograms] for p in histograms])
    np.testing.assert_allclose(distances, expected, rtol=1e-9, atol=1e-12)


def test_mmd_custom_bandwidths_and_bad_ones():
    wide = pairwise_distance("mmd", HAND[0:1], HAND[1:2], bandwidths=(5.0,))[0, 0]
    assert wide == pytest.approx(2 - 2 * 25 / 29)
    with pytest.raises(ConfigError, match="mmd_bandwidths"):
        pairwise_distance("mmd", HAND, HAND, bandwidths=())


def test_unknown_metric_lists_choices():
    with pytest.raises(ConfigError, match=r"metric='emd'.*choices: cosine, js, kl, l2, mmd, wd"):
        pairwise_distance("emd", HAND, HAND)


def test_metric_representation_compatibility():
    check_metric_for_representation("js", "tokens")
    check_metric_for_representation("l2", "embedding")
    with pytest.raises(ConfigError, match=r"^metric='kl': not defined for method.representation=embedding"):
        check_metric_for_representation("kl", "embedding")


def test_vector_metrics():
    vectors = np.array([[3.0, 4.0], [0.0, 1.0], [-3.0, -4.0]])
    assert pairwise_distance("l2", vectors[:1], vectors[1:2])[0, 0] == pytest.approx(np.hypot(3, 3))
    np.testing.assert_allclose(
        pairwise_distance("cosine", vectors[:1], vectors)[0], [0.0, 0.2, 2.0], atol=1e-12
    )


def test_token_metrics_reject_bad_histograms():
    with pytest.raises(ValueError, match="non-negative"):
        pairwise_distance("js", -HAND, HAND)
    with pytest.raises(ValueError, match="same tokenizer"):
        pairwise_distance("wd", HAND, HAND[:, :3])
