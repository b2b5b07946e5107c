"""Beam entry point: render synthesized multitrack songs (MedleyDB layout) from MIDI arrangements.

    python beam_pipelines/synthesize_stems.py --out DIR --songs 12 [--seed 0] [--seconds 20] \
        [--sample-rate 44100] [--direct_num_workers=2 --direct_running_mode=multi_processing | --runner=...]

Thin by design: identical to ``tfmusic data synthesize``; the pipeline lives in
``tfmusic.data.synth.synthesize``. Unknown flags are Beam pipeline options.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from tfmusic.cli.main import main as tfmusic_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return tfmusic_main(["data", "synthesize", *argv])


if __name__ == "__main__":
    sys.exit(main())
