"""Beam entry point: render synthesized multitrack songs (MedleyDB layout) from MIDI arrangements.

    python beam_pipelines/synthesize_stems.py --out DIR --songs 12 [--seed 0] [--seconds 20] \
        [--sample-rate 44100] [--soundfont PATH] \
        [--direct_num_workers=2 --direct_running_mode=multi_processing | --runner=...]

On Dataflow (DIR and a --soundfont other than the bundled TimGM6mb on Cloud Storage)::

    python beam_pipelines/synthesize_stems.py --out gs://BUCKET/synth --songs 1000 \
        --runner=DataflowRunner --project=P --region=R --temp_location=gs://BUCKET/tmp --setup_file=./setup.py

Thin by design: identical to ``tfmusic data synthesize``; the job is the ``SynthesizeStems``
PTransform of ``tfmusic.data.synth`` (songs rendered and staged by workers, finalized together,
``synth_manifest.json`` written by the pipeline). Unknown flags are Beam pipeline options.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from tfmusic.cli.main import main as tfmusic_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return tfmusic_main(["data", "synthesize", *argv])


if __name__ == "__main__":
    sys.exit(main())
