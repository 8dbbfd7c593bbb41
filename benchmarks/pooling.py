"""Max pooling: visionjax's strided-slice form against flax's reduce_window.

XLA:CPU differentiates a `reduce_window` max with select-and-scatter, which
dominated the small CNN's train step; `visionjax.models.layers.max_pool`
takes the max over the window's strided slices (a reshape when windows do not
overlap). This prints forward+backward milliseconds of both, per shape, and
the ratio, in the same process.

    python benchmarks/pooling.py [--iters 30]
"""
from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from visionjax.models import layers

# (input shape, window, stride, padding): the small CNN's, U-Net's and a
# ResNet stem's pools.
CASES = (((64, 30, 30, 32), 2, 2, "VALID"),
         ((16, 64, 64, 16), 2, 2, "VALID"),
         ((8, 112, 112, 64), 3, 2, ((1, 1), (1, 1))))


def _ms(fn, x, iters: int) -> float:
  jax.block_until_ready(fn(x))
  t = time.perf_counter()
  for _ in range(iters):
    out = fn(x)
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / iters * 1e3


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--iters", type=int, default=30)
  args = ap.parse_args()
  print(f"backend {jax.default_backend()}, {jax.device_count()} device(s)")
  print(f"{'input':>20} {'k/s':>5} {'flax ms':>9} {'visionjax ms':>13} {'speed-up':>9}")
  for shape, k, s, pad in CASES:
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    ref = jax.jit(jax.value_and_grad(
        lambda a: jnp.sum(nn.max_pool(a, (k, k), (s, s), padding=pad) ** 2)))  # noqa: B023
    ours = jax.jit(jax.value_and_grad(
        lambda a: jnp.sum(layers.max_pool(a, k, s, padding=pad) ** 2)))  # noqa: B023
    t_ref, t_ours = _ms(ref, x, args.iters), _ms(ours, x, args.iters)
    print(f"{str(shape):>20} {f'{k}/{s}':>5} {t_ref:9.2f} {t_ours:13.2f} {t_ref / t_ours:8.1f}x")


if __name__ == "__main__":
  main()
