"""VAE loss terms: AR-VAE regularization (spec E.1), KL, schedules (C.8), Factor-VAE pieces."""

import math

import numpy as np
import pytest

from tfmusic.models.vae import objectives as obj
from tfmusic.models.vae.presets import build_objective


def test_ar_loss_spec_values_delta_10():
    z = np.array([0.0, 1.0])
    assert float(obj.attribute_regularization(z, np.array([0.0, 1.0]), 10.0)) == pytest.approx(2.06e-9, rel=1e-3)
    assert float(obj.attribute_regularization(z, np.array([1.0, 0.0]), 10.0)) == pytest.approx(0.99999999794,
                                                                                                abs=1e-11)


def test_ar_loss_spec_value_delta_1_includes_diagonal():
    z, a = np.array([0.0, 0.1, 0.5]), np.array([1.0, 2.0, 3.0])
    value = float(obj.attribute_regularization(z, a, 1.0))
    assert value == pytest.approx(0.457392, abs=1e-6)
    # the mean is over all m^2 = 9 entries (off-diagonal only would give 9/6 times more)
    off_diag = sum(abs(math.tanh(z[i] - z[j]) - np.sign(a[i] - a[j])) for i in range(3) for j in range(3) if i != j)
    assert value == pytest.approx(off_diag / 9, rel=1e-9)


def test_ar_term_uses_chosen_dims_columns_and_scales():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(8, 5)).astype("float32")
    attrs = rng.uniform(size=(8, 3)).astype("float32")
    term = obj.ARTerm(dims=[3, 1], columns=[2, 0], gamma=2.0, delta=10.0, scales=[1.0, 2.0], names=["a", "b"])
    loss, logs = term(z, attrs)
    want = 2.0 * (float(obj.attribute_regularization(z[:, 3], attrs[:, 2], 10.0))
                  + float(obj.attribute_regularization(z[:, 1], attrs[:, 0] / 2.0, 10.0)))
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert set(logs) == {"reg_a", "reg_b", "reg_term"}
    with pytest.raises(ValueError, match="columns"):
        term(z, attrs[:, :2])


def test_kl_matches_closed_form():
    mean = np.array([[0.0, 1.0], [2.0, -1.0]], "float32")
    log_std = np.array([[0.0, np.log(2.0)], [0.0, 0.0]], "float32")
    per = np.asarray(obj.kl_per_dim(mean, log_std))
    sigma = np.exp(log_std)
    want = 0.5 * (mean ** 2 + sigma ** 2 - 1) - log_std
    np.testing.assert_allclose(per, want, rtol=1e-6)
    assert float(obj.kl_divergence(mean, log_std)) == pytest.approx(want.sum(-1).mean(), rel=1e-6)
    assert float(obj.kl_divergence(np.zeros((3, 4), "float32"), np.zeros((3, 4), "float32"))) == 0.0


def test_beta_warmup_schedule_values():
    spe = 10  # steps per epoch
    ramp = obj.ExponentialRamp(target=4.0, steps_per_epoch=spe, zero_through_epoch=10, iterations=1e5)
    start = 11 * spe  # epochs 0..10 are zero
    assert float(ramp(0)) == 0.0
    assert float(ramp(start - 1)) == 0.0
    assert float(ramp(start)) == 0.0
    assert float(ramp(start + 50_000)) == pytest.approx(math.sqrt(5.0) - 1.0, rel=1e-5)
    assert float(ramp(start + 1)) == pytest.approx(math.exp(math.log(5.0) / 1e5) - 1.0, rel=1e-3)
    assert float(ramp(start + 100_000)) == pytest.approx(4.0, rel=1e-5)
    assert float(ramp(start + 300_000)) == pytest.approx(4.0, rel=1e-5)  # held at its last value


def test_annealed_capacity_and_beta_gate():
    term = obj.KLTerm(obj.StepGate(1.0, steps_per_epoch=5, zero_through_epoch=10),
                      obj.ExponentialRamp(50.0, steps_per_epoch=5, zero_through_epoch=10, iterations=100), "abs")
    mean = np.ones((2, 3), "float32")
    log_std = np.zeros((2, 3), "float32")  # KL = 1.5
    loss, logs = term(mean, log_std, 54)
    assert float(loss) == 0.0 and float(logs["capacity"]) == 0.0
    loss, logs = term(mean, log_std, 55 + 50)
    c = math.exp(50 * math.log(51.0) / 100) - 1.0
    assert float(logs["capacity"]) == pytest.approx(c, rel=1e-5)
    assert float(loss) == pytest.approx(abs(1.5 - c), rel=1e-5)
    loss, logs = term(mean, log_std, 10_000)
    assert float(logs["capacity"]) == pytest.approx(50.0, rel=1e-5)


def test_beta_hinge_is_relu():
    term = obj.KLTerm(1.0, 50.0, "hinge")
    mean = np.full((2, 4), 3.0, "float32")  # KL per example = 4 * 4.5 = 18 < 50
    assert float(term(mean, np.zeros_like(mean), 0)[0]) == 0.0
    big = np.full((2, 4), 6.0, "float32")  # KL = 72 -> 22
    assert float(term(big, np.zeros_like(big), 0)[0]) == pytest.approx(22.0, rel=1e-5)
    with pytest.raises(ValueError, match="hinge"):
        obj.KLTerm(1.0, 0.0, "square")


def test_permute_dims_permutes_each_dim_independently():
    z = np.arange(40, dtype="float32").reshape(20, 2) * np.array([1.0, 100.0], "float32")
    p = np.asarray(obj.permute_dims(z, seed=3))
    for d in range(2):
        assert sorted(p[:, d].tolist()) == sorted(z[:, d].tolist())
    assert not np.array_equal(p, z)


def test_factor_discriminator_and_losses():
    disc = obj.FactorDiscriminator()
    z = np.random.default_rng(0).normal(size=(6, 32)).astype("float32")
    assert tuple(disc(z).shape) == (6, 2)
    term = obj.FactorTerm(disc, gamma=10.0)
    tc, logs = term(z)
    logits = np.asarray(disc(z))
    assert float(tc) == pytest.approx(10.0 * np.mean(logits[:, 0] - logits[:, 1]), rel=1e-5)
    d_loss, _ = term.discriminator_loss(z, z, seed=0)
    assert np.isfinite(float(d_loss)) and float(d_loss) > 0


def test_bernoulli_reconstruction_sums_and_divides_by_batch():
    logits = np.array([[0.0, 2.0], [-1.0, 0.5]], "float32").reshape(2, 2, 1, 1)
    images = np.array([[1.0, 0.0], [0.0, 1.0]], "float32").reshape(2, 2, 1, 1)
    p = 1 / (1 + np.exp(-logits))
    bce = -(images * np.log(p) + (1 - images) * np.log(1 - p))
    assert float(obj.bernoulli_reconstruction(logits, images)) == pytest.approx(bce.sum() / 2, rel=1e-5)


@pytest.mark.parametrize("objective", ["beta", "annealed", "factor", "ar"])
def test_presets_follow_spec(objective):
    o = build_objective(objective, "dmelodies-rnn", steps_per_epoch=1853)
    cfg = o.to_config()
    if objective == "beta":
        assert cfg["kl"]["mode"] == "hinge" and cfg["kl"]["capacity"]["value"] == 50.0
        assert cfg["kl"]["beta"]["kind"] == "exponential_ramp"
    if objective == "annealed":
        assert cfg["kl"]["capacity"]["kind"] == "exponential_ramp" and cfg["kl"]["capacity"]["target"] == 50.0
    if objective == "factor":
        assert o.factor is not None and cfg["kl"]["beta"]["value"] == 1.0
    if objective == "ar":
        assert o.ar.dims == list(range(9)) and o.ar.delta == 10.0 and o.ar.scales[0] == 11.0
    m = build_objective(objective, "measure", steps_per_epoch=10)
    if objective == "ar":
        assert m.ar.dims == [0, 1, 2, 3] and m.ar.gamma == 1.0 and m.ar.delta == 10.0
        assert m.kl.to_config()["beta"]["value"] == 0.001 and m.kl.mode == "abs"
    if objective == "beta":
        assert m.kl.to_config()["beta"]["value"] == 0.001 and m.kl.mode == "abs"
