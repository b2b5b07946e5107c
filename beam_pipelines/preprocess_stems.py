"""Beam entry point: multitrack dataset -> validated, labelled, split TFRecord segments.

    python beam_pipelines/preprocess_stems.py --input DIR --out DIR [--layout auto|musdb|medleydb|mixing_secrets|folder] \
        [--seed 0] [--splits 0.8,0.1,0.1] [--segment-seconds 10] [--pcm int16|float32] [--unknown-labels other|reject] \
        [--direct_num_workers=2 --direct_running_mode=multi_processing | --runner=...]

Thin by design: identical to ``tfmusic data preprocess``; the pipeline lives in
``tfmusic.data.stems.preprocess.preprocess``. Unknown flags are Beam pipeline options.
Writes DIR/stems-{train,valid,test}.tfrecord-*, DIR/manifest.json and DIR/rejects.jsonl.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from tfmusic.cli.main import main as tfmusic_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return tfmusic_main(["data", "preprocess", *argv])


if __name__ == "__main__":
    sys.exit(main())
