import numpy as np
import pytest
import torch

from lora_lab.config.errors import DataError
from lora_lab.meta.bank import load_bank
from lora_lab.meta.coefficients import compute_coefficients
from lora_lab.meta.gram import bank_gram_matrix, reconstruction_error
from lora_lab.meta.mlp import LearnedTransform, train_mlp_transform
from tests.helpers.meta_adapters import adapter_config, random_factors, write_member


def flattened(tensors: dict[str, torch.Tensor]) -> np.ndarray:
    return torch.cat([t.float().reshape(-1) for _, t in sorted(tensors.items())]).double().numpy()


@pytest.mark.parametrize("max_bytes", [1 << 30, 200])  # one block / many blocks
def test_gram_matrix_equals_flattened_inner_products(make_bank, max_bytes):
    root, tensors = make_bank(5, dtype=torch.bfloat16)
    bank = load_bank(root)
    theta = np.stack([flattened(t) for t in tensors])
    np.testing.assert_allclose(
        bank_gram_matrix(bank.adapter_dirs, max_bytes=max_bytes), theta @ theta.T, rtol=1e-5
    )


def test_reconstruction_error_matches_explicit_norms():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(6, 20))
    gram = theta @ theta.T
    weights = rng.random((2, 6))
    weights /= weights.sum(axis=1, keepdims=True)
    targets = [1, 4]
    explicit = [np.sum((weights[k] @ theta - theta[t]) ** 2) for k, t in enumerate(targets)]
    np.testing.assert_allclose(reconstruction_error(weights, gram, targets, relative=False), explicit)
    np.testing.assert_allclose(
        reconstruction_error(weights, gram, targets), np.array(explicit) / np.sum(theta[targets] ** 2, axis=1)
    )


def clustered_bank(n: int = 40, clusters: int = 4, seed: int = 0):
    """Adapters = cluster centre + noise; distances small within a cluster, with noise: the raw z-scores
    are informative but softmin(z) at T=1 is too flat, so a learned transform has something to gain."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % clusters
    centres = rng.normal(size=(clusters, 50))
    theta = centres[labels] + 0.3 * rng.normal(size=(n, 50))
    distances = (labels[:, None] != labels[None, :]).astype(float) + 0.3 * rng.random((n, n))
    return theta @ theta.T, distances


def test_mlp_lowers_the_gram_objective_and_generalises():
    gram, distances = clustered_bank()
    exclude = np.eye(40, dtype=bool)
    train, held_out = np.arange(0, 30), np.arange(30, 40)
    fit = train_mlp_transform(distances, gram, train, steps=200, learning_rate=0.05)
    assert fit.train_indices == train.tolist()
    assert fit.loss_after < 0.8 * fit.loss_before
    assert fit.history[0] == pytest.approx(fit.loss_before)

    def held_out_error(version, transform=None):
        weights = compute_coefficients(version, distances[held_out], exclude[held_out], transform=transform)
        return reconstruction_error(weights, gram, held_out).mean()

    assert held_out_error("mlp", fit.transform) < held_out_error("normalized")


def test_mlp_training_reads_only_training_tasks():
    gram, distances = clustered_bank()
    train = np.arange(0, 30)
    fit = train_mlp_transform(distances, gram, train, steps=20)
    tampered_gram, tampered_distances = gram.copy(), distances.copy()
    tampered_gram[30:, :] = tampered_gram[:, 30:] = 1e6
    tampered_distances[30:, :] = tampered_distances[:, 30:] = -7.0
    again = train_mlp_transform(tampered_distances, tampered_gram, train, steps=20)
    assert again.history == fit.history
    z = np.linspace(-3, 3, 7)
    np.testing.assert_array_equal(again.transform(z), fit.transform(z))


def test_mlp_is_seeded_and_round_trips():
    gram, distances = clustered_bank()
    first = train_mlp_transform(distances, gram, range(30), steps=10, seed=3)
    second = train_mlp_transform(distances, gram, range(30), steps=10, seed=3)
    assert first.history == second.history
    restored = LearnedTransform.from_state_dict(first.transform.state_dict())
    z = np.linspace(-2, 2, 5)
    np.testing.assert_array_equal(restored(z), first.transform(z))


def test_gram_rejects_a_member_with_another_layout(make_bank, tmp_path):
    root, _ = make_bank(3)
    bank = load_bank(root)
    odd = write_member(
        tmp_path / "odd", {k: v.to(torch.bfloat16) for k, v in random_factors(7).items()}, adapter_config()
    )
    with pytest.raises(DataError, match="tensor layout differs"):
        bank_gram_matrix([*bank.adapter_dirs, odd])


def test_learned_transform_is_increasing_so_nearer_never_weighs_less():
    gram, distances = clustered_bank()
    fit = train_mlp_transform(distances, gram, range(30), steps=100, learning_rate=0.1)
    z = np.linspace(-4, 4, 401)
    assert (np.diff(fit.transform(z)) > 0).all()
    weights = compute_coefficients("mlp", distances, np.eye(40, dtype=bool), transform=fit.transform)
    for row, weight_row in zip(distances, weights, strict=True):
        allowed = weight_row > 0
        order = np.argsort(row[allowed])
        assert (np.diff(weight_row[allowed][order]) <= 1e-12).all()
