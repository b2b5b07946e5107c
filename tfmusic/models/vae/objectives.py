"""Composable VAE loss terms: reconstruction, KL (beta hinge / capacity annealing), AR-VAE attribute
regularization and the Factor-VAE total-correlation term with its permutation discriminator.

Every term is a small object with ``__call__(...) -> (loss, logs)``; an ``Objective`` sums them. The
schedules follow reference-spec C.8 exactly and the attribute loss B.1 exactly. keras.ops only, so the
terms run inside any backend's traced step; schedules also accept plain Python/numpy steps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import keras
from keras import ops

from tfmusic.models.vae.core import PACKAGE, TracedBuild


# --------------------------------------------------------------------------------------------- KL, recon
def kl_per_dim(mean, log_std):
    """KL(N(mean, exp(log_std)^2) || N(0, 1)) per example and latent dim, shape ``(B, D)``."""
    return 0.5 * (ops.square(mean) + ops.exp(2.0 * log_std) - 1.0) - log_std


def kl_divergence(mean, log_std):
    """KL summed over latent dims and averaged over the batch (the references' convention)."""
    return ops.mean(ops.sum(kl_per_dim(mean, log_std), axis=-1))


def token_cross_entropy(logits, targets):
    """Mean token cross-entropy over batch and positions."""
    return ops.mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))


def token_accuracy(logits, targets):
    """Token argmax accuracy over all positions (B.3 / C.9)."""
    pred = ops.cast(ops.argmax(logits, axis=-1), "int32")
    return ops.mean(ops.cast(ops.equal(pred, ops.cast(targets, "int32")), "float32"))


def bernoulli_reconstruction(logits, images):
    """Binary cross-entropy with logits summed over pixels and divided by the batch (B.2, images)."""
    per_pixel = ops.maximum(logits, 0.0) - logits * images + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.sum(per_pixel) / ops.cast(ops.shape(logits)[0], logits.dtype)


def pixel_accuracy(logits, images):
    """Fraction of pixels whose thresholded reconstruction equals the thresholded input."""
    return ops.mean(ops.cast(ops.equal(logits > 0.0, images > 0.5), "float32"))


# --------------------------------------------------------------------------------------------- schedules
@dataclass
class ExponentialRamp:
    """``0`` through epoch ``zero_through_epoch`` (inclusive), then ``exp(k ln(1+target)/iterations) - 1``
    over iterations ``k = 0..iterations`` counted from the next epoch, then held at ``target`` (C.8).

    ``zero_through_epoch=-1`` starts the ramp at step 0; ``iterations=0`` jumps straight to ``target``.
    """

    target: float
    steps_per_epoch: int
    zero_through_epoch: int = 10
    iterations: float = 1e5

    def start_step(self) -> int:
        return (self.zero_through_epoch + 1) * self.steps_per_epoch

    def __call__(self, step):
        step = ops.cast(step, "float32")
        k = step - float(self.start_step())
        if self.iterations <= 0:
            frac = ops.cast(k >= 0, "float32")
            return frac * self.target
        k_clipped = ops.clip(k, 0.0, float(self.iterations))
        value = ops.exp(k_clipped * (math.log1p(self.target) / float(self.iterations))) - 1.0
        return ops.where(k < 0, ops.zeros_like(value), value)

    def to_config(self) -> dict:
        return {"kind": "exponential_ramp", **asdict(self)}


@dataclass
class Constant:
    """A schedule that is always ``value``."""

    value: float

    def __call__(self, step):
        return ops.cast(self.value, "float32") + 0.0 * ops.cast(step, "float32")

    def to_config(self) -> dict:
        return {"kind": "constant", **asdict(self)}


def schedule_from_config(config: dict | float | int) -> "ExponentialRamp | Constant":
    if isinstance(config, (int, float)):
        return Constant(float(config))
    config = dict(config)
    kind = config.pop("kind")
    if kind == "constant":
        return Constant(**config)
    if kind == "exponential_ramp":
        return ExponentialRamp(**config)
    if kind == "step_gate":
        return StepGate(**config)
    raise ValueError(f"unknown schedule kind {kind!r}")


class StepGate:
    """0 through epoch ``zero_through_epoch``, then ``value`` (Annealed-VAE's beta warm-up, C.8)."""

    def __init__(self, value: float, steps_per_epoch: int, zero_through_epoch: int = 10) -> None:
        self.value, self.steps_per_epoch, self.zero_through_epoch = float(value), int(steps_per_epoch), int(zero_through_epoch)

    def __call__(self, step):
        on = ops.cast(ops.cast(step, "float32") >= float((self.zero_through_epoch + 1) * self.steps_per_epoch), "float32")
        return on * self.value

    def to_config(self) -> dict:
        return {"kind": "step_gate", "value": self.value, "steps_per_epoch": self.steps_per_epoch,
                "zero_through_epoch": self.zero_through_epoch}


# --------------------------------------------------------------------------------------------- KL term
class KLTerm:
    """``mode='hinge'``: ReLU(beta_t * KL - C_t) (beta-VAE of C.8);
    ``mode='abs'``: beta_t * |KL - C_t| (Annealed-VAE, Factor-VAE, AR-VAE with C = 0)."""

    def __init__(self, beta, capacity=0.0, mode: str = "abs") -> None:
        if mode not in ("hinge", "abs"):
            raise ValueError(f"KL mode must be 'hinge' or 'abs', got {mode!r}")
        self.beta = beta if callable(beta) else Constant(float(beta))
        self.capacity = capacity if callable(capacity) else Constant(float(capacity))
        self.mode = mode

    def __call__(self, mean, log_std, step):
        per_dim = kl_per_dim(mean, log_std)
        kl = ops.mean(ops.sum(per_dim, axis=-1))
        beta, cap = self.beta(step), self.capacity(step)
        if self.mode == "hinge":
            loss = ops.relu(beta * kl - cap)
        else:
            loss = beta * ops.abs(kl - cap)
        return loss, {"kl": kl, "kl_term": loss, "beta": beta, "capacity": cap,
                      "kl_per_dim": ops.mean(per_dim, axis=0)}

    def to_config(self) -> dict:
        return {"mode": self.mode, "beta": self.beta.to_config(), "capacity": self.capacity.to_config()}


# --------------------------------------------------------------------------------------------- AR-VAE
def attribute_regularization(z_dim_values, attribute, delta: float):
    """AR-VAE loss for one attribute (B.1): mean over all m^2 pairs (diagonal included) of
    ``|tanh(delta * (z_i - z_j)) - sign(a_i - a_j)|`` on the SAMPLED code of the regularized dim."""
    z = ops.reshape(z_dim_values, (-1,))
    a = ops.cast(ops.reshape(attribute, (-1,)), z.dtype)
    d_r = ops.expand_dims(z, 1) - ops.expand_dims(z, 0)
    d_a = ops.expand_dims(a, 1) - ops.expand_dims(a, 0)
    return ops.mean(ops.abs(ops.tanh(delta * d_r) - ops.sign(d_a)))


class ARTerm:
    """gamma * sum over regularized attributes l of L_reg(z[:, dims[l]], a[:, columns[l]] / scale_l).

    ``columns`` defaults to ``0..len(dims)-1`` (attribute l on its own index, B.1)."""

    def __init__(self, dims: Sequence[int], gamma: float = 1.0, delta: float = 10.0,
                 scales: Sequence[float] | None = None, names: Sequence[str] | None = None,
                 columns: Sequence[int] | None = None) -> None:
        self.dims = [int(d) for d in dims]
        self.columns = [int(c) for c in columns] if columns is not None else list(range(len(self.dims)))
        self.gamma, self.delta = float(gamma), float(delta)
        self.scales = [float(s) for s in scales] if scales is not None else [1.0] * len(self.dims)
        self.names = list(names) if names is not None else [f"attr_{i}" for i in range(len(self.dims))]
        if not (len(self.scales) == len(self.names) == len(self.dims) == len(self.columns)):
            raise ValueError("ARTerm: dims, columns, scales and names must have the same length")

    def __call__(self, z, attributes):
        if attributes.shape[-1] is not None and attributes.shape[-1] <= max(self.columns):
            raise ValueError(f"ARTerm reads attribute columns {self.columns} but the batch has "
                             f"{attributes.shape[-1]} columns")
        logs: dict[str, Any] = {}
        total = 0.0
        for dim, col, scale, name in zip(self.dims, self.columns, self.scales, self.names):
            reg = attribute_regularization(z[:, dim], ops.cast(attributes[:, col], z.dtype) / scale, self.delta)
            logs[f"reg_{name}"] = reg
            total = total + reg
        loss = self.gamma * total
        logs["reg_term"] = loss
        return loss, logs

    def to_config(self) -> dict:
        return {"dims": self.dims, "columns": self.columns, "gamma": self.gamma, "delta": self.delta,
                "scales": self.scales, "names": self.names}


# --------------------------------------------------------------------------------------------- Factor-VAE
@keras.saving.register_keras_serializable(package=PACKAGE)
class FactorDiscriminator(TracedBuild, keras.layers.Layer):
    """MLP z -> 64 -> 64 -> 64 -> 2 with LeakyReLU(0.2) (C.8). Logit 0 = "joint", 1 = "permuted"."""

    def __init__(self, hidden: int = 64, num_layers: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden, self.num_layers = int(hidden), int(num_layers)
        self.layers_ = []
        for i in range(self.num_layers):
            self.layers_ += [keras.layers.Dense(self.hidden, name=f"fc_{i}"), keras.layers.LeakyReLU(0.2)]
        self.layers_.append(keras.layers.Dense(2, name="out"))

    def call(self, z):
        for layer in self.layers_:
            z = layer(z)
        return z

    def get_config(self) -> dict:
        return {**super().get_config(), "hidden": self.hidden, "num_layers": self.num_layers}


def permute_dims(z, seed=None):
    """Shuffle each latent dim independently across the batch (samples from the product of marginals)."""
    noise = keras.random.uniform(ops.shape(z), seed=seed)
    order = ops.argsort(noise, axis=0)
    return ops.take_along_axis(z, order, axis=0)


class FactorTerm:
    """gamma * mean(D(z)[:, 0] - D(z)[:, 1]), the density-ratio estimate of total correlation."""

    def __init__(self, discriminator: FactorDiscriminator, gamma: float = 10.0) -> None:
        self.discriminator, self.gamma = discriminator, float(gamma)

    def __call__(self, z):
        logits = self.discriminator(z)
        tc = ops.mean(logits[:, 0] - logits[:, 1])
        loss = self.gamma * tc
        return loss, {"tc": tc, "tc_term": loss}

    def discriminator_loss(self, z_joint, z_other, seed=None):
        """0.5 (CE(D(z), 0) + CE(D(perm z'), 1)) with both codes treated as constants."""
        z_joint = ops.stop_gradient(z_joint)
        z_perm = ops.stop_gradient(permute_dims(z_other, seed=seed))
        n = ops.shape(z_joint)[0]
        ce = keras.losses.sparse_categorical_crossentropy
        l0 = ops.mean(ce(ops.zeros((n,), "int32"), self.discriminator(z_joint), from_logits=True))
        l1 = ops.mean(ce(ops.ones((n,), "int32"), self.discriminator(z_perm), from_logits=True))
        loss = 0.5 * (l0 + l1)
        return loss, {"disc_loss": loss}

    def to_config(self) -> dict:
        return {"gamma": self.gamma}


# --------------------------------------------------------------------------------------------- objective
@dataclass
class Objective:
    """Reconstruction + KL term (+ AR term) (+ Factor term). ``kind`` names the method."""

    kind: str
    kl: KLTerm
    reconstruction: str = "tokens"  # or "bernoulli"
    ar: ARTerm | None = None
    factor: FactorTerm | None = None
    extra: dict = field(default_factory=dict)

    def reconstruction_loss(self, logits, targets):
        if self.reconstruction == "bernoulli":
            return bernoulli_reconstruction(logits, targets), pixel_accuracy(logits, targets)
        return token_cross_entropy(logits, targets), token_accuracy(logits, targets)

    def __call__(self, outputs: dict, targets, attributes, step):
        """Total VAE loss (without the discriminator's own loss) and a logs dict."""
        rec, acc = self.reconstruction_loss(outputs["logits"], targets)
        kl_loss, logs = self.kl(outputs["mean"], outputs["log_std"], step)
        logs.update({"recon": rec, "accuracy": acc})
        total = rec + kl_loss
        if self.ar is not None:
            reg, reg_logs = self.ar(outputs["z"], attributes)
            logs.update(reg_logs)
            total = total + reg
        if self.factor is not None:
            tc, tc_logs = self.factor(outputs["z"])
            logs.update(tc_logs)
            total = total + tc
        logs["loss"] = total
        return total, logs

    def to_config(self) -> dict:
        return {"kind": self.kind, "reconstruction": self.reconstruction, "kl": self.kl.to_config(),
                "ar": self.ar.to_config() if self.ar else None,
                "factor": self.factor.to_config() if self.factor else None, **self.extra}
