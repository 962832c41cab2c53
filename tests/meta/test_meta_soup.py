"""AdapterSoup: the uniform average of the k nearest members, with k chosen on the bank and never on the target."""

from __future__ import annotations

import numpy as np
import pytest

from lora_lab.config.errors import ConfigError
from lora_lab.meta.coefficients import compute_coefficients, exclusion_mask
from lora_lab.meta.gram import reconstruction_error
from lora_lab.meta.soup import choose_soup_k, soup_errors

NAMES = [f"t{i}" for i in range(9)]


def clustered_bank(seed: int = 0, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(distances, gram) of 9 members in 3 families of 3: siblings share a direction, so a member is best rebuilt
    from its two siblings (k = 2) and a third neighbour from another family only adds error."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 40))
    theta = np.repeat(centres, 3, axis=0) + noise * rng.normal(size=(9, 40))
    gram = theta @ theta.T
    distances = np.linalg.norm(theta[:, None] - theta[None], axis=-1) + rng.uniform(0, 1e-3, (9, 9))
    return distances, gram


def test_soup_is_uniform_over_exactly_the_k_nearest_allowed_members():
    distances = np.array([[0.0, 0.3, 0.1, 0.9, 0.2, 0.5]])  # the target itself is member 0, at distance 0
    exclude = exclusion_mask(["a"], list("abcdef"))
    weights = compute_coefficients("soup", distances, exclude, soup_k=3)[0]
    np.testing.assert_array_equal(weights, [0, 1 / 3, 1 / 3, 0, 1 / 3, 0])  # c (0.1), e (0.2), b (0.3)
    assert weights[0] == 0  # the target is never in its own soup, though it is the closest
    capped = compute_coefficients("soup", distances, exclude, soup_k=50)[0]
    np.testing.assert_array_equal(capped, [0, 0.2, 0.2, 0.2, 0.2, 0.2])  # k beyond the allowed: all of them
    tied = compute_coefficients("soup", np.array([[0.0, 0.5, 0.5, 0.5]]), exclusion_mask(["a"], list("abcd")),
                                soup_k=2)[0]
    np.testing.assert_array_equal(tied, [0, 0.5, 0.5, 0])  # ties: the lower index


def test_soup_without_k_names_the_key():
    with pytest.raises(ConfigError, match="method.soup_k"):
        compute_coefficients("soup", np.ones((1, 3)))


def test_soup_errors_equal_the_gram_reconstruction_error_of_the_explicit_soup():
    distances, gram = clustered_bank()
    neighbours = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    errors = soup_errors(distances, gram, 0, neighbours, [1, 2, 3, 5, 8])
    order = neighbours[np.argsort(distances[0, neighbours], kind="stable")]
    for k, error in zip([1, 2, 3, 5, 8], errors, strict=True):
        row = np.zeros((1, 9))
        row[0, order[:k]] = 1 / k
        assert error == pytest.approx(reconstruction_error(row, gram, [0])[0], rel=1e-9, abs=1e-12)


def test_the_bank_chooses_the_k_that_rebuilds_its_members_best():
    distances, gram = clustered_bank()
    choice = choose_soup_k(distances, gram, range(9), exclusion_mask(NAMES, NAMES))
    assert choice.k == 2 and choice.candidates == list(range(1, 9)) and choice.pseudo_targets == 9
    assert choice.errors[1] == min(choice.errors)
    # leave-source-out: the siblings are excluded for every pseudo-target, so no k rebuilds anything - every soup
    # is farther from the member than the zero adapter (relative error 1) - and k is chosen among bad options
    sources = [f"s{i // 3}" for i in range(9)]
    lso = choose_soup_k(distances, gram, range(9), exclusion_mask(NAMES, NAMES, sources, sources))
    assert lso.candidates == list(range(1, 9)) and min(lso.errors) > 1


def test_k_is_chosen_without_the_target_and_deterministically():
    distances, gram = clustered_bank()
    target = 4
    pool = [i for i in range(9) if i != target]
    exclude = exclusion_mask(NAMES, NAMES)
    chosen = choose_soup_k(distances, gram, pool, exclude)
    assert choose_soup_k(distances, gram, pool, exclude) == chosen  # no sampling
    tampered_d, tampered_g = distances.copy(), gram.copy()
    rng = np.random.default_rng(1)
    tampered_d[target, :] = tampered_d[:, target] = rng.uniform(0, 1e-6, 9)  # the target now looks closest to all
    tampered_g[target, :] = tampered_g[:, target] = rng.normal(size=9) * 1e3
    assert choose_soup_k(tampered_d, tampered_g, pool, exclude) == chosen


def test_candidates_restrict_k_and_ties_go_to_the_smaller_k():
    distances, gram = clustered_bank()
    exclude = exclusion_mask(NAMES, NAMES)
    assert choose_soup_k(distances, gram, range(9), exclude, candidates=[3, 5, 1]).candidates == [1, 3, 5]
    flat = np.zeros((9, 9))  # every member the same: every k rebuilds it exactly
    same = np.ones((9, 9))
    assert choose_soup_k(flat, same, range(9), exclude).k == 1
    alone = choose_soup_k(distances, gram, [3], exclude)  # nothing to learn from: the smallest soup
    assert (alone.k, alone.pseudo_targets) == (1, 0)
