"""Latent-space models: one Keras VAE core (``core.VAE``: encode -> (mean, log_std), reparameterized sample,
decode), encoders/decoders for dMelodies (RNN, CNN), folk measures (hierarchical beat/tick GRU) and images
(dSprites, MNIST-style), composable objectives (beta, Annealed, Factor, AR) and named presets."""

from tfmusic.models.vae.core import VAE, GaussianHead, StackedGRUCell
from tfmusic.models.vae.decoders import CNNDecoder, HierarchicalDecoder, ImageDecoder
from tfmusic.models.vae.encoders import CNNEncoder, ImageEncoder, RNNEncoder
from tfmusic.models.vae.init import INIT_SCHEMES, initialize
from tfmusic.models.vae.objectives import (ARTerm, FactorDiscriminator, FactorTerm, KLTerm, Objective,
                                           attribute_regularization, kl_divergence, kl_per_dim)
from tfmusic.models.vae.presets import MODELS, OBJECTIVES, build_objective, build_vae

__all__ = ["VAE", "GaussianHead", "StackedGRUCell", "CNNDecoder", "HierarchicalDecoder", "ImageDecoder",
           "CNNEncoder", "ImageEncoder", "RNNEncoder", "ARTerm", "FactorDiscriminator", "FactorTerm", "KLTerm",
           "Objective", "attribute_regularization", "kl_divergence", "kl_per_dim", "MODELS", "OBJECTIVES",
           "build_objective", "build_vae", "INIT_SCHEMES", "initialize"]
