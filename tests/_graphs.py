"""What a traced TensorFlow function runs: op types counted over its graph and every function it calls.

Why: a training-time rewrite (fused BatchNorm, LSTM and Adam, recomputation) that silently falls back
computes the same numbers as Keras, so comparing outputs cannot tell it ran; its ops in the traced
graph can.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import tensorflow as tf


def _graph(fn: Callable, *args: Any) -> Any:
    """The graph of ``fn`` traced on ``args``; a ``tf.function`` already traced on them is not traced again."""
    function = fn if hasattr(fn, "get_concrete_function") else tf.function(fn, autograph=False)
    return function.get_concrete_function(*args).graph.as_graph_def()


def traced_ops(fn: Callable, *args: Any) -> Counter:
    """Op type -> count in ``tf.function(fn)`` traced on ``args``, nested functions included
    (XLA-compiled ones show as library functions with ``_XlaMustCompile``: see :func:`xla_functions`)."""
    graph = _graph(fn, *args)
    ops = Counter(node.op for node in graph.node)
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    return ops


def xla_functions(fn: Callable, *args: Any) -> list[str]:
    """Names of the functions ``tf.function(fn)`` calls that must be XLA-compiled (``jit_compile=True``)."""
    graph = _graph(fn, *args)
    return sorted(f.signature.name for f in graph.library.function if f.attr["_XlaMustCompile"].b)
