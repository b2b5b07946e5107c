"""Beam entry point: generate dMelodies into TFDS-loadable TFRecord shards (local or gs://).

    python beam_pipelines/dmelodies.py --out gs://BUCKET/dmelodies [--seed 0] [--num-shards 16,4,2] \
        [--limit N] [--runner=DataflowRunner --project=P --region=R --temp_location=gs://BUCKET/tmp \
         --setup_file=./setup.py | --direct_num_workers=2 --direct_running_mode=multi_processing]

Thin by design: the same as ``tfmusic dmelodies generate``; the pipeline is
``tfmusic.data.dmelodies.GenerateDMelodies``. Unknown flags are Beam pipeline options.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from tfmusic.cli.main import main as tfmusic_main

    return tfmusic_main(["dmelodies", "generate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
