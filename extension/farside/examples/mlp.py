"""A small network trained with plain JAX: the GPU example (notebooks/gpu_ml.ipynb,
tests/gpu/run_on_device.sh).

A multi-layer perceptron learns to tell two interleaved spirals apart (a classic that a
linear model cannot do), with full-batch Adam written out in a few lines. On a GPU site the
job gets its own device (``CUDA_VISIBLE_DEVICES``) and JAX runs there; elsewhere JAX runs
on the CPU, and the same call gives the same kind of result. farside is an installed
distribution, so a task that calls :func:`train` imports this module by name on the
pilot: the pilot's Python needs JAX (the ``ml`` extra; ``jax[cuda12]`` on GPU sites).

>>> x, y = spirals(100, seed=0)
>>> x.shape, sorted(set(y.tolist()))
((200, 2), [0, 1])
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import numpy as np

__all__ = ["spirals", "train"]


def spirals(n: int, seed: int = 0, noise: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of each of two interleaved spirals: features (2n, 2), labels (2n,)."""
    rng = np.random.default_rng(seed)
    turns = np.sqrt(rng.uniform(0, 1, n)) * 3 * np.pi
    arm = np.stack([turns * np.cos(turns), turns * np.sin(turns)], axis=1) / (3 * np.pi)
    x = np.concatenate([arm, -arm]) + rng.normal(0, noise / 3, (2 * n, 2))
    y = np.concatenate([np.zeros(n, dtype=np.int32), np.ones(n, dtype=np.int32)])
    return x.astype(np.float32), y


def train(
    hidden: int = 64,
    layers: int = 3,
    epochs: int = 500,
    learning_rate: float = 1e-2,
    n: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Train the network; returns accuracy on held-out points, the loss curve, the device
    it ran on, the GPUs the job was given and the training's seconds."""
    # JAX takes 75% of a GPU's memory up front by default: ask as needed instead, so the
    # memory the pilot reports is the job's
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax
    import jax.numpy as jnp

    x, y = spirals(n, seed)
    test_x, test_y = spirals(n // 4, seed + 1)
    key = jax.random.PRNGKey(seed)
    sizes = [2] + [hidden] * layers + [2]
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        key, sub = jax.random.split(key)
        weight = jax.random.normal(sub, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
        params.append((weight, jnp.zeros(fan_out)))

    def logits(params: list[Any], x: Any) -> Any:
        for weight, bias in params[:-1]:
            x = jax.nn.relu(x @ weight + bias)
        weight, bias = params[-1]
        return x @ weight + bias

    def loss(params: list[Any], x: Any, y: Any) -> Any:
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits(params, x)), y[:, None], 1))

    @jax.jit
    def step(params: Any, moments: Any, t: Any, x: Any, y: Any) -> Any:
        value, grads = jax.value_and_grad(loss)(params, x, y)
        first, second = moments
        first = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, first, grads)
        second = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, second, grads)
        scale = learning_rate * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        params = jax.tree.map(
            lambda p, m, v: p - scale * m / (jnp.sqrt(v) + 1e-8), params, first, second
        )
        return params, (first, second), value

    zeros = jax.tree.map(jnp.zeros_like, params)
    moments = (zeros, zeros)
    x_dev, y_dev = jax.device_put(x), jax.device_put(y)
    started = time.perf_counter()
    curve = []
    for epoch in range(1, epochs + 1):
        params, moments, value = step(params, moments, epoch, x_dev, y_dev)
        if epoch % max(1, epochs // 20) == 0:
            curve.append(float(value))
    jax.block_until_ready(params)  # type: ignore[no-untyped-call]
    seconds = time.perf_counter() - started
    predicted = jnp.argmax(logits(params, jax.device_put(test_x)), axis=1)
    return {
        "accuracy": float(jnp.mean(predicted == test_y)),
        "loss": curve,
        "device": str(jax.devices()[0]),
        "platform": jax.devices()[0].platform,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "seconds": seconds,
    }
