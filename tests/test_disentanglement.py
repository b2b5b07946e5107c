"""Metric sanity (spec E.1): perfect codes score ~1, constant codes 0, mixed codes in between."""
import itertools
import json

import numpy as np
import pytest

from tfmusic.evaluation import disentanglement as D


@pytest.fixture(scope="module")
def grid_factors():
    """A full factorial grid (so factors are exactly independent), 10 copies, shuffled."""
    grid = np.array(list(itertools.product(range(4), range(3), range(2))))
    f = np.repeat(grid, 10, axis=0)
    return f[np.random.default_rng(0).permutation(len(f))]


@pytest.fixture(scope="module")
def binary_factors():
    grid = np.array(list(itertools.product(range(2), range(2), range(2))))
    f = np.repeat(grid, 40, axis=0)
    return f[np.random.default_rng(1).permutation(len(f))]


@pytest.fixture(scope="module")
def attributes():
    return np.random.default_rng(2).uniform(size=(400, 3))


def test_discretize_uses_histogram_edges():
    x = np.array([[0.0], [0.5], [1.0], [0.26]])
    np.testing.assert_array_equal(D.discretize_codes(x, 4)[:, 0], [1, 3, 4, 2])
    # a constant dimension falls into one bin (numpy centres the range on the value)
    assert np.unique(D.discretize_codes(np.zeros((5, 1)), 20)).size == 1


def test_mutual_info_matches_sklearn():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(7)
    x = rng.integers(0, 6, 500)
    y = (x + rng.integers(0, 3, 500)) % 7 + 10
    assert D.mutual_info_nats(x, y) == pytest.approx(mutual_info_score(x, y), rel=1e-12)
    assert D.mutual_info_nats(x, x) == pytest.approx(mutual_info_score(x, x), rel=1e-12)
    assert D.mutual_info_nats(x, np.zeros(500)) == 0.0


def test_modularity_formula():
    assert D.modularity(np.array([[1.0, 0.0], [0.0, 2.0]])) == pytest.approx(1.0)
    # one code with equal MI to both factors: 1 - (2 - 1) / (1 * 1) = 0; an all-zero code: 0
    assert D.modularity(np.array([[1.0, 1.0], [0.0, 0.0]])) == pytest.approx(0.0)
    # 1 - (0.25 + 1 + 0.25 - 1) / (1 * 2) = 0.75
    assert D.modularity(np.array([[0.5, 1.0, 0.5]])) == pytest.approx(0.75)


def test_discrete_permuted_identity_code(grid_factors):
    codes = grid_factors[:, [2, 0, 1]].astype(float)
    mig = D.mig_discrete(codes, grid_factors)
    assert mig["mig"] == pytest.approx(1.0, abs=1e-9)
    assert mig["mig_per_factor"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-9)
    assert D.modularity_discrete(codes, grid_factors, train_fraction=1.0) == pytest.approx(1.0, abs=1e-9)
    # with a little noise the 20-bin codes leak a trace of MI into other factors: still ~1
    noisy = codes + 0.01 * np.random.default_rng(3).standard_normal(codes.shape)
    assert D.mig_discrete(noisy, grid_factors)["mig"] == pytest.approx(1.0, abs=0.02)
    assert D.modularity_discrete(noisy, grid_factors) == pytest.approx(1.0, abs=0.02)


def test_discrete_sap_perfect_code_is_one_minus_chance(binary_factors):
    rng = np.random.default_rng(4)
    # centred, roughly unit-scale codes, as a VAE's are
    codes = 2.0 * binary_factors[:, [1, 2, 0]] - 1.0 + 0.01 * rng.standard_normal(binary_factors.shape)
    res = D.sap_discrete(codes, binary_factors)
    scores = np.array(res["sap_scores"])
    # each factor is read perfectly off its own code dimension
    assert [scores[2, 0], scores[0, 1], scores[1, 2]] == pytest.approx([1.0, 1.0, 1.0])
    # the gap is 1 minus the best accuracy an unrelated dimension reaches (about chance, 0.5)
    off = [np.max(np.delete(scores[:, j], i)) for j, i in enumerate([2, 0, 1])]
    assert res["sap_per_factor"] == pytest.approx([1 - o for o in off])
    assert 0.35 < res["sap"] < 0.65


def test_constant_code_scores_zero(grid_factors, attributes):
    disc = D.evaluate_all(np.zeros((len(grid_factors), 3)), grid_factors, "discrete")
    assert disc["mig"] == 0.0 and disc["modularity"] == 0.0 and disc["sap"] == 0.0
    cont = D.evaluate_all(np.full((len(attributes), 3), 2.5), attributes, "continuous")
    for key in ("interpretability", "mig", "modularity", "sap", "scc"):
        assert cont[key] == pytest.approx(0.0, abs=1e-9), key


def test_continuous_permuted_identity_code(attributes):
    codes = attributes[:, [1, 2, 0]]
    res = D.evaluate_all(codes, attributes, "continuous", factor_names=["a", "b", "c"])
    assert res["interpretability"] == pytest.approx(1.0)
    assert res["interpretability_dims"] == [2, 0, 1]
    assert res["mig"] > 0.95
    assert res["modularity"] > 0.95
    assert res["sap"] == pytest.approx(1.0, abs=0.02)
    assert res["scc"] == pytest.approx(1.0)
    json.dumps(res)
    # evaluate_all shares one MI matrix; the stand-alone functions give the same numbers
    assert res["mig"] == D.mig_continuous(codes, attributes)["mig"]
    assert res["interpretability"] == D.interpretability(codes, attributes)["interpretability"]
    assert res["modularity"] == D.modularity(D.continuous_mutual_info(codes, attributes))


def test_mixed_code_is_strictly_between(grid_factors, attributes):
    rng = np.random.default_rng(5)
    f = grid_factors
    mixed = np.stack([f[:, 0] + f[:, 1], f[:, 1] + f[:, 2], rng.standard_normal(len(f))], axis=1)
    ident = f + 0.01 * rng.standard_normal(f.shape)
    d_mixed = D.evaluate_all(mixed, f, "discrete")
    d_ident = D.evaluate_all(ident, f, "discrete")
    for key in ("mig", "modularity", "sap"):
        assert 0.0 < d_mixed[key] < d_ident[key], key
    a = attributes
    c_mixed = D.evaluate_all(np.stack([a[:, 0] + a[:, 1], a[:, 1], rng.uniform(size=len(a))], 1), a, "continuous")
    for key in ("interpretability", "mig", "modularity", "sap", "scc"):
        assert 0.0 < c_mixed[key] < 0.95, key


def test_evaluate_all_is_json_and_checks_input(grid_factors):
    res = D.evaluate_all(grid_factors.astype(float), grid_factors, "discrete")
    assert set(res) >= {"mig", "mig_per_factor", "modularity", "sap", "sap_per_factor", "sap_scores"}
    json.dumps(res)
    with pytest.raises(ValueError, match="rows"):
        D.evaluate_all(np.zeros((5, 2)), np.zeros((6, 2), int))
    with pytest.raises(ValueError, match="integer factor"):
        D.evaluate_all(np.zeros((5, 2)), np.full((5, 2), 0.5), "discrete")
    with pytest.raises(ValueError, match="kind"):
        D.evaluate_all(np.zeros((5, 2)), np.zeros((5, 2), int), "other")


def test_reconstruction_accuracy():
    targets = np.array([[1, 2, 3, 4]])
    logits = np.eye(5)[[[1, 2, 0, 4]]]
    assert D.token_accuracy(targets, logits) == 0.75
    assert D.token_accuracy(targets, np.array([[1, 2, 3, 4]])) == 1.0
    assert D.pixel_accuracy(np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.1, 0.9, 0.4, 0.2])) == 0.75
    with pytest.raises(ValueError, match="match"):
        D.token_accuracy(targets, np.zeros((1, 3)))
