"""Open-Unmix's bidirectional LSTM, forward + backward, Keras ways vs PyTorch (issue 16, item 5).

One Open-Unmix LSTM layer at training size: input 512, 256 units per direction, batch 4 x 255
frames (6 s). Sides, interleaved, best of ``TFMUSIC_BENCH_REPEATS`` (3), 2 threads each:
- ``loop``: ``TorchLSTM``'s own call (hoisted input projection, one while loop), as inference runs it;
- ``unroll``: the same layer with ``unroll=True`` (255 steps in the graph, no while loop);
- ``xla``: ``loop`` inside ``tf.function(jit_compile=True)``;
- ``fused``: the trainer's fused recurrence (``tfmusic.training.fused_lstm``: both directions in one
  XLA loop, analytic backward), what Open-Unmix trains with;
- PyTorch ``nn.LSTM`` (bidirectional), the reference; gradients of the same sum-of-squares loss.
All Keras variants compute the same maths with the same weights (checked: max |diff| of the
outputs and gradients against ``loop`` is reported, absolute and relative to each tensor's scale);
the fused row is met only when it is as fast as PyTorch and within ``SAME_MATHS`` of the loop.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from timing import interleaved, load_note, overloaded

BATCH, FRAMES, FEATURES, UNITS = 4, 255, 512, 256
SAME_MATHS = 1e-4  # largest |diff| vs the loop, relative to the loop tensor's largest value: float32 order only


def run(out_dir: Path) -> list[dict]:
    import keras
    import tensorflow as tf

    from tfmusic.models.layers import TorchLSTM
    from tfmusic.training.fused_lstm import fuse_lstms

    try:
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    repeats = int(os.environ.get("TFMUSIC_BENCH_REPEATS", 3))
    x = tf.constant(np.random.default_rng(0).standard_normal((BATCH, FRAMES, FEATURES)).astype(np.float32))

    def layer(unroll: bool):
        keras.utils.set_random_seed(0)
        lstm = keras.layers.Bidirectional(TorchLSTM(UNITS, return_sequences=True, unroll=unroll))
        lstm(x[:, :4])
        return lstm

    layers = {"loop": layer(False), "unroll": layer(True), "fused": layer(False)}
    for k in ("unroll", "fused"):
        layers[k].set_weights(layers["loop"].get_weights())
    fuse_lstms([layers["fused"]])

    def grad_fn(lstm, jit: bool):
        @tf.function(jit_compile=jit)
        def f(inputs):
            with tf.GradientTape() as tape:
                y = lstm(inputs, training=True)
                loss = tf.reduce_sum(tf.square(y))
            return y, tape.gradient(loss, lstm.trainable_variables)
        return f

    fns = {"loop": grad_fn(layers["loop"], False), "unroll": grad_fn(layers["unroll"], False),
           "xla": grad_fn(layers["loop"], True), "fused": grad_fn(layers["fused"], False)}
    outs = {k: f(x) for k, f in fns.items()}

    def gaps(k):
        """(max |diff|, max |diff| / the loop tensor's max |value|) over outputs and gradients."""
        pairs = list(zip([outs[k][0], *outs[k][1]], [outs["loop"][0], *outs["loop"][1]]))
        absolute = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in pairs]
        scales = [max(float(np.max(np.abs(np.asarray(b)))), 1e-6) for _, b in pairs]
        return max(absolute), max(d / s for d, s in zip(absolute, scales))

    diffs = {k: gaps(k) for k in ("unroll", "xla", "fused")}

    sides = {k: (lambda f=f: [t.numpy() for t in f(x)[1]]) for k, f in fns.items()}
    try:
        import torch

        torch.set_num_threads(2)
        ref = torch.nn.LSTM(FEATURES, UNITS, batch_first=True, bidirectional=True)
        tx = torch.from_numpy(x.numpy())

        def torch_side():
            ref.zero_grad()
            y, _ = ref(tx)
            (y ** 2).sum().backward()

        sides["pytorch"] = torch_side
    except ImportError:
        pass
    best, loads = interleaved(sides, repeats)
    rows = []
    reference = best.get("pytorch")
    what = {"fused": "the layer Open-Unmix trains with (trainer.fused_lstm, the default)",
            "loop": "Keras' while loop, as inference and exports run it",
            "unroll": "what training ran with trainer.fused_lstm=false"}
    for k in ("fused", "loop", "unroll", "xla"):
        same = k not in diffs or diffs[k][1] <= SAME_MATHS
        if k != "fused":
            met = None
        elif not same:  # faster at other maths is not a result
            met = False
        else:
            met = (reference / best[k] >= 1.0) if reference and not overloaded(loads) else None
        rows.append({
            "what": f"Open-Unmix BiLSTM layer fwd+bwd ({k}) vs PyTorch nn.LSTM, batch {BATCH} x {FRAMES} frames",
            "ours": best[k], "reference": reference, "unit": "s", "ratio": reference / best[k] if reference else None,
            "target": f">= 1.0, outputs and gradients within {SAME_MATHS:.0e} of the loop's scale" if k == "fused"
                      else "informative",
            "met": met,
            "notes": "; ".join([what.get(k, "the loop XLA-compiled"), *(
                [f"max |diff| vs loop {diffs[k][0]:.1e} = {diffs[k][1]:.1e} of scale (outputs and gradients)"
                 + ("" if same else " (NOT THE SAME MATHS)")] if k in diffs else []),
                load_note(loads)])})
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run(Path(".")):
        print(row)
