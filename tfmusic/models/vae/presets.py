"""Named model architectures and objective presets (reference-spec B.2, B.3, B.5, C.7, C.8, D).

``build_vae(model, ...)`` returns a built-on-first-call ``VAE``; ``build_objective(kind, family, ...)``
returns an ``Objective`` whose defaults are the spec's hyperparameters for that data family
(``dmelodies``, ``measure``, ``image``); every default can be overridden.
"""

from __future__ import annotations

from typing import Any, Sequence

from tfmusic.models.vae.core import VAE
from tfmusic.models.vae.decoders import CNNDecoder, HierarchicalDecoder, ImageDecoder
from tfmusic.models.vae.encoders import CNNEncoder, ImageEncoder, RNNEncoder
from tfmusic.models.vae.objectives import (ARTerm, Constant, ExponentialRamp, FactorDiscriminator, FactorTerm,
                                           KLTerm, Objective, StepGate)

MODELS = ("dmelodies-rnn", "dmelodies-cnn", "measure", "sprites", "mnist")
OBJECTIVES = ("beta", "annealed", "factor", "ar")
DMELODIES_NUM_CLASSES = 62  # the reference decoder's hard-coded output size (vocabulary 52)
DMELODIES_FACTOR_SCALES = (11, 2, 2, 27, 27, 1, 1, 1, 1)  # D: factors / max index -> [0, 1]


def family_of(model: str) -> str:
    if model.startswith("dmelodies"):
        return "dmelodies"
    if model == "measure":
        return "measure"
    if model in ("sprites", "mnist"):
        return "image"
    raise ValueError(f"unknown VAE model {model!r}; expected one of {MODELS}")


def build_vae(model: str, vocab_size: int | None = None, z_dim: int | None = None, seed: int | None = None,
              hidden: int | None = None) -> VAE:
    """The named architecture. ``vocab_size`` is the token vocabulary (measures) or output classes;
    ``hidden`` overrides the RNN width (used by tiny tests)."""
    family_of(model)
    if model == "dmelodies-rnn":
        v, z, h = vocab_size or DMELODIES_NUM_CLASSES, z_dim or 32, hidden or 64
        enc = RNNEncoder(v, z, 10, h, 2, 0.2, 2 * h, name="encoder")
        dec = HierarchicalDecoder(v, z, 10, h, 2, 0.2, n_beats=2, ticks_per_beat=8, name="decoder")
    elif model == "dmelodies-cnn":
        v, z = vocab_size or DMELODIES_NUM_CLASSES, z_dim or 32
        enc, dec = CNNEncoder(v, z, name="encoder"), CNNDecoder(v, z, name="decoder")
    elif model == "measure":
        if not vocab_size:
            raise ValueError("the measure VAE needs vocab_size (the measures vocabulary JSON size)")
        z, h = z_dim or 32, hidden or 128
        enc = RNNEncoder(vocab_size, z, 10, h, 2, 0.5, 2 * h, name="encoder")
        dec = HierarchicalDecoder(vocab_size, z, 10, h, 2, 0.5, n_beats=4, ticks_per_beat=6, name="decoder")
    else:
        enc = ImageEncoder(model, z_dim, name="encoder")
        dec = ImageDecoder(model, z_dim, name="decoder")
    return VAE(enc, dec, seed=seed, name=f"vae_{model.replace('-', '_')}")


#: The spec's hyperparameters per data family and objective: dMelodies C.8 / D, measures and images
#: B.2 (annealed and factor use the C.8 forms everywhere).
DEFAULT_HPARAMS: dict[str, dict[str, dict[str, float]]] = {
    "dmelodies": {
        "beta": {"beta": 1.0, "capacity": 50.0},
        "annealed": {"beta": 1.0, "capacity": 50.0},
        "factor": {"beta": 1.0, "capacity": 50.0, "gamma": 10.0},
        "ar": {"beta": 0.2, "capacity": 50.0, "gamma": 1.0, "delta": 10.0},
    },
    "measure": {
        "beta": {"beta": 0.001, "capacity": 0.0},
        "annealed": {"beta": 1.0, "capacity": 50.0},
        "factor": {"beta": 1.0, "capacity": 50.0, "gamma": 10.0},
        "ar": {"beta": 0.001, "capacity": 0.0, "gamma": 1.0, "delta": 10.0},
    },
    "image": {
        "beta": {"beta": 4.0, "capacity": 0.0},
        "annealed": {"beta": 1.0, "capacity": 50.0},
        "factor": {"beta": 1.0, "capacity": 50.0, "gamma": 10.0},
        "ar": {"beta": 1.0, "capacity": 0.0, "gamma": 10.0, "delta": 1.0},
    },
}


def default_hparams(objective: str, family: str) -> dict[str, Any]:
    """The spec's hyperparameters for ``objective`` on ``family`` (a copy, so callers may override)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
    if family not in DEFAULT_HPARAMS:
        raise ValueError(f"unknown family {family!r}")
    return dict(DEFAULT_HPARAMS[family][objective])


def default_reg(family: str, model: str, attribute_names: Sequence[str] | None = None,
                num_attribute_columns: int | None = None) -> dict[str, Any]:
    """Which attribute columns are regularized on which latent dims (B.1, D)."""
    if family == "dmelodies":
        from tfmusic.data.dmelodies import FACTOR_NAMES
        return {"dims": list(range(9)), "columns": list(range(9)), "scales": list(DMELODIES_FACTOR_SCALES),
                "names": list(FACTOR_NAMES)}
    if family == "measure":
        names = list(attribute_names or ("rhythmic_complexity", "pitch_range", "note_density", "contour"))
        return {"dims": list(range(len(names))), "columns": list(range(len(names))), "scales": None, "names": names}
    # images: B.1 regularizes attribute l on latent dim l + 1 (dim 0 belongs to the reference's skipped
    # csv-index / color column); tfmusic's image data has no such column, so columns start at 0
    n = num_attribute_columns or 5
    names = list(attribute_names) if attribute_names else [f"attr_{i}" for i in range(n)]
    return {"dims": list(range(1, n + 1)), "columns": list(range(n)), "scales": None, "names": names[:n]}


def build_objective(objective: str, model: str, steps_per_epoch: int, *, beta: float | None = None,
                    capacity: float | None = None, gamma: float | None = None, delta: float | None = None,
                    warmup_epochs: int | None = None, ramp_iterations: float = 1e5,
                    reg: dict | None = None, discriminator: FactorDiscriminator | None = None) -> Objective:
    """Assemble an ``Objective``.

    dMelodies beta-VAE: ReLU(beta_t KL - C) with beta_t ramped after ``warmup_epochs`` (C.8).
    Annealed: beta gated to 0 during warm-up, |KL - C_t| with C_t ramped (C.8). Factor: beta|KL - C| +
    gamma TC, no warm-up. AR: KL term (hinge with C = 50 on dMelodies per D; beta|KL| on measures and
    images per B.1) + gamma sum L_reg. Measure / image beta-VAE: beta |KL - C| with C = 0 (B.1/B.2).
    ``warmup_epochs`` = last epoch index with beta = 0 (C.8: 10); ``-1`` disables warm-up.
    """
    family = family_of(model)
    hp = default_hparams(objective, family)
    beta = hp["beta"] if beta is None else float(beta)
    capacity = hp["capacity"] if capacity is None else float(capacity)
    gamma = hp.get("gamma", 0.0) if gamma is None else float(gamma)
    delta = hp.get("delta", 0.0) if delta is None else float(delta)
    zero_through = 10 if warmup_epochs is None else int(warmup_epochs)
    recon = "bernoulli" if family == "image" else "tokens"
    extra = {"gamma": gamma, "delta": delta, "warmup_epochs": zero_through, "ramp_iterations": ramp_iterations,
             "steps_per_epoch": steps_per_epoch, "family": family, "model": model}

    if objective == "beta":
        if family == "dmelodies":
            kl = KLTerm(ExponentialRamp(beta, steps_per_epoch, zero_through, ramp_iterations), capacity, "hinge")
        else:
            kl = KLTerm(Constant(beta), capacity, "abs")
        return Objective("beta", kl, recon, extra=extra)
    if objective == "annealed":
        kl = KLTerm(StepGate(beta, steps_per_epoch, zero_through),
                    ExponentialRamp(capacity, steps_per_epoch, zero_through, ramp_iterations), "abs")
        return Objective("annealed", kl, recon, extra=extra)
    if objective == "factor":
        kl = KLTerm(Constant(beta), capacity, "abs")
        disc = discriminator or FactorDiscriminator(name="discriminator")
        return Objective("factor", kl, recon, factor=FactorTerm(disc, gamma), extra=extra)
    # ar
    mode = "hinge" if family == "dmelodies" else "abs"
    kl = KLTerm(Constant(beta), capacity, mode)
    reg = reg or default_reg(family, model)
    ar = ARTerm(reg["dims"], gamma, delta, reg.get("scales"), reg.get("names"), reg.get("columns"))
    return Objective("ar", kl, recon, ar=ar, extra=extra)
