"""Beam entry point: multitrack dataset -> validated, labelled, split TFRecord segments.

    python beam_pipelines/preprocess_stems.py --input DIR --out DIR [--layout auto|musdb|medleydb|mixing_secrets|folder] \
        [--seed 0] [--splits 0.8,0.1,0.1] [--segment-seconds 10] [--pcm int16|float32] [--unknown-labels other|reject] \
        [--direct_num_workers=2 --direct_running_mode=multi_processing | --runner=...]

On Dataflow (input and output on Cloud Storage)::

    python beam_pipelines/preprocess_stems.py --input gs://BUCKET/medleydb --out gs://BUCKET/stems \
        --runner=DataflowRunner --project=P --region=R --temp_location=gs://BUCKET/tmp --setup_file=./setup.py

Thin by design: identical to ``tfmusic data preprocess``; the job is the ``PreprocessStems``
PTransform of ``tfmusic.data.stems.preprocess`` (per-song parts staged by workers, concatenated into
shards, finalized together; metadata written by the pipeline). Unknown flags are Beam pipeline options.
Writes DIR/stems-{train,valid,test}.tfrecord-*, DIR/rejects.jsonl and DIR/manifest.json (last).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from tfmusic.cli.main import main as tfmusic_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return tfmusic_main(["data", "preprocess", *argv])


if __name__ == "__main__":
    sys.exit(main())
