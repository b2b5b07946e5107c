"""Run a training snippet under MirroredStrategy on two logical CPUs, in a fresh Python process.

Logical devices must be configured before TensorFlow initialises, which the test process has usually
done already. The snippet gets ``strategy`` and ``train(model, optimizer, x, loss_fn, steps)`` (one
global batch ``x`` split over both replicas, the summed loss per step) and prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PREAMBLE = '''
import json, numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def train(model, optimizer, x, loss_fn, steps):
    @tf.function
    def step(batch):
        def replica(b):
            with tf.GradientTape() as tape:
                loss = loss_fn(model(b, training=True)) / float(len(x))
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            return loss
        return strategy.reduce("SUM", strategy.run(replica, (batch,)), axis=None)

    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(x))
    return [float(step(b)) for b in dataset for _ in range(steps)]
'''


def run_mirrored(snippet: str) -> dict:
    """The JSON the snippet printed last."""
    done = subprocess.run([sys.executable, "-c", PREAMBLE + snippet], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
