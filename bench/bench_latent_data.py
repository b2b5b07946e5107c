"""Latent-space data and metrics: dSprites rendering, the measures reader, disentanglement metrics.

Rows (both sides of a ratio measured here, in this run):
* dSprites rendering, batches of 256 vs one image at a time (the per-item generator a
  ``tf.data.Dataset.from_generator`` would use);
* dSprites tf.data throughput, images/s (on the fly, training needs ~128 x steps/s);
* measures reader with transposition augmentation, bars/s, on a small set built here;
* dMelodies-scale discrete metrics (MIG + modularity + SAP) and AR-VAE continuous metrics, seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from timing import best_of


def _rate(fn, items: int, repeats: int = 3) -> float:
    return items / best_of(fn, repeats, warmup=True)


def _sprites_rows() -> list[dict]:
    from tfmusic.data import sprites

    factors = sprites.DSprites().sample_factors(1024, np.random.default_rng(0))
    batched = _rate(lambda: [sprites.render(factors[k:k + 256]) for k in range(0, 1024, 256)], 1024)
    single = _rate(lambda: [sprites.render(factors[k:k + 1]) for k in range(256)], 256)

    ds = sprites.dataset("train", 128, limit=128 * 24)
    throughput = _rate(lambda: sum(1 for _ in ds), 128 * 24, repeats=2)
    return [
        {"what": "dSprites render, batched 256 vs per image", "ours": batched, "reference": single,
         "unit": "images/s", "ratio": batched / single, "target": None, "met": None,
         "notes": "numpy float32, 64x64 binary; memory-bound, so batching gains little"},
        {"what": "dSprites tf.data on the fly (batch 128)", "ours": throughput, "reference": None,
         "unit": "images/s", "ratio": None, "target": ">= 2000 images/s", "met": throughput >= 2000,
         "notes": "render in tf.numpy_function, AUTOTUNE map"},
    ]


def _measures_rows(out_dir: Path) -> list[dict]:
    from tfmusic.data import measures

    import shutil

    data = out_dir / "bench_measures"
    shutil.rmtree(data, ignore_errors=True)  # empty bar cache: time the extraction, not a cache hit
    start = time.perf_counter()
    manifest = measures.build(data, collections=["oneills1850"], max_files=2, progress=False)
    build_s = time.perf_counter() - start
    batches = 80
    ds = measures.load(data, "train", 256, transpose=True, repeat=True, shuffle_buffer=4096).take(batches)
    rate = _rate(lambda: sum(1 for _ in ds), 256 * batches, repeats=3)
    n = manifest["splits"]["train"]
    return [
        {"what": "measures reader, train split with transposition", "ours": rate, "reference": None,
         "unit": "bars/s", "ratio": None, "target": ">= 10000 bars/s", "met": rate >= 10000,
         "notes": f"{n} distinct bars repeated, 80 batches of 256"},
        {"what": "measures build, oneills1850 2 files (incl. cache write)", "ours": build_s, "reference": None,
         "unit": "s", "ratio": None, "target": None, "met": None,
         "notes": f"{manifest['bars_out']} bars; empty bar cache, music21's own parse cache may be warm"},
    ]


def _metric_rows() -> list[dict]:
    from sklearn.metrics import mutual_info_score

    from tfmusic.evaluation import disentanglement as D

    rng = np.random.default_rng(0)
    n = 102_912 // 4
    factors = rng.integers(0, 12, size=(n, 9))
    codes = rng.standard_normal((n, 32))
    codes[:, :9] += factors
    binned = D.discretize_codes(codes)

    def sklearn_matrix():
        return [[mutual_info_score(factors[:, j], binned[:, i]) for j in range(9)] for i in range(32)]

    ours_s = best_of(lambda: D.discrete_mutual_info(binned, factors), repeats=3)
    ref_s = best_of(sklearn_matrix, repeats=1)
    rows = [{"what": "discrete MI matrix 25,728 pts x 32 codes x 9 factors (vs sklearn mutual_info_score)",
             "ours": ours_s, "reference": ref_s, "unit": "s", "ratio": ref_s / ours_s,
             "target": ">= 5x", "met": ref_s / ours_s >= 5, "notes": "same values (tested equal)"}]
    start = time.perf_counter()
    D.evaluate_all(codes, factors, "discrete")
    disc = time.perf_counter() - start
    a = rng.uniform(size=(5000, 4))
    z = rng.standard_normal((5000, 32))
    z[:, :4] += 3 * a
    start = time.perf_counter()
    D.evaluate_all(z, a, "continuous")
    cont = time.perf_counter() - start
    return rows + [
        {"what": "discrete metrics (MIG+modularity+SAP), 25,728 x 32 codes x 9 factors", "ours": disc,
         "reference": None, "unit": "s", "ratio": None, "target": None, "met": None,
         "notes": "a quarter of the dMelodies evaluation size (C.9)"},
        {"what": "continuous metrics (interp+MIG+mod+SAP+SCC), 5,000 x 32 x 4", "ours": cont,
         "reference": None, "unit": "s", "ratio": None, "target": None, "met": None,
         "notes": "kNN mutual_info_regression dominates"},
    ]


def run(out_dir: Path) -> list[dict]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _sprites_rows() + _measures_rows(out_dir) + _metric_rows()
