"""Beam job: music21 corpus files -> monophonic 4/4 bars -> measures TFRecords (spec B.3/B.4).

One element per corpus file; each file's bars are cached as JSON (``--cache-dir``), so a re-run
skips music21 parsing. Output (deterministic bytes): ``measures-{train,validation,eval,test}
.tfrecord-00000-of-00001``, ``vocabulary.json`` and ``manifest.json`` (counts in / out /
rejected with reasons). Unknown flags are passed to Beam (e.g. ``--runner``,
``--direct_num_workers=2 --direct_running_mode=multi_processing``). Same as
``tfmusic measures build``; the logic lives in ``tfmusic.data.measures``.

    python beam_pipelines/measures.py --out data/measures --collections oneills1850 --max-files 3
"""

from __future__ import annotations

import argparse
import json
import sys

from tfmusic.cli.datasets import add_measures_build_arguments, run_measures_build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_measures_build_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    try:
        manifest = run_measures_build(args, beam_args)
    except ValueError as err:
        parser.error(str(err))
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
