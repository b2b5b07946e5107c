"""``trainer.mixed_precision: auto``: bfloat16 where the hardware computes it natively, else float32.

Why: on a CPU with AVX512_BF16 or AMX (oneDNN runs bf16 convolutions and matmuls natively) and on
GPUs of compute capability >= 8.0 (Ampere and newer: bf16 tensor cores), ``mixed_bfloat16`` trains
faster with float32 master weights and needs no loss scaling; elsewhere bf16 is emulated and slower.
The measured speed and loss of both policies are in bench/bench_training_precision.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True if ``/proc/cpuinfo`` (or the text given) lists AVX512_BF16 or AMX-BF16."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def gpus_have_native_bf16() -> bool | None:
    """True/False when there are GPUs (all of compute capability >= 8.0?), None without GPUs."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    capabilities = [tf.config.experimental.get_device_details(g).get("compute_capability") for g in gpus]
    return all(c is not None and tuple(c) >= (8, 0) for c in capabilities)


def resolve_policy(name: str) -> str:
    """``auto`` -> ``mixed_bfloat16`` or ``float32`` for this machine; other names pass through."""
    if name != "auto":
        return name
    gpu = gpus_have_native_bf16()
    native = gpu if gpu is not None else cpu_has_native_bf16()
    policy = "mixed_bfloat16" if native else "float32"
    log.info("mixed precision auto -> %s (%s)", policy, "GPUs" if gpu is not None else "CPU flags")
    return policy
