import numpy as np
import pytest

from lora_lab.config.errors import ConfigError
from lora_lab.meta.coefficients import COEFFICIENT_RULES, compute_coefficients, exclusion_mask, zscore_rows
from lora_lab.meta.distances import pairwise_distance

NAMES = ["a", "b", "c", "d", "e"]


def bank_distances(seed: int = 0) -> np.ndarray:
    """JS distances of 5 related token histograms: a realistic, small-spread (<= ln 2) matrix."""
    rng = np.random.default_rng(seed)
    base = rng.random(200) ** 3
    histograms = np.stack([base + rng.random(200) * k * 0.05 for k in range(1, 6)])
    return pairwise_distance("js", histograms, histograms)


def transform_sharpen(z: np.ndarray) -> np.ndarray:
    return 3.0 * z


@pytest.mark.parametrize("version", ["base", "normalized", "mlp", "uniform", "nearest"])
def test_rows_sum_to_one_and_exclude_the_target(version):
    distances = bank_distances()
    exclude = exclusion_mask(NAMES, NAMES)
    weights = compute_coefficients(version, distances, exclude, transform=transform_sharpen)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.diag(weights), 0.0)
    assert (weights >= 0).all()


def test_exclusion_mask_leave_source_out():
    sources = ["s1", "s1", "s2", None, None]
    mask = exclusion_mask(NAMES, NAMES, sources, sources)
    expected = np.eye(5, dtype=bool)
    expected[0, 1] = expected[1, 0] = True  # siblings of one source; None never matches None
    np.testing.assert_array_equal(mask, expected)
    weights = compute_coefficients("base", bank_distances(), mask)
    assert weights[0, 1] == 0 and weights[1, 0] == 0


def test_new_dataset_against_the_whole_bank_needs_no_mask():
    distances = np.array([[0.3, 0.1, 0.2]])
    weights = compute_coefficients("base", distances)
    assert weights.argmax() == 1 and weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weights, np.exp(-distances) / np.exp(-distances).sum())


def test_normalized_concentrates_more_on_the_nearest_member():
    distances = bank_distances()
    exclude = exclusion_mask(NAMES, NAMES)
    base = compute_coefficients("base", distances, exclude)
    normalized = compute_coefficients("normalized", distances, exclude)
    nearest = compute_coefficients("nearest", distances, exclude).argmax(axis=1)
    rows = np.arange(5)
    assert (normalized[rows, nearest] > base[rows, nearest]).all()
    assert (normalized.argmax(axis=1) == nearest).all()


def test_zscore_ignores_excluded_entries():
    distances = np.array([[100.0, 1.0, 2.0, 3.0]])
    allowed = np.array([[False, True, True, True]])
    z = zscore_rows(distances, allowed)
    np.testing.assert_allclose(z[0, 1:], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    assert z[0, 0] == 0.0
    flat = zscore_rows(np.ones((1, 3)), np.ones((1, 3), dtype=bool))  # no preference -> uniform
    np.testing.assert_array_equal(flat, 0.0)


def test_nearest_and_uniform_baselines():
    distances = np.array([[0.0, 0.5, 0.2, 0.9]])
    exclude = np.array([[True, False, False, False]])
    np.testing.assert_array_equal(compute_coefficients("nearest", distances, exclude), [[0, 0, 1, 0]])
    np.testing.assert_allclose(
        compute_coefficients("uniform", distances, exclude), [[0, 1 / 3, 1 / 3, 1 / 3]]
    )


def test_lower_temperature_is_sharper():
    distances = bank_distances()
    exclude = exclusion_mask(NAMES, NAMES)
    warm = compute_coefficients("normalized", distances, exclude, temperature=1.0)
    cold = compute_coefficients("normalized", distances, exclude, temperature=0.1)
    assert (cold.max(axis=1) > warm.max(axis=1)).all()


def test_bad_inputs_are_named():
    distances = bank_distances()
    with pytest.raises(ConfigError, match="choices: base, mlp, nearest, normalized, soup, uniform"):
        compute_coefficients("softmax", distances)
    with pytest.raises(ConfigError, match="needs a trained transform"):
        compute_coefficients("mlp", distances)
    with pytest.raises(ConfigError, match="temperature"):
        compute_coefficients("base", distances, temperature=0.0)
    with pytest.raises(ValueError, match="exclude every bank member"):
        compute_coefficients("base", distances[:1, :1], np.array([[True]]))
    assert set(COEFFICIENT_RULES.names()) >= {"base", "normalized", "mlp"}
