"""Small layers shared by the separation models (keras.ops only, serializable)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = ["MedianFilter", "TorchLSTM", "TorchLSTMCell", "median_filter_time", "prepare_statistics"]


def median_filter_time(x, window: int = 21):
    """Median over a centred window along axis 1 of ``(batch, time)``, 'same' length, reflect padding.

    The IASS activity smoother (A.4): 21 frames is about 0.49 s at 44.1 kHz / hop 1024. Built from
    ``window`` shifted slices and a sort, so it is exact for any values, not only 0/1. Reflect padding
    needs more than ``window // 2`` frames.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"median window must be a positive odd number of frames, got {window}")
    if window == 1:
        return x
    half = window // 2
    frames = x.shape[1]
    if frames is not None and frames <= half:
        raise ValueError(
            f"median filter over {window} frames needs more than {half} frames (reflect padding), got {frames}"
        )
    padded = ops.pad(x, [[0, 0], [half, half]], mode="reflect")
    shifted = [padded[:, i : (i - 2 * half) or None] for i in range(window)]
    stacked = ops.stack(shifted, axis=-1)
    return ops.sort(stacked, axis=-1)[..., half]


@keras.saving.register_keras_serializable(package="tfmusic")
class MedianFilter(keras.layers.Layer):
    """Layer form of :func:`median_filter_time` for ``(batch, time)`` curves."""

    def __init__(self, window: int = 21, **kwargs) -> None:
        super().__init__(**kwargs)
        if window < 1 or window % 2 == 0:
            raise ValueError(f"median window must be a positive odd number of frames, got {window}")
        self.window = int(window)

    def call(self, x):
        return median_filter_time(x, self.window)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(window=self.window)
        return config


def prepare_statistics(mean, std, n_bins: int, max_bin: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate per-bin mean/std (length ``n_bins`` or ``max_bin``), crop to ``max_bin``, floor std.

    The std floor (1e-4 x the largest std, as the reference scaler) keeps silent high bins from
    blowing up the standardized input.
    """
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    for name, arr in (("mean", mean), ("std", std)):
        if arr.shape[0] not in (n_bins, max_bin):
            raise ValueError(f"input {name} must have {n_bins} or {max_bin} bins, got {arr.shape[0]}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"input {name} contains non-finite values")
    mean, std = mean[:max_bin], std[:max_bin]
    if np.max(std) <= 0:
        raise ValueError("input std is zero everywhere (silent training data?)")
    std = np.maximum(std, 1e-4 * np.max(std))
    return mean.astype(np.float32), std.astype(np.float32)


@keras.saving.register_keras_serializable(package="tfmusic")
class TorchLSTMCell(keras.layers.LSTMCell):
    """LSTM cell with separate input and recurrent biases, as PyTorch's ``nn.LSTM``.

    The sum is what the maths uses (``bias`` is a property returning it), so Keras' cuDNN path
    and :meth:`TorchLSTM.inner_loop`'s hoisted input projection use one bias; keeping both vectors makes the parameter count and a PyTorch
    ``state_dict`` map one to one (Open-Unmix: 8,893,348 parameters). Gate order i, f, c, o is the
    same in both frameworks.
    """

    def build(self, input_shape):
        keras.layers.Layer.build(self, input_shape)
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(input_dim, self.units * 4),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units * 4),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            units = self.units
            base = self.bias_initializer

            def input_bias_initializer(shape, dtype=None):
                parts = [base((units,), dtype=dtype), ops.ones((units,), dtype=dtype), base((2 * units,), dtype=dtype)]
                return ops.concatenate(parts) if self.unit_forget_bias else base(shape, dtype=dtype)

            self.input_bias = self.add_weight(
                shape=(units * 4,),
                name="input_bias",
                initializer=input_bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
            self.recurrent_bias = self.add_weight(
                shape=(units * 4,),
                name="recurrent_bias",
                initializer="zeros",
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    @property
    def bias(self):
        if not self.use_bias:
            return None
        return self.input_bias + self.recurrent_bias

    def call(self, inputs, states, training=False):
        if not getattr(self, "_projected_inputs", False):
            return super().call(inputs, states, training=training)
        # ``inputs`` is already x @ kernel + bias (see TorchLSTM.inner_loop): only the recurrent part.
        h_tm1, c_tm1 = states[0], states[1]
        z = ops.split(ops.add(inputs, ops.matmul(h_tm1, self.recurrent_kernel)), 4, axis=-1)
        c, o = self._compute_carry_and_output_fused(z, c_tm1)
        h = o * self.activation(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="tfmusic")
class TorchLSTM(keras.layers.LSTM):
    """``keras.layers.LSTM`` built on :class:`TorchLSTMCell` (two bias vectors); same arguments.

    On CPU the input projection of all time steps is one matmul before the recurrent loop
    (:meth:`inner_loop`), which Keras' own LSTM does only through cuDNN.

    ``unroll_training_frames``: when training on sequences whose length is static and at most
    this, the recurrence is unrolled in the graph instead of a while loop. Same maths (float32
    rounding apart); the TF while-loop backward was the bottleneck of Open-Unmix training on CPU
    (one BiLSTM layer, batch 4 x 255 frames, fwd+bwd: 0.98 s looped vs 0.38 s unrolled,
    bench/bench_lstm.py). Inference and exports keep the loop (any length, small graphs). The
    trainer replaces training calls with a faster fused recurrence (``tfmusic.training.fused_lstm``,
    ``trainer.fused_lstm``); the unrolled one is what runs when that is off or does not apply.
    """

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        unroll_training_frames=0,
        **kwargs,
    ):
        self.unroll_training_frames = int(unroll_training_frames)
        cell = TorchLSTMCell(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            unit_forget_bias=unit_forget_bias,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            dtype=kwargs.get("dtype", None),
            trainable=kwargs.get("trainable", True),
            name="lstm_cell",
            seed=seed,
            implementation=kwargs.pop("implementation", 2),
        )
        # Skip LSTM.__init__ (it would build a plain LSTMCell); do what it does with our cell.
        keras.layers.RNN.__init__(
            self,
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"use_cudnn must be 'auto', True or False, got {use_cudnn!r}")
        self.use_cudnn = use_cudnn
        if keras.backend.backend() == "tensorflow":
            self.supports_jit = False  # the cuDNN path cannot be XLA-compiled, as for keras.layers.LSTM

    def uses_cudnn(self) -> bool:
        """Whether Keras would run this layer through cuDNN (asked for, or ``"auto"`` with a GPU)."""
        return self.use_cudnn is True or (self.use_cudnn == "auto" and bool(keras.distribution.list_devices("gpu")))

    def inner_loop(self, sequences, initial_state, mask, training=False):
        """Project every time step at once, then loop over the recurrent ``h @ recurrent_kernel`` only.

        Keras' LSTM has a fused kernel only for cuDNN; on CPU its loop does ``x_t @ kernel`` one
        step at a time. Doing that as one (B*T, in) x (in, 4u) matmul before the loop leaves the
        loop only the small ``h @ recurrent_kernel``. Same maths as the cell (outputs agree to
        float rounding), same weights, and the exported graph is still one while loop per
        direction. Falls back to Keras for masks, recurrent dropout and cuDNN (GPU or
        ``use_cudnn=True``).
        """
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        cell = self.cell
        if mask is not None or self.uses_cudnn() or (training and cell.recurrent_dropout):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if training and 0.0 < cell.dropout < 1.0:  # one mask for all steps, as Keras' cell does
            sequences = sequences * ops.expand_dims(cell.get_dropout_mask(sequences[:, 0, :]), axis=1)
        projected = ops.matmul(sequences, cell.kernel)
        if cell.use_bias:
            projected = projected + cell.bias
        cell._projected_inputs = True
        steps = sequences.shape[1]
        unroll = self.unroll or bool(training and isinstance(steps, int) and steps <= self.unroll_training_frames)
        keep, self.unroll = self.unroll, unroll
        try:
            return keras.layers.RNN.inner_loop(self, projected, initial_state, None, training=training)
        finally:
            cell._projected_inputs = False
            self.unroll = keep

    def get_config(self) -> dict:
        return {**super().get_config(), "unroll_training_frames": self.unroll_training_frames}
