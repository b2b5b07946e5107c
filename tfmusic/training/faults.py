"""Named fault-injection points, so kill tests hit "during a checkpoint write" exactly, not by luck.

``TFMUSIC_FAULT_POINT=NAME[:N]`` makes the N-th (default first) pass through :func:`point` with that
name SIGKILL its own process: no ``finally``, no flush, no atexit, as after ``kill -9`` or an
out-of-memory kill. Unset (always, outside tests), a point costs one environment lookup.

The points the trainer passes, in the order one step meets them:

- ``train-step``: the step's update is computed; the loop has not recorded it.
- ``best-write``: the best model's checkpoint files are written; its pointer file is not.
- ``checkpoint-write``: the full checkpoint's files are written; the ``checkpoint`` pointer is not.
- ``model-export``: ``model.keras`` is written to its temporary name; not yet renamed into place.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

ENV = "TFMUSIC_FAULT_POINT"
POINTS = ("train-step", "best-write", "checkpoint-write", "model-export")
_hits: Counter = Counter()


def point(name: str) -> None:
    """SIGKILL this process if ``TFMUSIC_FAULT_POINT`` names this point and this is the chosen pass."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, _, nth = spec.partition(":")
    if wanted != name:
        return
    _hits[name] += 1
    if _hits[name] == int(nth or 1):
        sys.stderr.write(f"fault injected: SIGKILL at {name} (pass {_hits[name]})\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ENV", "POINTS", "point"]
