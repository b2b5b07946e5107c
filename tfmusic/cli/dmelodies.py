"""`tfmusic dmelodies ...`: generate the dMelodies dataset (Beam), inspect it, export npz / MIDI."""

from __future__ import annotations

import argparse

from tfmusic.cli.main import CliError


def _parse_indices(text: str) -> list[int]:
    try:
        return [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise CliError(f"--indices '{text}': expected comma-separated integers, e.g. 0,1,2999") from None


def _generate(args: argparse.Namespace) -> int:
    from tfmusic.data import dmelodies

    try:
        num_shards = dmelodies.parse_num_shards(args.num_shards)
        meta = dmelodies.generate(
            args.out, seed=args.seed, num_shards=num_shards, limit=args.limit,
            beam_args=args.extra_args, progress=False if args.quiet else None)
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from None
    if "template_location" in meta:
        print(f"Dataflow template written to {meta['template_location']} (the job writes {meta['out']} when launched)")
    elif not args.quiet:
        print(_summary(meta, args.out))
    return 0


def _summary(meta: dict, data_dir: str) -> str:
    lines = [f"dMelodies {meta['version']} in {data_dir}",
             f"  items      {meta['num_items']:,}" + (f" (limit {meta['limit']:,})" if meta.get("limit") else ""),
             f"  seed       {meta['seed']}"]
    order = ("train", "validation", "test")
    for split, c in sorted(meta["counts"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9):
        rej = sum(c["rejected"].values())
        lines.append(f"  {split:<10} {c['out']:>9,} items in {c['num_shards']} shards"
                     f" (in {c['in']:,}, rejected {rej})")
    lines.append(f"  vocabulary {meta['vocabulary_size']} tokens, sequence length {meta['seq_len']}")
    lines.append("  factors    " + ", ".join(f"{n}={s}" for n, s in zip(meta["factor_names"], meta["factor_sizes"])))
    size = sum(s["num_bytes"] for s in meta["shards"])
    lines.append(f"  size       {size / 2**20:.1f} MiB of TFRecords")
    if "generation_seconds" in meta:  # only for the run that just finished (not stored in the dataset)
        lines.append(f"  generated  in {meta['generation_seconds']:.1f} s (Beam pipeline {meta['pipeline_seconds']:.1f} s)")
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    from tfmusic.data import dmelodies

    try:
        meta = dmelodies.read_metadata(args.data_dir)
    except ValueError as err:
        raise CliError(str(err)) from None
    print(_summary(meta, args.data_dir))
    return 0


def _export_npz(args: argparse.Namespace) -> int:
    from tfmusic.data import dmelodies

    try:
        path = dmelodies.export_npz(args.out, compress=args.compress, limit=args.limit)
    except ValueError as err:
        raise CliError(str(err)) from None
    print(f"wrote {path}")
    return 0


def _export_midi(args: argparse.Namespace) -> int:
    from tfmusic.data import dmelodies

    indices = _parse_indices(args.indices)
    try:
        written = dmelodies.export_midi(indices, args.out, png=args.png, data_dir=args.data)
    except ValueError as err:
        raise CliError(str(err)) from None
    for p in written:
        print(f"wrote {p}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dmelodies", help="generate / inspect / export the dMelodies dataset",
        description="dMelodies: 1,354,752 two-bar melodies from 9 factors, generated in closed form.")
    sub = parser.add_subparsers(dest="dmelodies_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda _args: (parser.print_help(), 1)[1])

    gen = sub.add_parser(
        "generate", help="write the dataset as TFDS-loadable TFRecord shards (Beam job)",
        description="Generate dMelodies with Apache Beam into TFRecord shards per split "
        "(dmelodies-{train,validation,test}.tfrecord-XXXXX-of-YYYYY), plus dataset_info.json/features.json "
        "(tfds.builder_from_directory), vocabulary.json and metadata.json. Records of each split are in the "
        "reference loader's shuffled order. Unknown flags are passed to Beam, e.g. "
        "--direct_num_workers=2 --direct_running_mode=multi_processing.")
    gen.add_argument("--out", required=True, help="output directory (previous dMelodies outputs there are replaced)")
    gen.add_argument("--seed", type=int, default=0, help="split seed, as the reference loader's (default 0)")
    gen.add_argument("--num-shards", default=None,
                     help="shards per split as 'T,V,E' or 'train=T,validation=V,test=E' (default 16,4,2)")
    gen.add_argument("--limit", type=int, default=None,
                     help="only items with index < N (each keeps its full-dataset split and order)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    gen.set_defaults(handler=_generate, accepts_extra_args=True)

    info = sub.add_parser("info", help="summarize a generated dataset directory")
    info.add_argument("data_dir", help="directory written by 'tfmusic dmelodies generate'")
    info.set_defaults(handler=_info)

    npz = sub.add_parser(
        "export-npz", help="write the reference-compatible .npz",
        description="Write score_array, latent_array, note2index_dict, index2note_dict, latent_dicts and metadata "
        "in product order, as the reference dMelodies .npz (load with np.load(..., allow_pickle=True)).")
    npz.add_argument("--out", required=True, help="output .npz path")
    npz.add_argument("--compress", action="store_true", help="use np.savez_compressed")
    npz.add_argument("--limit", type=int, default=None, help="only the first N items")
    npz.set_defaults(handler=_export_npz)

    midi = sub.add_parser(
        "export-midi", help="write MIDI + MusicXML (and a PNG piano roll) of chosen items",
        description="Render items as MIDI and MusicXML through music21, optionally with one PNG piano roll. "
        "With --data the tokens are read from a generated dataset (and checked against the closed form).")
    midi.add_argument("--indices", required=True, help="comma-separated dataset indices, e.g. 0,1,2999")
    midi.add_argument("--out", required=True, help="output directory")
    midi.add_argument("--data", default=None, help="generated dataset directory to read the items from")
    midi.add_argument("--png", action="store_true", help="also draw dmelodies_pianoroll.png")
    midi.set_defaults(handler=_export_midi)
