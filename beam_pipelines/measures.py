"""Beam job: music21 corpus files -> monophonic 4/4 bars -> measures TFRecords (spec B.3/B.4).

One element per corpus file (music21 package data, present on every worker). Output, local or on
any Beam filesystem (``gs://``...), in deterministic bytes: ``measures-{train,validation,test}
.tfrecord-00000-of-00001`` (tune-level splits; validation/test bars that repeat a training bar are
dropped), ``vocabulary.json`` and ``manifest.json`` (counts in / out / rejected with reasons,
combined in the pipeline and written after the shards are in place). ``--cache-dir`` (optional,
any filesystem) keeps each file's extracted bars so a re-run skips music21 parsing. Unknown flags
are passed to Beam (``--runner``, ``--direct_num_workers=2 --direct_running_mode=multi_processing``,
Dataflow flags). Same as ``tfmusic measures build``; the job is the ``BuildMeasures`` PTransform of
``tfmusic.data.measures``.

    python beam_pipelines/measures.py --out data/measures --collections oneills1850 --max-files 3
    python beam_pipelines/measures.py --out gs://BUCKET/measures --runner=DataflowRunner \\
        --project=PROJECT --region=REGION --temp_location=gs://BUCKET/tmp --setup_file=./setup.py
"""

from __future__ import annotations

import sys


def run(argv: list[str] | None = None) -> int:
    from tfmusic.cli.main import main as tfmusic_main

    return tfmusic_main(["measures", "build", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(run())
