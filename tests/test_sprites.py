"""Procedural dSprites and the MNIST 5k loader (spec B.5, offline-data §4)."""
import numpy as np
import pytest

from tfmusic.data import sprites as S


def test_factor_grid_and_indexing():
    assert S.FACTOR_SIZES == (3, 6, 40, 32, 32) and S.NUM_IMAGES == 737_280
    idx = np.array([0, 1, 32, 12345, S.NUM_IMAGES - 1])
    f = S.index_to_factors(idx)
    np.testing.assert_array_equal(f[0], [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(f[1], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(f[2], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(f[-1], np.array(S.FACTOR_SIZES) - 1)
    np.testing.assert_array_equal(S.factors_to_index(f), idx)
    v = S.factor_values(f[-1:])
    np.testing.assert_allclose(v[0], [3.0, 1.0, 2 * np.pi, 1.0, 1.0], rtol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        S.render(np.array([[3, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="index out of range"):
        S.index_to_factors([S.NUM_IMAGES])


def test_render_binary_deterministic_and_geometric():
    f = np.array([[0, 5, 0, 16, 16], [1, 5, 0, 16, 16], [2, 5, 0, 16, 16], [0, 0, 0, 16, 16]])
    img = S.render(f)
    assert img.shape == (4, 64, 64, 1) and img.dtype == np.float32
    assert set(np.unique(img)) <= {0.0, 1.0}
    np.testing.assert_array_equal(img, S.render(f))
    area = img.sum(axis=(1, 2, 3))
    assert area[0] == pytest.approx(18 * 18, rel=0.08)            # square, half-size 9
    assert area[1] == pytest.approx(np.pi * 9 * 4.5, rel=0.08)     # 2:1 ellipse
    assert area[3] == pytest.approx(9 * 9, rel=0.15)               # square at scale 0.5
    assert 0 < area[2] < area[0]
    # orientation 0 and 2 pi are the same image (as in dSprites); a rotated square differs
    np.testing.assert_array_equal(S.render(np.array([[0, 5, 39, 16, 16]])), img[:1])
    assert not np.array_equal(S.render(np.array([[0, 5, 5, 16, 16]])), img[:1])


def test_position_moves_the_centroid():
    f = np.array([[1, 2, 0, 0, 10], [1, 2, 0, 31, 10], [1, 2, 0, 10, 0], [1, 2, 0, 10, 31]])
    img = S.render(f)[..., 0]
    rows, cols = np.arange(64)[:, None], np.arange(64)[None, :]
    cx = (img * cols).sum(axis=(1, 2)) / img.sum(axis=(1, 2))
    cy = (img * rows).sum(axis=(1, 2)) / img.sum(axis=(1, 2))
    assert cx[1] - cx[0] == pytest.approx(40, abs=1)
    assert cy[3] - cy[2] == pytest.approx(40, abs=1)


def test_ground_truth_api():
    data = S.DSprites()
    assert data.num_factors == 5 and data.observation_shape == (64, 64, 1)
    f = data.sample_factors(50, np.random.RandomState(0))
    assert f.shape == (50, 5) and np.all(f < np.array(S.FACTOR_SIZES)) and np.all(f >= 0)
    np.testing.assert_array_equal(f, data.sample_factors(50, np.random.RandomState(0)))
    np.testing.assert_array_equal(data.sample_observations_from_factors(f, None), data.images_from_factors(f))


def test_splits_partition_the_grid():
    parts = [S.split_indices(s, seed=1) for s in ("train", "validation", "test")]
    assert [len(p) for p in parts] == [516_096, 147_456, 73_728]
    assert len(np.unique(np.concatenate(parts))) == S.NUM_IMAGES
    np.testing.assert_array_equal(parts[2], S.split_indices("test", seed=1))
    assert not np.array_equal(parts[2], S.split_indices("test", seed=2))


def test_tf_dataset_on_the_fly():
    ds = S.dataset("train", 4, seed=0, limit=10)
    batches = list(ds.as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(4, 64, 64, 1), (4, 64, 64, 1), (2, 64, 64, 1)]
    images, values = batches[0]
    assert images.dtype == np.float32 and values.dtype == np.float32 and values.shape == (4, 5)
    again = list(S.dataset("train", 4, seed=0, limit=10).as_numpy_iterator())
    np.testing.assert_array_equal(batches[0][0], again[0][0])
    ids = list(S.dataset("test", 3, seed=0, limit=3, factor_kind="indices").as_numpy_iterator())[0]
    factors = S.index_to_factors(S.split_indices("test", 0)[:3])
    np.testing.assert_array_equal(ids[1], factors)
    np.testing.assert_array_equal(ids[0], S.render(factors))


def test_mnist_attributes_on_drawn_strokes():
    img = np.zeros((2, 28, 28), np.float32)
    img[0, 5:15, 10:13] = 1.0                  # upright bar 3 wide, 10 tall
    for k, r in enumerate(range(5, 15)):       # the same bar leaning right (top shifted right)
        shift = (9 - k) // 3
        img[1, r, 10 + shift:13 + shift] = 1.0
    att = S.mnist_attributes(img)
    area, thick, slant, width, height = att[0]
    assert (area, width, height) == (30, 3, 10)
    assert thick == pytest.approx(2 * 30 / 26)
    assert slant == pytest.approx(0.0, abs=1e-6)
    assert att[1, 2] > 0.2 and att[1, 0] == 30


def test_mnist_5k_loader():
    images, labels, attrs = S.load_mnist()
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 500))
    assert attrs.shape == (5000, 5) and np.all(np.isfinite(attrs))
    # ones are narrower than zeros on average
    assert attrs[labels == 1, 3].mean() < attrs[labels == 0, 3].mean()
    assert not images.flags.writeable
    x, a = next(iter(S.mnist_dataset("test", 64)))
    assert x.shape == (64, 28, 28, 1) and a.shape == (64, 5)
    assert sum(int(b[0].shape[0]) for b in S.mnist_dataset("validation", 128)) == 500


def test_cli_preview(tmp_path):
    from tfmusic.cli.main import main

    out = tmp_path / "grid.png"
    assert main(["sprites", "preview", "--out", str(out), "--n", "4"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sprites", "preview", "--out", str(out), "--n", "0"]) == 2
