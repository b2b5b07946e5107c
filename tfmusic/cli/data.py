"""`tfmusic data synthesize|preprocess|inspect`: the multitrack stems data layer.

  tfmusic data synthesize --out data/synth --songs 12 --seed 0
  tfmusic data preprocess --input data/synth --out data/stems
  tfmusic data inspect data/stems

Both Beam subcommands pass unknown flags to Beam, e.g.
``--direct_num_workers=2 --direct_running_mode=multi_processing`` to render on two cores, or
``--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp --setup_file=./setup.py``
with ``gs://`` paths for --input/--out (and --soundfont) to run on Dataflow.
"""

from __future__ import annotations

import argparse
import json

from tfmusic.cli.main import CliError


def add_synthesize_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``tfmusic data synthesize`` and ``beam_pipelines/synthesize_stems.py``."""
    parser.add_argument("--out", required=True, help="output folder (MedleyDB layout, one folder per song)")
    parser.add_argument("--songs", type=int, default=12, help="number of songs to render (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="seed; song i of seed s is always the same (default 0)")
    parser.add_argument("--seconds", type=float, default=20.0, help="song length in seconds (default 20)")
    parser.add_argument("--sample-rate", type=int, default=44100, choices=(22050, 44100),
                        help="output sample rate in Hz (default 44100)")
    parser.add_argument("--soundfont", metavar="PATH", action="append", default=None,
                        help="SoundFont 2 file to render with, local or gs://; repeat it to draw one per song "
                        "(default: Debian's fluid-soundfont-gm, /usr/share/sounds/sf2/FluidR3_GM.sf2, when "
                        "installed, else 'bundled': TimGM6mb.sf2 from pretty_midi, reproducible from pip alone)")
    parser.add_argument("--drum-soundfont", metavar="PATH", action="append", default=[],
                        help="drum kit that plays the drums of --drum-kit-share of the songs: a Hydrogen drumkit "
                        "folder of recorded samples (e.g. Debian's hydrogen-drumkits, /usr/share/hydrogen/data/"
                        "drumkits/ForzeeStereo) or a drum-only SoundFont (one preset, GM drum notes; e.g. "
                        "avldrums.lv2-soundfont); repeatable, one drawn per song")
    parser.add_argument("--drum-kit-share", type=float, default=0.5, metavar="P",
                        help="chance that a song's drums come from a --drum-soundfont kit rather than the song's "
                        "SoundFont (default 0.5)")
    parser.add_argument("--piano-samples", metavar="DIR", action="append", default=[],
                        help="recorded multi-sampled piano that plays the piano of --piano-sample-share of the songs: "
                        "a folder of <note><octave>v<layer> files with samples.json (the Salamander Grand Piano "
                        "that `make sample-sets` unpacks); repeatable, one drawn per song")
    parser.add_argument("--piano-sample-share", type=float, default=0.5, metavar="P",
                        help="chance that a song's piano comes from a --piano-samples set (default 0.5)")
    parser.add_argument("--mixing", choices=("standard", "holdout", "dry"), default="standard",
                        help="per-stem production chain: standard (EQ, compression, reverb, panning, loudness; "
                        "training data), holdout (effects and ranges standard never uses: for measuring how "
                        "models meet another production style) or dry (gain and pan only) (default standard)")
    parser.add_argument("--genres", default=None, metavar="G1,G2",
                        help="composed styles to draw from (default: all of rock, pop, funk, disco, hiphop, jazz, "
                        "ballad, reggae, metal, folk)")
    parser.add_argument("--chorale-share", type=float, default=0.25, metavar="P",
                        help="share of songs arranged from music21's Bach chorales instead of composed (default 0.25)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_preprocess_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``tfmusic data preprocess`` and ``beam_pipelines/preprocess_stems.py``."""
    from tfmusic.data.stems.taxonomy import UNKNOWN_POLICIES

    parser.add_argument("--input", required=True, help="dataset root folder")
    parser.add_argument("--layout", default="auto", choices=("auto", "musdb", "medleydb", "mixing_secrets", "folder"),
                        help="input layout (default: auto-detect)")
    parser.add_argument("--out", required=True, help="output folder: TFRecord shards, manifest.json, rejects.jsonl")
    parser.add_argument("--seed", type=int, default=0, help="seed of the song-level split (default 0)")
    parser.add_argument("--splits", default="0.8,0.1,0.1", metavar="TRAIN,VALID,TEST",
                        help="split shares (default 0.8,0.1,0.1; MUSDB's test subset always stays test)")
    parser.add_argument("--segment-seconds", type=float, default=10.0,
                        help="stored segment length; training crops must not be longer (default 10)")
    parser.add_argument("--pcm", choices=("int16", "float32"), default="int16", help="sample format stored (default int16)")
    parser.add_argument("--unknown-labels", choices=UNKNOWN_POLICIES, default="other",
                        help="unknown instrument labels: map to 'other' (counted) or reject the stem (default other)")
    parser.add_argument("--length-tolerance", type=float, default=0.01, metavar="SECONDS",
                        help="largest allowed length difference between a song's files (default 0.01 s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise CliError(f"--splits wants three non-negative shares like 0.8,0.1,0.1, got {text!r}")
    return values  # type: ignore[return-value]


def run_synthesize(args: argparse.Namespace) -> int:
    from tfmusic.data import synth

    try:
        manifest = synth.synthesize(args.out, args.songs, seed=args.seed, seconds=args.seconds,
                                    sample_rate=args.sample_rate, beam_args=getattr(args, "extra_args", []),
                                    progress=not args.quiet, soundfonts=args.soundfont,
                                    drum_soundfonts=args.drum_soundfont, mixing=args.mixing,
                                    genres=[g.strip() for g in args.genres.split(",") if g.strip()]
                                    if args.genres else None, chorale_share=args.chorale_share,
                                    drum_kit_share=args.drum_kit_share, pianos=args.piano_samples,
                                    piano_sample_share=args.piano_sample_share)
    except ValueError as err:
        raise CliError(str(err)) from err
    if "template_location" in manifest:
        print(f"Dataflow template written to {manifest['template_location']} (the job writes {manifest['out']} "
              "when launched)")
        return 0
    print(json.dumps({k: manifest[k] for k in ("counts", "songs_per_instrument", "wall_seconds")}, indent=1))
    return 0 if manifest["counts"]["written"] else 1


def run_preprocess(args: argparse.Namespace) -> int:
    from tfmusic.data.stems.layouts import LayoutError
    from tfmusic.data.stems.preprocess import PreprocessConfig, preprocess

    fractions = parse_fractions(args.splits)
    import math

    if not (math.isfinite(args.segment_seconds) and args.segment_seconds > 0):
        raise CliError(f"--segment-seconds must be a finite number of seconds > 0, got {args.segment_seconds}")
    if not (math.isfinite(args.length_tolerance) and args.length_tolerance >= 0):
        raise CliError(f"--length-tolerance must be a finite number of seconds >= 0, got {args.length_tolerance}")
    try:
        config = PreprocessConfig(segment_seconds=args.segment_seconds, pcm_dtype=args.pcm,
                                  length_tolerance_seconds=args.length_tolerance)
        manifest = preprocess(args.input, args.out, layout=args.layout, seed=args.seed, fractions=fractions,
                              config=config, unknown_policy=args.unknown_labels,
                              beam_args=getattr(args, "extra_args", []), progress=not args.quiet)
    except (LayoutError, ValueError) as err:
        raise CliError(str(err)) from err
    if "template_location" in manifest:
        print(f"Dataflow template written to {manifest['template_location']} (the job writes {manifest['out']} "
              "when launched)")
        return 0
    print(summarize(manifest))
    return 0 if manifest["counts"]["songs"]["written"] else 1


def summarize(manifest: dict) -> str:
    """Human-readable manifest summary (what ``inspect`` prints)."""
    c = manifest["counts"]
    lines = [
        f"stems dataset: {manifest['input']} (layout {manifest['layout']} -> {', '.join(manifest['detected_layouts'])})",
        f"  {manifest['config']['sample_rate']} Hz, {manifest['config']['pcm_dtype']}, segments of "
        f"{manifest['segment_samples']} samples / {manifest['segment_frames']} label frames, seed {manifest['seed']}",
        f"  songs  in {c['songs']['in']} = written {c['songs']['written']} + rejected {c['songs']['rejected']}",
        f"  stems  in {c['stems']['in']} = written {c['stems']['written']} + rejected {c['stems']['rejected']}",
        f"  segments {c['segments']}",
    ]
    if c["reject_reasons"]:
        lines.append("  reject reasons: " + "; ".join(f"{r} x{n}" for r, n in c["reject_reasons"].items()))
    if manifest["unknown_labels"]:
        lines.append(f"  unknown labels (policy {manifest['unknown_label_policy']}): "
                     + ", ".join(f"{k!r} x{v}" for k, v in manifest["unknown_labels"].items()))
    header = f"  {'split':<6} {'songs':>5} {'segs':>5} {'seconds':>8}  " + " ".join(
        f"{i[:10]:>10}" for i in manifest["instruments"])
    lines += ["", header + "   (per instrument: songs / active seconds)"]
    rank = {"train": 0, "valid": 1, "test": 2}  # the manifest stores splits with sorted keys
    for split, s in sorted(manifest["splits"].items(), key=lambda kv: rank.get(kv[0], len(rank))):
        cells = " ".join(f"{s['instruments'][i]['songs']:>3}/{s['instruments'][i]['active_seconds']:>6.1f}"
                         for i in manifest["instruments"])
        lines.append(f"  {split:<6} {s['songs']:>5} {s['segments']:>5} {s['seconds']:>8.1f}  {cells}")
    if "wall_seconds" in manifest:  # this run's (not stored in the manifest file)
        lines.append(f"  wall time {manifest['wall_seconds']} s")
    return "\n".join(lines)


def run_inspect(args: argparse.Namespace) -> int:
    from tfmusic.data.stems.splits import read_manifest

    if args.taxonomy:
        from tfmusic.data.stems.taxonomy import describe_table

        print(describe_table())
        return 0
    if not args.data_dir:
        raise CliError("give the preprocessed data folder (or --taxonomy)")
    try:
        manifest = read_manifest(args.data_dir)
    except ValueError as err:
        raise CliError(str(err)) from err
    if args.json:
        print(json.dumps({k: v for k, v in manifest.items() if k != "songs"}, indent=1))
    else:
        print(summarize(manifest))
        if args.songs:
            for sid, info in manifest["songs"].items():
                extra = f"  ({info['reason']})" if info.get("reason") else ""
                print(f"  {info['split']:<5} {info['status']:<8} {sid}: {', '.join(info['instruments'])}{extra}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="multitrack stems: synthesize, preprocess to TFRecords, inspect",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p = sub.add_parser("synthesize", help="render MIDI arrangements to per-instrument stems (Beam)",
                       description="Render N songs (composed in ten popular styles or arranged from music21 Bach "
                       "chorales, humanized, rendered with GM SoundFonts via midirenderer and mixed with per-stem "
                       "EQ/compression/reverb/panning/loudness) into a MedleyDB-style folder (local or gs://) with "
                       "stems, mixture, MIDI and metadata YAML. Unknown flags are Beam options.")
    add_synthesize_arguments(p)
    p.set_defaults(handler=run_synthesize, accepts_extra_args=True)
    p = sub.add_parser("preprocess", help="validate, label and segment a multitrack dataset into TFRecords (Beam)",
                       description="Read MUSDB18-HQ, MedleyDB, Mixing Secrets or track-folder data, resample to "
                       "44.1 kHz, check alignment, compute MedleyDB activity labels, split by song and write "
                       "TFRecord segments + manifest.json + rejects.jsonl. Unknown flags are Beam options.")
    add_preprocess_arguments(p)
    p.set_defaults(handler=run_preprocess, accepts_extra_args=True)
    p = sub.add_parser("inspect", help="print the summary of a preprocessed stems folder")
    p.add_argument("data_dir", nargs="?", help="output folder of `tfmusic data preprocess`")
    p.add_argument("--songs", action="store_true", help="also list every song with its split and instruments")
    p.add_argument("--json", action="store_true", help="print the manifest (without per-song entries) as JSON")
    p.add_argument("--taxonomy", action="store_true", help="print the instrument label table instead")
    p.set_defaults(handler=run_inspect)
    parser.set_defaults(handler=lambda args: parser.print_help() or 1)
