"""Beam entry point: generate dMelodies into TFDS-loadable TFRecord shards.

    python beam_pipelines/dmelodies.py --out DIR [--seed 0] [--num-shards 16,4,2] [--limit N] \
        [--direct_num_workers=2 --direct_running_mode=multi_processing | --runner=...]

Thin by design: the pipeline lives in ``tfmusic.data.dmelodies.generate`` (same as
``tfmusic dmelodies generate``); unknown flags are Beam pipeline options.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument("--num-shards", default=None, help="'T,V,E' or 'train=T,validation=V,test=E'")
    parser.add_argument("--limit", type=int, default=None, help="only items with index < N")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args, beam_args = parser.parse_known_args(argv)

    from tfmusic.data import dmelodies

    try:
        meta = dmelodies.generate(args.out, seed=args.seed, num_shards=dmelodies.parse_num_shards(args.num_shards),
                                  limit=args.limit, beam_args=beam_args,
                                  progress=False if args.quiet else None)
    except ValueError as err:
        parser.error(str(err))
    print(json.dumps({k: meta[k] for k in ("num_items", "counts", "generation_seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
