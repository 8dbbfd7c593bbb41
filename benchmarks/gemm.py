"""Single-GEMM speed, XLA:CPU (`jnp.dot` under `jax.jit`) against PyTorch
(`torch.mm`), on the matrix shapes of ResNet-50's 1×1 convolutions.

    python benchmarks/gemm.py            # batch 8 at 224², as vs_pytorch.py
    python benchmarks/gemm.py --batch=2

Since the zoo computes dense 1×1 convolutions as GEMMs on CPU
(`visionjax.models.layers.conv_general_dilated`), ResNet-50's train step
spends about a third of its op time in XLA's dots (benchmarks/profile_step.py).
This script isolates that part: for each distinct 1×1 convolution of a
ResNet-50 stage it times the three GEMMs of a train step,

  forward      [B·H·W, C] · [C, F]
  input grad   [B·H·W, F] · [F, C]   (g · Wᵀ)
  weight grad  [C, B·H·W] · [B·H·W, F] (xᵀ · g, the transpose read in place
               by both libraries: `jnp.dot(x.T, g)` / `torch.mm(x.t(), g)`)

in alternating rounds (each >= `--min-seconds`), both libraries in this one
process on the same float32 data, and prints GFLOP/s per library and the
ratio jax / torch (> 1: XLA faster), with the medians over rounds.
"""
from __future__ import annotations

import argparse
from functools import partial
import os
import statistics
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import vs_pytorch as vp  # noqa: E402  (benchmarks/vs_pytorch.py: its timed round)

# (spatial side at 224² input, in channels, out channels) of ResNet-50's
# distinct 1×1 convolutions (stride 1): reduce and expand of each stage.
SHAPES = ((56, 64, 64), (56, 64, 256), (56, 256, 64), (28, 512, 128),
          (28, 128, 512), (14, 1024, 256), (14, 256, 1024), (7, 2048, 512),
          (7, 512, 2048))


def _run_jax(fn, *args):
  return fn(*args).block_until_ready()


def _rate(fn, flops: float, min_seconds: float) -> float:
  r = vp._timed_round(fn, min_seconds, min_steps=3)
  return flops * r["steps"] / r["wall"] / 1e9


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--min-seconds", type=float, default=0.5)
  args = ap.parse_args()
  import torch  # the optional bench extra; imported late so --help works without it
  print(f"# GEMM GFLOP/s, float32, {os.cpu_count()} cpus, jax {jax.__version__} "
        f"({jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load {os.getloadavg()[0]:.2f}")
  print("| M·K·N | GEMM | jax GFLOP/s | torch GFLOP/s | jax/torch |")
  print("|---|---|---:|---:|---:|")
  dot = jax.jit(jnp.dot)
  dot_tn = jax.jit(lambda a, b: jnp.dot(a.T, b))
  ratios, tot = [], {"jax": 0.0, "torch": 0.0}
  rng = np.random.default_rng(0)
  for side, c, f in SHAPES:
    m = args.batch * side * side
    x = rng.standard_normal((m, c), np.float32)
    w = rng.standard_normal((c, f), np.float32)
    g = rng.standard_normal((m, f), np.float32)
    wt = np.ascontiguousarray(w.T)
    jx, jw, jg, jwt = map(jnp.asarray, (x, w, g, wt))
    tx, tw, tg, twt = map(torch.from_numpy, (x, w, g, wt))
    flops = 2.0 * m * c * f
    dims = {"forward": (m, c, f), "input grad": (m, f, c), "weight grad": (c, m, f)}
    # (jax function and operands, torch function and operands) per GEMM;
    # partial binds this shape's arrays (the loop rebinds the names).
    cases = {
        "forward": (partial(_run_jax, dot, jx, jw), partial(torch.mm, tx, tw)),
        "input grad": (partial(_run_jax, dot, jg, jwt), partial(torch.mm, tg, twt)),
        "weight grad": (partial(_run_jax, dot_tn, jx, jg), partial(torch.mm, tx.t(), tg)),
    }
    for name, (fj, ft) in cases.items():
      np.testing.assert_allclose(np.asarray(fj()), ft().numpy(), rtol=2e-3,
                                 atol=2e-3 * np.sqrt(max(c, f, m)))
      rates = {"jax": [], "torch": []}
      for _ in range(args.rounds):
        rates["jax"].append(_rate(fj, flops, args.min_seconds))
        rates["torch"].append(_rate(ft, flops, args.min_seconds))
      rj, rt = statistics.median(rates["jax"]), statistics.median(rates["torch"])
      tot["jax"] += flops / rj
      tot["torch"] += flops / rt
      ratios.append(rj / rt)
      mkn = "·".join(map(str, dims[name]))
      print(f"| {mkn} | {name} | {rj:.1f} | {rt:.1f} | {rj / rt:.2f} |", flush=True)
  print(f"\nall {len(ratios)} GEMMs once each: jax {1e3 * tot['jax'] / 1e9:.1f} ms, "
        f"torch {1e3 * tot['torch'] / 1e9:.1f} ms (jax/torch speed "
        f"{tot['torch'] / tot['jax']:.2f}); per-GEMM ratio median "
        f"{statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}; "
        f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  main()
