"""Pictures of the AR-VAE experiment (B.7's qualitative figures): for the regularized latent dims of each run,

* ``<prefix>_attribute_vs_dim.png`` -- test-set attribute against the sampled code of its regularized dim
  (one column per attribute, one row per model): AR-VAE should show a monotonic band, beta-VAE a cloud;
* ``<prefix>_traversal_attributes.png`` -- sweep the dim over the data range from the posterior means of
  test bars, decode (argmax, no teacher forcing), and measure the attribute of the decoded bars: mean +-
  std against z; a controllable dim rises monotonically;
* ``<prefix>_traversal_<method>.png`` -- piano-roll strips of one test bar swept along each regularized dim.

Used by ``bench/experiment_vae.py``; run this file directly (``--run LABEL=RUN_DIR``) to redraw from trained runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _codes(run_dir: Path, data_dir: Path, batches: int, batch_size: int):
    from tfmusic.training.vae import collect_codes, load_run, open_data

    vae, meta = load_run(run_dir)
    data = open_data("measure", data_dir)
    codes = collect_codes(vae, data.dataset("test", batch_size), batches)
    x = np.concatenate([np.asarray(b[0]) for b in data.dataset("test", batch_size).take(1)])
    return vae, meta, codes, x, list(data.attribute_names)


def draw(runs: dict[str, Path], data_dir: Path, out: Path, prefix: str = "experiment_vae",
         dims: Sequence[int] = (0, 1, 2, 3), batches: int = 8, batch_size: int = 256, steps: int = 9,
         sweep_items: int = 32) -> list[Path]:
    """Draw the three pictures for ``runs`` ({label: run_dir}); returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfmusic.data.codecs import codec_for
    from tfmusic.music.traversal import decode, summary_images, sweep_codes

    codec = codec_for("measure")
    loaded = {label: _codes(path, data_dir, batches, batch_size) for label, path in runs.items()}
    names = next(iter(loaded.values()))[4]
    written: list[Path] = []

    fig, axes = plt.subplots(len(loaded), len(dims), figsize=(3.2 * len(dims), 2.8 * len(loaded)), squeeze=False)
    for row, (label, (_, _, codes, _, _)) in enumerate(loaded.items()):
        for col, dim in enumerate(dims):
            ax = axes[row][col]
            ax.scatter(codes["z"][:, dim], codes["attributes"][:, col], s=2, alpha=0.3)
            rho = _spearman(codes["z"][:, dim], codes["attributes"][:, col])
            ax.set_title(f"{label}: {names[col]}\nvs z[{dim}] (Spearman {rho:+.2f})", fontsize=8)
            ax.set_xlabel(f"z[{dim}] (sampled)", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    written.append(out / f"{prefix}_attribute_vs_dim.png")
    fig.savefig(written[-1], dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(dims), figsize=(3.2 * len(dims), 2.8), squeeze=False)
    for label, (vae, _, codes, x, _) in loaded.items():
        mean = np.asarray(vae.encode(x[:sweep_items])[0])
        for col, dim in enumerate(dims):
            lo, hi = np.percentile(codes["z"][:, dim], [1, 99])
            values = np.linspace(lo, hi, steps)
            codes_all = np.concatenate([sweep_codes(m, dim, values) for m in mean])  # one decode call per dim
            attrs = codec.attributes(decode(vae, codes_all))[0][:, col].reshape(len(mean), steps)
            ax = axes[0][col]
            ax.errorbar(values, attrs.mean(0), yerr=attrs.std(0), label=label, capsize=2, lw=1)
            ax.set_title(f"{names[col]} of decoded bars\nsweeping z[{dim}] ({len(mean)} test bars)", fontsize=8)
            ax.set_xlabel(f"z[{dim}]", fontsize=7)
            ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    written.append(out / f"{prefix}_traversal_attributes.png")
    fig.savefig(written[-1], dpi=80)
    plt.close(fig)

    for label, (vae, _, codes, x, _) in loaded.items():
        values = np.linspace(-3.0, 3.0, steps)
        images = summary_images(vae, x[:1], list(dims), values)
        fig, axes = plt.subplots(len(dims), 1, figsize=(10, 1.6 * len(dims)), squeeze=False)
        for row, dim in enumerate(dims):
            ax = axes[row][0]
            ax.imshow(images[f"traversal/dim_{dim:02d}"][..., 0], aspect="auto", cmap="gray_r",
                      interpolation="nearest")
            ax.set_ylabel(f"z[{dim}]\n{names[row]}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][0].set_title(f"{label}: one test bar, each regularized dim swept -3..3 ({steps} bars, "
                             "token piano roll)", fontsize=8)
        fig.tight_layout()
        written.append(out / f"{prefix}_traversal_{label.split('-')[0].lower()}.png")
        fig.savefig(written[-1], dpi=80)
        plt.close(fig)
    return written


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    rho = spearmanr(a, b).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def main(argv: list[str] | None = None) -> int:
    """Redraw the pictures from trained runs (no training): ``--run LABEL=RUN_DIR`` per model."""
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(description="AR-VAE experiment pictures from trained measure runs")
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=RUN_DIR",
                        help="a trained run (model.keras + vae.json); repeat per model, e.g. AR-VAE=dir")
    parser.add_argument("--data", type=Path, default=Path("data/measures_folk"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prefix", default="experiment_vae")
    parser.add_argument("--sweep-items", type=int, default=32, help="test bars per traversal curve")
    args = parser.parse_args(argv)
    runs: dict[str, Path] = {}
    for item in args.run:
        label, sep, path = item.partition("=")
        if not sep or not label or not (Path(path) / "model.keras").is_file():
            parser.error(f"--run {item!r}: expected LABEL=RUN_DIR with a model.keras in RUN_DIR")
        runs[label] = Path(path)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in draw(runs, args.data, args.out, prefix=args.prefix, sweep_items=args.sweep_items):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
