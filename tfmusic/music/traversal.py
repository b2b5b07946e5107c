"""Latent traversals: decode sweeps along one latent dim and render them.

Token models (dMelodies, measures): each decoded sequence becomes events for
:mod:`tfmusic.music.render` -> one piano-roll PNG with the attribute value recomputed from the decoded
music beside each row, plus MusicXML and MIDI of the whole sweep (and a LilyPond-engraved PNG when
``lilypond`` and ``musicxml2ly`` are on PATH). Image models: one grid PNG. ``summary_images`` gives the
small arrays the training task logs to TensorBoard.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np

from tfmusic.music.codec import TokenCodec

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ decoding
def sweep_codes(origin: np.ndarray, dim: int, values: Sequence[float]) -> np.ndarray:
    """Copies of ``origin`` (z_dim,) with ``origin[dim]`` replaced by each value -> (len(values), z_dim)."""
    origin = np.asarray(origin, dtype=np.float32).reshape(-1)
    if not 0 <= dim < origin.shape[0]:
        raise ValueError(f"latent dim {dim} is outside the {origin.shape[0]}-dim latent space")
    codes = np.repeat(origin[None], len(values), axis=0)
    codes[:, dim] = np.asarray(values, dtype=np.float32)
    return codes


def is_image_model(vae) -> bool:
    return hasattr(vae.decoder, "variant")


def decode(vae, codes: np.ndarray) -> np.ndarray:
    """Token ids ``(N, T)`` (argmax, no teacher forcing) or image probabilities ``(N, H, W, 1)``."""
    logits = np.asarray(vae.decode(np.asarray(codes, dtype=np.float32)))
    if is_image_model(vae):
        return 1.0 / (1.0 + np.exp(-logits))
    return logits.argmax(-1).astype(np.int32)


def traverse(vae, x: np.ndarray | None, dim: int, values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sweep ``dim`` from the posterior mean of ``x[0]`` (the prior mean, zeros, if ``x`` is None).

    Returns ``(codes, decoded)``."""
    if x is None:
        origin = np.zeros((vae.z_dim,), np.float32)
    else:
        mean, _ = vae.encode(np.asarray(x)[:1])
        origin = np.asarray(mean)[0]
    codes = sweep_codes(origin, dim, values)
    return codes, decode(vae, codes)


def data_limits(vae, x: np.ndarray, dim: int) -> tuple[float, float]:
    """Min / max of the posterior mean along ``dim`` over ``x`` (the controllability repo's limits, D)."""
    mean, _ = vae.encode(np.asarray(x))
    col = np.asarray(mean)[:, dim]
    return float(col.min()), float(col.max())


# ------------------------------------------------------------------------------------------ summaries
def token_roll(ids: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot image ``(num_classes, T)`` of a token sequence, high ids on top."""
    ids = np.asarray(ids, dtype=np.int64)
    img = np.zeros((num_classes, ids.shape[0]), np.float32)
    img[np.clip(ids, 0, num_classes - 1), np.arange(ids.shape[0])] = 1.0
    return img[::-1]


def _hstack(panels: list[np.ndarray], gap: int = 1) -> np.ndarray:
    h = max(p.shape[0] for p in panels)
    parts = []
    for p in panels:
        parts += [p, np.full((h, gap) + p.shape[2:], 0.5, np.float32)]
    return np.concatenate(parts[:-1], axis=1)


def summary_images(vae, x: np.ndarray, dims: Sequence[int], values: Sequence[float] | None = None) -> dict:
    """TensorBoard images ``(H, W, 1)`` in [0, 1]: one traversal strip per dim plus input vs reconstruction."""
    values = np.linspace(-3.0, 3.0, 8) if values is None else np.asarray(values)
    out: dict[str, np.ndarray] = {}
    mean, _ = vae.encode(np.asarray(x))
    mean = np.asarray(mean)
    image = is_image_model(vae)
    for dim in dims:
        decoded = decode(vae, sweep_codes(mean[0], int(dim), values))
        if image:
            panels = [d[..., 0] for d in decoded]
        else:
            classes = int(vae.decoder.num_classes)
            panels = [token_roll(d, classes) for d in decoded]
        out[f"traversal/dim_{int(dim):02d}"] = _hstack(panels)[..., None]
    recon = decode(vae, mean)
    if image:
        pairs = [np.concatenate([np.asarray(a)[..., 0], b[..., 0]], axis=0) for a, b in zip(x, recon)]
    else:
        classes = int(vae.decoder.num_classes)
        pairs = [np.concatenate([token_roll(a, classes), token_roll(b, classes)], axis=0) for a, b in zip(x, recon)]
    out["reconstruction"] = _hstack(pairs, gap=2)[..., None]
    return out


# ------------------------------------------------------------------------------------------ rendering
def engrave_lilypond(musicxml: Path, out_dir: Path) -> Path | None:
    """PNG engraving via ``musicxml2ly`` + ``lilypond``; None (with a message) when they are not installed."""
    lily, conv = shutil.which("lilypond"), shutil.which("musicxml2ly")
    if not lily or not conv:
        log.warning("lilypond/musicxml2ly not found on PATH: skipping the engraved PNG "
                    "(install the Debian package 'lilypond' to get it)")
        return None
    ly = out_dir / (musicxml.stem + ".ly")
    try:
        subprocess.run([conv, "--output", str(ly), str(musicxml)], check=True, capture_output=True, timeout=120)
        subprocess.run([lily, "--png", "-dresolution=110", "-o", str(out_dir / musicxml.stem), str(ly)],
                       check=True, capture_output=True, timeout=300)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        log.warning("lilypond engraving of %s failed: %s", musicxml, err)
        return None
    pngs = sorted(out_dir.glob(musicxml.stem + "*.png"))
    return pngs[0] if pngs else None


def image_grid(images: np.ndarray, path: Path, titles: Sequence[str]) -> Path:
    """One row of images with a title over each (the image-model traversal picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(1.3 * n, 1.6), squeeze=False)
    for ax, img, title in zip(axes[0], images, titles):
        ax.imshow(np.asarray(img)[..., 0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_traversal(vae, codec: TokenCodec | None, dim: int, values: Sequence[float], out_dir: str | Path, *,
                    x: np.ndarray | None = None, attribute: int | None = None, engrave: bool = True) -> dict:
    """Decode a sweep along ``dim`` and write the pictures and scores into ``out_dir``.

    ``codec`` says what the decoded tokens mean (``tfmusic.data.codecs.codec_for(family)``);
    None for image models.

    ``attribute`` selects which recomputed attribute is shown beside each row (default: the one
    regularized on ``dim`` when ``dim`` indexes an attribute). Returns the written paths, the codes,
    decoded tokens and attribute values (JSON-friendly)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    values = [float(v) for v in values]
    codes, decoded = traverse(vae, x, dim, values)
    stem = f"traversal_dim{dim:02d}"
    titles = [f"z[{dim}] = {v:+.2f}" for v in values]
    result: dict = {"dim": dim, "values": values, "files": {}}
    if codec is None:
        result["files"]["png"] = str(image_grid(decoded, out_dir / f"{stem}.png", titles))
        return result

    from tfmusic.music import render

    ticks_per_beat = codec.ticks_per_beat
    events = codec.events(decoded)
    attrs, names = codec.attributes(decoded)
    col = attribute if attribute is not None else (dim if dim < attrs.shape[1] else None)
    shown = attrs[:, col].tolist() if col is not None else values
    label = names[col] if col is not None else f"z[{dim}]"
    result.update({"tokens": decoded.tolist(), "attribute_names": list(names), "attributes": attrs.tolist(),
                   "shown": label})
    result["files"]["pianoroll_png"] = str(render.plot_pianorolls(
        events, out_dir / f"{stem}.png", titles=titles, values=shown, value_label=label,
        ticks_per_beat=ticks_per_beat, beats_per_bar=4))
    flat = [e for seq in events for e in seq]
    score = render.events_to_score(flat, ticks_per_beat=ticks_per_beat, title=f"traversal of z[{dim}]")
    result["files"]["midi"] = str(render.write_midi(score, out_dir / f"{stem}.mid"))
    xml = render.write_musicxml(score, out_dir / f"{stem}.musicxml")
    result["files"]["musicxml"] = str(xml)
    if engrave:
        png = engrave_lilypond(xml, out_dir)
        result["files"]["lilypond_png"] = str(png) if png else None
    return result
