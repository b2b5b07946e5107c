"""Training step speed by precision and by trainer option, both sides in one run, interleaved.

Rows (ratio = reference time / ours, > 1 means ours is faster):
- IASS training step (batch ``TFMUSIC_BENCH_BATCH`` = 4 x 6 s mono, MSE + 2 x BCE, AdamW):
  ``mixed_bfloat16`` vs ``float32``, and the loss after the same ``K`` steps on the same fixed batch
  from the same initial weights (``K`` = ``TFMUSIC_BENCH_LOSS_STEPS``, default 8).
- Open-Unmix training step (batch 4 x 6 s stereo, default size): the same two rows.
- IASS and Open-Unmix training step (fp32) with the task's training STFT by FFT (the default) vs the
  exportable DFT basis (what training used before).
- IASS training step (fp32 and bf16) with BatchNorm by TF's fused kernel (``trainer.fused_batchnorm``,
  the default, applied to every other row's tasks as the trainer does, like ``trainer.fused_lstm``) vs Keras' own.
- IASS training step (fp32, same batch) with ``trainer.recompute`` (the U-Net blocks' activations
  recomputed in the backward pass, the trainer default; memory in bench_memory.py) vs without.
- XLA (``jit_compile``) and ``steps_per_execution=4`` vs the plain trainer step (small UMX, 1 s).

Each step is the task's own ``train_step`` in a ``tf.function`` (what the trainer runs per replica).
Threads: TF intra-op and inter-op pools fixed to 2 / 1 for both sides. The machine is shared: each
row carries the 1-minute load average seen by each side, flagged when they differ.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from timing import interleaved, load_note, overloaded, trainer_step_seconds

SR = 44100


def _pin_threads() -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised by an earlier bench in this process
        pass


def _task(model: str, channels: int, seconds: float, batch: int, policy: str, kwargs: dict | None = None,
          trainer: dict | None = None):
    """A built SeparationTask on one fixed synthetic batch under ``policy``; returns (task, batch tensors)."""
    import keras
    import tensorflow as tf

    from tfmusic.training.config import TrainerConfig
    from tfmusic.training.separation import SeparationConfig, SeparationTask
    from tfmusic.training.strategies import make_strategy
    from tfmusic.training.task import TaskContext

    samples = int(seconds * SR)
    frames = 1 + (samples - 4096) // 1024
    rng = np.random.default_rng(0)
    mix = rng.normal(scale=0.1, size=(batch, channels, samples)).astype(np.float32)
    data = (mix, 0.5 * mix, (rng.random((batch, frames)) > 0.5).astype(np.float32))
    config = SeparationConfig(model=model, nb_channels=channels, segment_seconds=seconds,
                              model_kwargs=dict(kwargs or {}), eval_split=None,
                              trainer=TrainerConfig(batch_size=batch, **(trainer or {})))
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        task = SeparationTask(config)
        task.bind(TaskContext(strategy=make_strategy("default"), batch_size=batch, seed=0, deterministic=False,
                              progress=False))
        task.build()
        task.model.set_input_statistics(np.zeros(2049), np.ones(2049))
        from tfmusic.training.rewrites import apply_rewrites

        # the trainer's fused BatchNorm, LSTM and Adam, as configured (recompute: its own row below)
        apply_rewrites(config.trainer, task.checkpoint_items().values())
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return task, tuple(tf.constant(x) for x in data)


def _precision_rows(name: str, model: str, channels: int, batch: int, repeats: int, loss_steps: int) -> list[dict]:
    tasks = {p: _task(model, channels, 6.0, batch, p) for p in ("float32", "mixed_bfloat16")}
    tasks["mixed_bfloat16"][0].model.set_weights(tasks["float32"][0].model.get_weights())  # same start
    best, loads, losses = _interleaved_steps(tasks, repeats, total_steps=loss_steps)
    fp32, bf16 = best["float32"], best["mixed_bfloat16"]
    l32, l16 = losses["float32"][-1], losses["mixed_bfloat16"][-1]
    return [{
        "what": f"{name} training step, batch {batch} x 6 s, mixed_bfloat16 vs float32",
        "ours": bf16, "reference": fp32, "unit": "s/step", "ratio": fp32 / bf16,
        "target": ">= 1.5x, loss within 5%" if model == "iass" else "informative (loss within 5%)",
        "met": False if abs(l16 - l32) > 0.05 * abs(l32) else
               (fp32 / bf16 >= 1.5 if model == "iass" and not overloaded(loads) else None),
        "notes": f"loss after {len(losses['float32'])} steps on one fixed batch from the same weights: "
                 f"bf16 {l16:.5g} vs fp32 {l32:.5g}; {load_note(loads)}"}]


def _interleaved_steps(tasks: dict, repeats: int, total_steps: int = 0) -> tuple[dict, dict, dict]:
    """Each task's ``train_step`` (in a ``tf.function``) on its own fixed batch, sides interleaved, then
    more steps until each side took ``total_steps``; returns (best seconds, loads, losses per call)."""
    import tensorflow as tf

    steps = {n: tf.function(t.train_step) for n, (t, _) in tasks.items()}
    losses: dict[str, list[float]] = {n: [] for n in tasks}

    def side(n):
        return lambda: losses[n].append(float(steps[n](tasks[n][1])["loss"]))

    best, loads = interleaved({n: side(n) for n in tasks}, repeats)
    for n in tasks:
        while len(losses[n]) < total_steps:
            side(n)()
    return best, loads, losses


def _recompute_row(batch: int, repeats: int) -> list[dict]:
    """IASS fp32 step with the blocks recomputed vs plain, interleaved; the losses must agree."""
    from tfmusic.training.recompute import recompute_layers

    tasks = {n: _task("iass", 1, 6.0, batch, "float32") for n in ("plain", "recompute")}
    tasks["recompute"][0].model.set_weights(tasks["plain"][0].model.get_weights())
    recompute_layers(tasks["recompute"][0].recompute_layers())
    best, loads, losses = _interleaved_steps(tasks, repeats)
    # the first step starts from equal weights: its loss must agree; later ones drift by round-off through Adam
    f0, f1 = losses["plain"][0], losses["recompute"][0]
    same = abs(f1 - f0) <= 1e-5 * abs(f0)
    l0, l1 = losses["plain"][-1], losses["recompute"][-1]
    return [{
        "what": f"IASS training step, batch {batch} x 6 s, fp32: blocks recomputed (trainer default) vs not",
        "ours": best["recompute"], "reference": best["plain"], "unit": "s/step", "ratio": best["plain"] / best["recompute"],
        "target": "informative: the price of batch 16 in < 8 GB (expected ~0.75x: one more forward of the blocks)",
        "met": False if not same else None,
        "notes": f"first-step loss {f1:.7g} vs {f0:.7g} ({'same' if same else 'DIFFERENT'}); after "
                 f"{len(losses['plain'])} steps {l1:.7g} vs {l0:.7g}; {load_note(loads)}"}]


def _faster_row(what: str, tasks: dict, reference: str, ours: str, repeats: int, tolerance: float, notes: str) -> dict:
    """``ours`` vs ``reference`` (two built tasks, same start weights), interleaved; met when ours is faster
    and the first step's losses (equal weights) agree within ``tolerance`` (relative); later losses drift by
    round-off compounded through Adam and are reported."""
    tasks[ours][0].model.set_weights(tasks[reference][0].model.get_weights())
    best, loads, losses = _interleaved_steps(tasks, repeats)
    f0, f1 = losses[reference][0], losses[ours][0]
    l0, l1 = losses[reference][-1], losses[ours][-1]
    ratio = best[reference] / best[ours]
    close = abs(f1 - f0) <= tolerance * abs(f0)
    return {"what": what, "ours": best[ours], "reference": best[reference], "unit": "s/step", "ratio": ratio,
            "target": f"> 1x, first-step loss within {tolerance:.0e}",
            "met": False if not close else (None if overloaded(loads) else ratio > 1.0),
            "notes": f"{notes}; first-step loss {f1:.7g} vs {f0:.7g}, after {len(losses[ours])} steps {l1:.7g} vs "
                     f"{l0:.7g}; {load_note(loads)}"}


def _fused_norm_rows(batch: int, repeats: int) -> list[dict]:
    """IASS step with BatchNorm by TF's fused kernel (trainer default) vs Keras' own, per precision."""
    return [_faster_row(f"IASS training step, batch {batch} x 6 s, {policy}: fused BatchNorm (trainer default) vs "
                        "Keras'", {n: _task("iass", 1, 6.0, batch, policy, trainer={"fused_batchnorm": n == "fused"})
                                   for n in ("keras", "fused")}, "keras", "fused", repeats,
                        # fp32: the fused kernel's float32 statistics over 1.5 M values per channel round differently
                        # (max |error| vs float64 1.3e-3 vs Keras' 4.6e-4 at the first block); bf16: ~3 digits
                        1e-3 if policy == "float32" else 5e-3,
                        "trainer.fused_batchnorm (the same formula, float32 reductions in another order)")
            for policy in ("float32", "mixed_bfloat16")]


def _train_stft_rows(batch: int, repeats: int) -> list[dict]:
    """fp32 step with the task's training STFT by FFT (the default) vs the exportable DFT basis."""
    from tfmusic.audio.stft import ISTFT, STFT

    rows = []
    for name, model, channels in (("IASS", "iass", 1), ("Open-Unmix", "umx", 2)):
        tasks = {n: _task(model, channels, 6.0, batch, "float32") for n in ("dft", "fft")}
        old = tasks["dft"][0]
        old.stft = STFT(old.stft.n_fft, old.stft.hop_length, center=False, dtype="float32")
        old.istft = ISTFT(old.istft.n_fft, old.istft.hop_length, center=False, dtype="float32")
        rows.append(_faster_row(f"{name} training step, batch {batch} x 6 s, fp32: training STFT by FFT (default) "
                                "vs DFT basis", tasks, "dft", "fft", repeats, 1e-4,
                                "the spectra of mixture and target per step (no gradient flows through them)"))
    return rows


def _trainer_step_seconds(trainer: dict, steps: int) -> float:
    """Seconds per step of ``Trainer.fit`` on a small UMX (``timing.trainer_step_seconds``: the trainer's own
    throughput meter, tracing and XLA compilation left out)."""
    import tensorflow as tf

    task, data = _task("umx", 2, 1.0, 4, "float32", dict(hidden_size=64, nb_layers=1),
                       dict(log_every=steps, eval_every=10**6, summaries=False, grad_norm=False, **trainer))
    task.train_dataset = lambda: tf.data.Dataset.from_tensors(data).repeat()
    task.eval_dataset = lambda: None
    task.prepare = lambda: None
    return trainer_step_seconds(task, steps)


def _option_rows(k: int) -> list[dict]:
    """Steady-state step time, plain vs each option; sides interleaved. (fit(2k) - fit(k)) / k was
    tried first: each fit traces (and compiles) anew, and that varied by more than k steps cost
    (the dry run's differences came out negative)."""
    options = {"plain": {}, "jit_compile": {"jit_compile": True}, "steps_per_execution=4": {"steps_per_execution": 4}}
    times: dict[str, list[float]] = {n: [] for n in options}

    def side(n):
        return lambda: times[n].append(_trainer_step_seconds(options[n], k))

    _, loads = interleaved({n: side(n) for n in options}, 1, warmup=False)
    plain = times["plain"][0]
    rows = []
    for n in ("jit_compile", "steps_per_execution=4"):
        ours = times[n][0]
        rows.append({"what": f"trainer step with {n} vs plain (small UMX, batch 4 x 1 s stereo, CPU)",
                     "ours": ours, "reference": plain, "unit": "s/step", "ratio": plain / ours,
                     "target": "informative on CPU (GPU: see docs/PERFORMANCE.md)", "met": None,
                     "notes": f"the trainer's throughput meter over {k} steps (first call, with its trace, "
                              f"excluded); {load_note({'plain': loads['plain'], n: loads[n]})}"})
    return rows


def run(out_dir: Path) -> list[dict]:
    _pin_threads()
    batch = int(os.environ.get("TFMUSIC_BENCH_BATCH", 4))
    repeats = int(os.environ.get("TFMUSIC_BENCH_REPEATS", 3))
    loss_steps = int(os.environ.get("TFMUSIC_BENCH_LOSS_STEPS", 8))
    rows: list[dict] = []
    parts = [lambda: _precision_rows("IASS", "iass", 1, batch, repeats, loss_steps),
             lambda: _train_stft_rows(batch, repeats),
             lambda: _fused_norm_rows(batch, repeats),
             lambda: _recompute_row(batch, repeats),
             lambda: _precision_rows("Open-Unmix", "umx", 2, batch, repeats, loss_steps),
             lambda: _option_rows(int(os.environ.get("TFMUSIC_BENCH_OPTION_STEPS", 20)))]
    for part in parts:
        new = part()
        for row in new:  # as soon as measured: a slow shared machine may stop the run before the end
            print("   partial:", row, flush=True)
        rows += new
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run(Path(".")):
        print(row)
