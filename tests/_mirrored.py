"""Run training snippets under MirroredStrategy on two logical CPUs, in one Python process per session.

Logical devices must be configured before TensorFlow initialises, which the test process has usually
done already, so the snippets run in a separate process. That process (the *host*, this file run as
a script) starts once per pytest session and runs every snippet sent to it, each in fresh globals:
one TensorFlow import for all the mirrored tests instead of one each.

A snippet gets ``strategy`` (MirroredStrategy over ``/cpu:0`` and ``/cpu:1``) and ``train(model,
optimizer, x, loss_fn, steps)`` (one global batch ``x`` split over both replicas, the summed loss per
step), may use ``make_strategy`` itself (the logical devices exist already), and prints one JSON line.
Between snippets the host restores what a snippet may change globally: the Keras dtype policy and
TensorFlow's op determinism; each MirroredStrategy gets its own range of collective keys.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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

_REPLY = "\x1e_mirrored_reply "  # marks the host's answer among whatever a snippet prints itself


def _serve() -> int:
    """Host loop: one JSON request per stdin line ``{"code": ...}``, one reply line each."""
    import contextlib
    import io
    import traceback

    reply_to = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray output (TensorFlow's C++ logging, prints outside a snippet) goes to stderr
    sys.stdout = sys.stderr
    from tensorflow.python.distribute import mirrored_strategy

    # Every MirroredStrategy numbers its collective groups from 1; two in one process would reuse
    # (group, instance) keys with other shapes. Give each its own range, as TensorFlow's own tests do.
    init = mirrored_strategy.MirroredStrategy.__init__

    def fresh_keys_init(self, *args, **kwargs):
        type(self)._collective_key_base += 10_000
        init(self, *args, **kwargs)

    mirrored_strategy.MirroredStrategy.__init__ = fresh_keys_init
    base: dict = {"__name__": "__mirrored__"}
    exec(compile(PREAMBLE, "<mirrored preamble>", "exec"), base)
    tf, keras = base["tf"], base["keras"]
    from tensorflow.python.framework import config as tf_config

    policy = keras.mixed_precision.global_policy().name
    for line in sys.stdin:
        code = json.loads(line)["code"]
        out = io.StringIO()
        glb = dict(base)
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, "<mirrored snippet>", "exec"), glb)
            answer = {"stdout": out.getvalue()}
        except BaseException:  # noqa: BLE001 - reported to the test, the host serves on
            answer = {"stdout": out.getvalue(), "error": traceback.format_exc()}
        finally:
            keras.mixed_precision.set_global_policy(policy)
            if tf_config.is_op_determinism_enabled():
                tf_config.disable_op_determinism()
            del glb
        reply_to.write(_REPLY + json.dumps(answer) + "\n")
        reply_to.flush()
    return 0


class _Host:
    def __init__(self) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "tensorflow",
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        env.pop("TF_CONFIG", None)
        self.log = tempfile.NamedTemporaryFile(prefix="mirrored-host-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env=env, cwd=str(ROOT))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def run(self, code: str, timeout: float) -> dict:
        self.proc.stdin.write(json.dumps({"code": code}) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.close()
                raise AssertionError(f"mirrored snippet did not answer within {timeout:.0f}s\n{self.stderr_tail()}")
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"mirrored host exited ({self.proc.wait()})\n{self.stderr_tail()}")
            if line.startswith(_REPLY):
                return json.loads(line[len(_REPLY):])

    def close(self) -> None:
        if self.alive():
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


_host: _Host | None = None


def _close_host() -> None:
    global _host
    if _host is not None:
        _host.close()
        _host = None


atexit.register(_close_host)


def run_mirrored_output(snippet: str, timeout: float = 300) -> str:
    """Run ``snippet`` in the session's mirrored host; everything it printed (AssertionError if it raised)."""
    global _host
    if _host is None or not _host.alive():
        _host = _Host()
    answer = _host.run(snippet, timeout)
    assert "error" not in answer, answer["error"][-3000:] + "\n" + answer["stdout"][-1000:]
    return answer["stdout"]


def run_mirrored(snippet: str, timeout: float = 300) -> dict:
    """The JSON the snippet printed last."""
    return json.loads(run_mirrored_output(snippet, timeout).strip().splitlines()[-1])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(_serve())
