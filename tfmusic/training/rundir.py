"""Where a run directory may live, checked before anything is created.

Why local only: the trainer, its checkpoints keeper and the tasks write the run directory with
``pathlib``, and ``pathlib.Path("gs://bucket/run")`` silently becomes the local folder
``gs:/bucket/run``. TensorFlow 2.21 does ship a ``gs://`` filesystem, but its endpoints are fixed
(``https://www.googleapis.com/storage/v1/`` and ``storage.googleapis.com`` in
``tsl/platform/cloud/gcs_file_system.cc``; no environment variable such as
``STORAGE_EMULATOR_HOST`` redirects it), so it cannot be exercised against a Cloud Storage
emulator and writing runs there would ship untested. Other schemes (``s3``, ``hdfs``, ``az``)
have no TensorFlow 2.21 filesystem at all. So any ``scheme://`` run directory fails fast.
"""

from __future__ import annotations

import os
import re

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def check_run_dir(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` for a run directory that is not a local path (see the module doc)."""
    text = os.fspath(path)
    match = _SCHEME.match(text)
    if match is None or match.group(1).lower() == "file":
        return
    scheme = match.group(1).lower()
    why = ("TensorFlow's gs:// filesystem cannot be pointed at a Cloud Storage emulator, so tfmusic "
           "does not write runs there untested" if scheme == "gs" else
           f"TensorFlow 2.21 has no {scheme}:// filesystem")
    raise ValueError(
        f"{text}: run directories must be local folders ({why}); train into a local folder or a "
        "mounted bucket (e.g. gcsfuse) and copy the run afterwards, e.g. gsutil -m cp -r RUN gs://BUCKET/"
    )


__all__ = ["check_run_dir"]
