"""Training speed of the dMelodies RNN VAE (reference-spec C.7) at batch 512: tfmusic (Keras/TF, the
VAETask's train step as the trainer runs it, one device) vs a PyTorch implementation of the same
architecture written here from the spec. Both train with the beta-VAE objective (CE + ReLU(beta KL - 50)),
Adam 1e-4, teacher forcing p = 0.5 per batch, on the same fixed batch of real dMelodies items, in the
same run, one after the other, each in its own subprocess with the same number of CPU threads
(``BENCH_VAE_THREADS``, default 1: on a shared 2-core machine PyTorch's OpenMP pool with 2 threads was
measured 10-20x slower than with 1, which would flatter ours). ratio = ours / reference steps per second
(>1 = ours faster).

Run alone: ``.venv/bin/python bench/bench_vae_speed.py [--steps N] [--threads T]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BATCH = 512
NUM_CLASSES = 62
Z_DIM = 32
HIDDEN = 64


def _batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from tfmusic.data import dmelodies

    idx = np.random.default_rng(seed).choice(dmelodies.NUM_ITEMS, BATCH, replace=False)
    tokens, factors = dmelodies.generate_items(idx)
    return tokens.astype(np.int32), factors.astype(np.int32)


def time_ours(tokens: np.ndarray, factors: np.ndarray, steps: int, warmup: int = 2) -> dict:
    import tensorflow as tf

    threads = int(os.environ.get("BENCH_VAE_THREADS", "1"))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from tfmusic.training.config import TrainerConfig
    from tfmusic.training.trainer import Trainer
    from tfmusic.training.vae import ArrayData, VAEConfig, VAETask

    data = ArrayData("dmelodies", {"train": (tokens, factors)})
    task = VAETask(VAEConfig(model="dmelodies-rnn", objective="beta", steps_per_epoch=1853), data)
    cfg = TrainerConfig(steps=1, batch_size=BATCH)
    trainer = Trainer(task, cfg, "/nonexistent-bench-run", progress=False)
    task.bind(trainer.context)
    with trainer.strategy.scope():
        task.build()
    step = tf.function(task.train_step)
    batch = (tf.constant(tokens), tf.constant(factors))
    t0 = time.perf_counter()
    for _ in range(warmup):
        float(step(batch)["loss"])
    trace = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step(batch)
    float(out["loss"])
    elapsed = time.perf_counter() - t0
    return {"steps_per_s": steps / elapsed, "warmup_s": trace, "params": int(task.vae.count_params())}


def _torch_model():
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(NUM_CLASSES, 10)
            self.rnn = nn.GRU(10, HIDDEN, num_layers=2, dropout=0.2, bidirectional=True, batch_first=True)
            self.mean = nn.Sequential(nn.Linear(4 * HIDDEN, 2 * HIDDEN), nn.SELU(), nn.Linear(2 * HIDDEN, Z_DIM))
            self.log_std = nn.Sequential(nn.Linear(4 * HIDDEN, 2 * HIDDEN), nn.SELU(), nn.Linear(2 * HIDDEN, Z_DIM))

        def forward(self, x):
            _, h = self.rnn(self.emb(x))  # (layers * directions, B, H)
            h = h.transpose(0, 1).reshape(x.shape[0], -1)
            return self.mean(h), self.log_std(h)

    class Decoder(nn.Module):
        def __init__(self, n_beats=2, ticks=8):
            super().__init__()
            self.n_beats, self.ticks = n_beats, ticks
            self.z_to_beat = nn.Sequential(nn.Linear(Z_DIM, 2 * HIDDEN), nn.SELU())
            self.beat_input = nn.Parameter(torch.randn(1, 1, 1))
            self.beat_rnn = nn.GRU(1, HIDDEN, num_layers=2, dropout=0.2, batch_first=True)
            self.to_tick_state = nn.Sequential(nn.Linear(HIDDEN, 2 * HIDDEN), nn.SELU())
            self.to_tick_input = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.SELU())
            self.tick_rnn = nn.GRU(HIDDEN + 10, HIDDEN, num_layers=2, dropout=0.2, batch_first=True)
            self.emb = nn.Embedding(NUM_CLASSES, 10)
            self.start = nn.Parameter(torch.randn(1, 1, 10))
            self.out = nn.Linear(HIDDEN, NUM_CLASSES)

        def forward(self, z, targets, force: bool):
            b = z.shape[0]
            h = self.z_to_beat(z).reshape(b, 2, HIDDEN).transpose(0, 1).contiguous()
            beat_out, _ = self.beat_rnn(self.beat_input.expand(b, self.n_beats, 1), h)
            prev = self.start.expand(b, 1, 10)
            logits = []
            for beat in range(self.n_beats):
                bo = beat_out[:, beat]
                th = self.to_tick_state(bo).reshape(b, 2, HIDDEN).transpose(0, 1).contiguous()
                ctx = self.to_tick_input(bo)[:, None]
                for tick in range(self.ticks):
                    o, th = self.tick_rnn(torch.cat([ctx, prev], -1), th)
                    step_logits = torch.relu(self.out(o[:, 0]))
                    logits.append(step_logits)
                    tok = targets[:, beat * self.ticks + tick] if force else step_logits.argmax(-1)
                    prev = self.emb(tok)[:, None]
            return torch.stack(logits, 1)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = Encoder(), Decoder()

        def forward(self, x, force: bool):
            mean, log_std = self.encoder(x)
            z = mean + torch.exp(log_std) * torch.randn_like(mean)
            return mean, log_std, self.decoder(z, x, force)

    return VAE()


def time_reference(tokens: np.ndarray, steps: int, warmup: int = 2) -> dict:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("BENCH_VAE_THREADS", "1")))
    model = _torch_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.from_numpy(tokens.astype(np.int64))
    rng = np.random.default_rng(0)

    def step():
        force = bool(rng.uniform() < 0.5)
        mean, log_std, logits = model(x, force)
        rec = torch.nn.functional.cross_entropy(logits.reshape(-1, NUM_CLASSES), x.reshape(-1))
        kl = (0.5 * (mean ** 2 + torch.exp(2 * log_std) - 1) - log_std).sum(-1).mean()
        loss = rec + torch.relu(0.2 * kl - 50.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - t0
    return {"steps_per_s": steps / elapsed, "params": sum(p.numel() for p in model.parameters())}


def _side(side: str, steps: int, threads: int) -> dict:
    """Time one side in a fresh interpreter (thread settings must precede framework initialisation)."""
    env = {**os.environ, "BENCH_VAE_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--side", side, "--steps", str(steps)],
                          capture_output=True, text=True, env=env, cwd=str(Path(__file__).resolve().parents[1]))
    if proc.returncode != 0:
        raise RuntimeError(f"bench_vae_speed --side {side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(out_dir: Path, steps: int = 10) -> list[dict]:
    threads = int(os.environ.get("BENCH_VAE_THREADS", "1"))
    ours = _side("ours", steps, threads)
    what = f"dMelodies RNN-VAE train steps/s (batch 512, {threads} thread{'s' if threads > 1 else ''})"
    try:
        import torch  # noqa: F401
    except ImportError:
        return [{"what": what, "ours": ours["steps_per_s"], "unit": "steps/s", "target": ">= 1x", "met": None,
                 "notes": "torch not installed (pip install torch==2.13.0): no reference"}]
    ref = _side("reference", steps, threads)
    ratio = ours["steps_per_s"] / ref["steps_per_s"]
    return [{
        "what": what,
        "ours": ours["steps_per_s"], "reference": ref["steps_per_s"], "unit": "steps/s",
        "ratio": ratio, "target": ">= 1x", "met": bool(ratio >= 1.0),
        "notes": f"Keras/TF tf.function step vs PyTorch {ref['version']} eager, same architecture "
                 f"(params {ours['params']:,} vs {ref['params']:,}), {steps} timed steps after 2 warm-up; "
                 f"TF trace+warm-up {ours['warmup_s']:.1f} s; machine has {os.cpu_count()} cores",
    }]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--side", choices=("ours", "reference"), help="(internal) time one side, print JSON")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if args.side:
        toks, facs = _batch()
        if args.side == "ours":
            result = time_ours(toks, facs, args.steps)
        else:
            import torch
            result = {**time_reference(toks, args.steps), "version": torch.__version__}
        print(json.dumps(result))
    else:
        for row in run(Path("."), args.steps):
            print(row)
