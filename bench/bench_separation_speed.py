"""Separation speed: Keras IASS / Open-Unmix vs the PyTorch references, same machine, same run.

Rows (ratio = reference time / ours, > 1 means ours is faster):
- STFT of 30 s stereo with the exportable DFT basis: block-matmul framing (kept) vs strided conv1d;
  and the DFT basis vs the FFT method (what in-process separation uses).
- IASS inference, 1 target, 30 s mono, waveform -> stems: Keras Separator vs a PyTorch IASS written
  here from the spec (A.3; 3,205,682 parameters, asserted) with torch.stft / torch.istft.
- Open-Unmix inference, 4 targets, 30 s stereo, no Wiener: Keras Separator vs ``openunmix.Separator``.
- IASS x 4 targets (4 IASS models in one Keras Separator) vs the PyTorch Open-Unmix Separator with
  4 targets, same 30 s stereo excerpt: the real-time factor of each (processing s / audio s) and
  the ratio. The PyTorch Open-Unmix run is timed once and shared with the row above.
- Training step (forward + backward + Adam) on precomputed 6 s magnitudes: IASS (MSE + 2 x BCE)
  and Open-Unmix (MSE), batch ``TFMUSIC_BENCH_BATCH`` (default 4: the spec's batch 16 of 6 s
  needs over 10 GB for the Keras IASS step without recomputation); Open-Unmix also as training
  steps per second (ratio = ours / PyTorch, > 1 means ours is faster). The Keras side runs what
  ``tfmusic train`` runs by default (``tfmusic.training.rewrites``: fused BatchNorm, LSTM and Adam,
  and for IASS its U-Net blocks recomputed, ``trainer.recompute``); IASS without recomputation is
  timed in the same interleaved run as an informative row.

Both sides use the same 2 CPU threads budget (torch.set_num_threads(2); TF default on 2 cores).
Environment knobs for a loaded machine: ``TFMUSIC_BENCH_BATCH`` (training batch),
``TFMUSIC_BENCH_REPEATS`` (timed repeats, default 3), ``TFMUSIC_BENCH_SECONDS`` (inference audio
length, default 30). Models have random weights: speed does not depend on them.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
from timing import best_of, interleaved, load_note

SR = 44100
N_FFT, HOP, MAX_BIN, N_BINS = 4096, 1024, 1487, 2049


def _knob(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _time(fn, repeats: int) -> float:
    """Best-of-``repeats`` seconds after one warm-up call (first call traces/compiles)."""
    return best_of(fn, repeats, warmup=True)


def _pair(ours_fn, reference_fn, repeats: int) -> tuple[float, float, str]:
    """Best-of times of both sides, repetitions interleaved (after one warm-up call each), and the load note."""
    best, loads = interleaved({"ours": ours_fn, "reference": reference_fn}, repeats)
    return best["ours"], best["reference"], load_note(loads)


def _pin_tf_threads() -> None:
    """TF gets the same 2 intra-op threads as torch.set_num_threads(2)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TF already initialised by an earlier bench in this process
        pass


def _row(what, ours, reference, unit, target_ratio, notes, higher_is_better: bool = False) -> dict:
    """One result row; ``ratio`` > 1 always means ours is better (faster)."""
    if ours and reference:
        ratio = ours / reference if higher_is_better else reference / ours
    else:
        ratio = None
    return {
        "what": what,
        "ours": round(ours, 4),
        "reference": round(reference, 4) if reference is not None else None,
        "unit": unit,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "target": f">= {target_ratio}x" if target_ratio is not None else "",
        "met": (ratio >= target_ratio) if (ratio is not None and target_ratio is not None) else None,
        "notes": notes,
    }


# ----------------------------------------------------------------------------- PyTorch IASS (spec A.3)
def _torch_iass():
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout)
            self.shortcut = nn.Conv2d(cin, cout, 1)
            self.down = nn.Conv2d(cout, cout, (3, 1), stride=(3, 1))

        def forward(self, x):
            y = nn.functional.leaky_relu(self.bn1(self.conv1(x)), 0.01)
            y = nn.functional.leaky_relu(self.bn2(self.conv2(y)), 0.01)
            return self.down(y + self.shortcut(x))

    class Decoder(nn.Module):
        def __init__(self, cup, cin, cmid, cout, out_pad, last=False):
            super().__init__()
            self.up = nn.ConvTranspose2d(cup, cup, (3, 1), stride=(3, 1), output_padding=(out_pad, 0))
            self.conv1, self.bn1 = nn.ConvTranspose2d(cin, cmid, 3, padding=1), nn.BatchNorm2d(cmid)
            self.conv2 = nn.ConvTranspose2d(cmid, cout, 3, padding=1)
            self.bn2 = None if last else nn.BatchNorm2d(cout)

        def forward(self, x, skip=None):
            y = self.up(x)
            if skip is not None:
                y = torch.cat([y, skip], 1)
            y = self.bn1(nn.functional.leaky_relu(self.conv1(y), 0.01))
            y = self.conv2(y)
            return y if self.bn2 is None else self.bn2(nn.functional.leaky_relu(y, 0.01))

    class TorchIASS(nn.Module):
        """(B, C, F, T) magnitude -> (estimate, logits); the spec's U-Net, NCHW as the reference."""

        def __init__(self, channels=1):
            super().__init__()
            self.input_mean = nn.Parameter(torch.zeros(MAX_BIN))
            self.input_std = nn.Parameter(torch.ones(MAX_BIN))
            self.enc1, self.enc2, self.enc3 = Encoder(channels, 16), Encoder(16, 32), Encoder(32, 48)
            self.skip1, self.skip2 = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1)
            self.dec2 = Decoder(48, 80, 40, 32, 0)
            self.dec3 = Decoder(32, 48, 24, 16, 0)
            self.dec4 = Decoder(16, 16, 8, channels, 2, last=True)
            self.act = nn.Sequential(
                nn.Conv2d(48, 32, (3, 1), (3, 1)), nn.BatchNorm2d(32), nn.Conv2d(32, 16, (3, 1), (3, 1)),
                nn.BatchNorm2d(16), nn.Conv2d(16, 16, (3, 1), (3, 1)), nn.BatchNorm2d(16),
                nn.Conv2d(16, 1, (2, 1), (2, 1)))
            self.fc = nn.Linear(MAX_BIN, N_BINS)
            self.output_scale = nn.Parameter(torch.ones(N_BINS))
            self.output_mean = nn.Parameter(torch.ones(N_BINS))

        def forward(self, mag):
            x = (mag[:, :, :MAX_BIN] - self.input_mean[:, None]) / self.input_std[:, None]
            x1 = self.enc1(x)
            x2 = self.enc2(x1)
            z = self.enc3(x2)
            logits = self.act(z)[:, 0, 0]  # (B, T)
            y = self.dec2(z, self.skip2(x2))
            y = self.dec3(y, self.skip1(x1))
            y = self.fc(self.dec4(y).transpose(2, 3))  # (B, C, T, 2049)
            mask = torch.relu(y * self.output_scale + self.output_mean).transpose(2, 3)
            return mask * mag, logits

    model = TorchIASS()
    count = sum(p.numel() for p in model.parameters())
    assert count == 3_205_682, f"PyTorch IASS has {count} parameters, spec says 3,205,682"
    return model


def _import_openunmix():
    try:
        import torchaudio  # noqa: F401
    except ImportError:  # openunmix imports torchaudio at top level; the model code never uses it
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    import openunmix.model

    return openunmix.model


# ----------------------------------------------------------------------------- benchmarks
def _bench_stft(repeats: int, seconds: int) -> list[dict]:
    import tensorflow as tf

    from tfmusic.audio.stft import STFT

    x = np.random.default_rng(0).standard_normal((1, 2, SR * seconds)).astype(np.float32)
    timings = {}
    for name, layer in (("blocks", STFT(center=True, framing="blocks")), ("conv", STFT(center=True, framing="conv")),
                        ("fft", STFT(center=True, method="fft"))):
        fn = tf.function(lambda v, layer=layer: layer(v))
        timings[name] = _time(lambda fn=fn: fn(x), repeats)
    return [
        _row(f"STFT {seconds} s stereo, DFT basis: block-matmul vs conv1d framing", timings["blocks"],
             timings["conv"], "s", 1.0, "the faster framing is the default (framing='auto' -> blocks)"),
        _row(f"STFT {seconds} s stereo: FFT method vs exportable DFT basis", timings["fft"], timings["blocks"],
             "s", None, "CLI separation uses method='fft'; export keeps the ONNX-convertible DFT"),
    ]


def _bench_iass_inference(repeats: int, seconds: int) -> list[dict]:
    import tensorflow as tf
    import torch

    from tfmusic.models.iass import IASS
    from tfmusic.models.separator import Separator

    x = (0.1 * np.random.default_rng(1).standard_normal((1, 1, SR * seconds))).astype(np.float32)
    iass = IASS()
    median = iass.median_frames
    sep = Separator({"vocals": iass}, stft_method="fft")
    run = tf.function(lambda v: sep(v, training=False))

    ref = _torch_iass().eval()
    window = torch.hann_window(N_FFT)
    wav = torch.from_numpy(x[0])

    def torch_separate():
        with torch.no_grad():
            spec = torch.stft(wav, N_FFT, HOP, window=window, center=True, return_complex=True)  # (C, F, T)
            est, logits = ref(spec.abs()[None])
            act = (torch.sigmoid(logits) > 0.5).float()  # (B, T), then the same median filter as IASS
            half = median // 2
            act = torch.nn.functional.pad(act[:, None], (half, half), mode="reflect")[:, 0]
            act = act.unfold(-1, median, 1).median(-1).values
            masked = spec * (est[0] / spec.abs().clamp_min(1e-8)) * act[0]
            return torch.istft(masked, N_FFT, HOP, window=window, center=True, length=wav.shape[-1])

    ours, reference, load = _pair(lambda: run(x)["vocals"].numpy(), torch_separate, repeats)
    return [_row(f"IASS inference, 1 target, {seconds} s mono (waveform -> stem)", ours, reference, "s", 2.0,
                 f"Keras Separator (FFT STFT) vs OUR PyTorch port of IASS from spec A.3 (not the authors' code), "
                 f"both with the {median}-frame activity median filter; {seconds / ours:.1f}x real time; {load}")]


def _bench_umx_inference(repeats: int, seconds: int) -> list[dict]:
    import tensorflow as tf
    import torch

    from tfmusic.models.openunmix import OpenUnmix
    from tfmusic.models.separator import Separator

    from tfmusic.models.iass import IASS

    targets = ("vocals", "drums", "bass", "other")
    x = (0.1 * np.random.default_rng(2).standard_normal((1, 2, SR * seconds))).astype(np.float32)
    sep = Separator({t: OpenUnmix() for t in targets}, stft_method="fft")
    run = tf.function(lambda v: sep(v, training=False))
    iass_sep = Separator({t: IASS() for t in targets}, stft_method="fft")  # mono models: channel mixdown
    iass_run = tf.function(lambda v: iass_sep(v, training=False))
    iass = _time(lambda: iass_run(x)["vocals"].numpy(), repeats)

    umx = _import_openunmix()
    ref = umx.Separator({t: umx.OpenUnmix(nb_bins=N_BINS, nb_channels=2, max_bin=MAX_BIN).eval() for t in targets},
                        niter=0).eval()
    wav = torch.from_numpy(x)

    def torch_separate():
        with torch.no_grad():
            return ref(wav)

    ours, reference, load = _pair(lambda: run(x)["vocals"].numpy(), torch_separate, repeats)
    return [
        _row(f"Open-Unmix inference, 4 targets, {seconds} s stereo, no Wiener: our Keras UMX vs PyTorch UMX",
             ours, reference, "s", 1.0,
             f"Keras Separator (FFT STFT) vs openunmix 1.3 Separator; real-time factor ours {ours / seconds:.3f}, "
             f"PyTorch {reference / seconds:.3f}; {load}"),
        _row(f"Separation, 4 targets, {seconds} s stereo: IASS x 4 (one Keras Separator) vs PyTorch Open-Unmix x 4",
             iass, reference, "s", None,
             f"real-time factor (processing s / audio s): IASS x 4 {iass / seconds:.3f}, "
             f"PyTorch Open-Unmix x 4 {reference / seconds:.3f} (timed in the row above, not interleaved with "
             f"IASS); random weights, no Wiener"),
    ]


def _keras_step(name: str, model, optimizer):
    """One tf.function training step (forward, MSE (+ 2 x BCE for IASS), backward, Adam) of ``model``."""
    import tensorflow as tf

    @tf.function(jit_compile=False)
    def step(m, t, y):
        with tf.GradientTape() as tape:
            out = model(m, training=True)
            loss = tf.reduce_mean(tf.square(out["estimate"] - t))
            if name == "IASS":
                loss += 2.0 * tf.reduce_mean(
                    tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=out["activity_logits"]))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def _bench_training(repeats: int, batch: int) -> list[dict]:
    """Training steps vs PyTorch. Each Keras model gets the rewrites ``tfmusic train`` applies by default
    (fused BatchNorm, LSTM and Adam; IASS: its U-Net blocks recomputed, ``trainer.recompute``); IASS is
    also timed without recomputation, in the same interleaved run, as its own informative row."""
    import keras
    import torch

    from tfmusic.models.iass import IASS
    from tfmusic.models.openunmix import OpenUnmix
    from tfmusic.training.config import TrainerConfig
    from tfmusic.training.rewrites import apply_rewrites

    rng = np.random.default_rng(3)
    frames = 255  # 6 s, center=False
    rows = []
    for name, channels in (("IASS", 1), ("Open-Unmix", 2)):
        mag = rng.random((batch, channels, frames, N_BINS), dtype=np.float32)
        target = rng.random((batch, channels, frames, N_BINS), dtype=np.float32)
        labels = (rng.random((batch, frames)) > 0.5).astype(np.float32)
        # IASS: the trainer default (recompute on) and recompute off, same start weights
        variants = {"default": TrainerConfig()} if name == "Open-Unmix" else {
            "default": TrainerConfig(), "no_recompute": TrainerConfig(recompute=False)}
        sides, weights = {}, None
        for variant, config in variants.items():
            keras.utils.set_random_seed(0)
            model = IASS() if name == "IASS" else OpenUnmix()
            model(mag[:1], training=False)
            if weights is None:
                weights = model.get_weights()
            model.set_weights(weights)
            optimizer = keras.optimizers.Adam(1e-3)
            blocks = model.unet_blocks() if name == "IASS" else []
            apply_rewrites(config, [model, optimizer], blocks)  # what Trainer._set_rewrites applies
            step = _keras_step(name, model, optimizer)
            sides[variant] = lambda step=step: float(step(mag, target, labels))

        if name == "IASS":
            ref = _torch_iass().train()
        else:
            ref = _import_openunmix().OpenUnmix(nb_bins=N_BINS, nb_channels=2, max_bin=MAX_BIN).train()
        opt = torch.optim.Adam(ref.parameters(), lr=1e-3)  # plain Adam on both sides (no weight decay)
        t_mag = torch.from_numpy(mag).transpose(2, 3)  # torch models take (B, C, F, T)
        t_target = torch.from_numpy(target).transpose(2, 3)
        t_labels = torch.from_numpy(labels)

        def torch_step(ref=ref, opt=opt, name=name):
            opt.zero_grad()
            if name == "IASS":
                est, logits = ref(t_mag)
                loss = torch.mean((est - t_target) ** 2) + 2.0 * torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, t_labels)
            else:
                loss = torch.mean((ref(t_mag) - t_target) ** 2)
            loss.backward()
            opt.step()
            return float(loss)

        best, loads = interleaved({**sides, "reference": torch_step}, repeats)
        load = load_note(loads)
        ours, reference = best["default"], best["reference"]
        who = "OUR PyTorch port of IASS from the spec" if name == "IASS" else "openunmix 1.3 (the authors' PyTorch)"
        shape = f"batch {batch} x 6 s ({'mono' if channels == 1 else 'stereo'})"
        common = (f"forward + backward + Adam (no weight decay either side) on precomputed magnitudes; "
                  f"tf.function vs {who}, eager; {load}")
        if name == "IASS":
            rows.append(_row(f"IASS training step, {shape}, as `tfmusic train` runs it (blocks recomputed, "
                             "trainer default)", ours, reference, "s/step", 2.0,
                             f"the trainer's default rewrites: fused BatchNorm and Adam, U-Net blocks recomputed "
                             f"(trainer.recompute); {common}"))
            rows.append(_row(f"IASS training step, {shape}, trainer.recompute=false (not the default)",
                             best["no_recompute"], reference, "s/step", None,
                             f"informative: the same step without recomputation (more memory: bench_memory.py); "
                             f"recompute costs {best['default'] / best['no_recompute']:.2f}x "
                             f"per step here; {common}"))
        else:
            rows.append(_row(f"Open-Unmix training step, {shape}", ours, reference, "s/step", 1.0,
                             f"the trainer's default rewrites: fused BatchNorm, LSTM and Adam (nothing to recompute); {common}"))
            rows.append(_row(f"Open-Unmix training steps per second, {shape}: our Keras UMX vs PyTorch UMX",
                             1.0 / ours, 1.0 / reference, "steps/s", 1.0,
                             f"same batch shape and loss (MSE) + Adam; ratio = ours / PyTorch; {load}",
                             higher_is_better=True))
    return rows


def run(out_dir: Path) -> list[dict]:
    """Benchmark rows for bench/run_all.py (see module docstring)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    repeats = _knob("TFMUSIC_BENCH_REPEATS", 3)
    seconds = _knob("TFMUSIC_BENCH_SECONDS", 30)
    batch = _knob("TFMUSIC_BENCH_BATCH", 4)
    rows = _bench_stft(repeats, seconds)
    try:
        import torch
    except ImportError:
        return rows + [{"what": "separation vs PyTorch", "notes": "skipped: torch not installed (make venv)"}]
    torch.set_num_threads(2)
    _pin_tf_threads()
    rows += _bench_iass_inference(repeats, seconds)
    rows += _bench_umx_inference(repeats, seconds)
    rows += _bench_training(repeats, batch)
    return rows


if __name__ == "__main__":
    for r in run(Path("bench/results")):
        print(r)
