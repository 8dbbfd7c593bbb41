"""A/B of the zoo's convolution formulation inside each model's train step.

`visionjax.models.layers.conv_general_dilated` (1×1 convolutions as GEMMs
with a hand-written VJP on CPU) against plain `lax.conv_general_dilated`,
for the same registry model, batch and weights, in one process: both train
steps (the engine's, as in benchmarks/vs_pytorch.py) are compiled, then run
in alternating rounds. Prints per model the ms per step of each form per
round, and the median and range of the per-round ratio lax ms / zoo ms
(> 1: the zoo's form is faster), with the load average.

    python benchmarks/conv_impl.py --models=resnet50,unet_small --rounds=5
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from unittest import mock

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)

import jax  # noqa: E402
import vs_pytorch as vp  # noqa: E402  (benchmarks/vs_pytorch.py)

from visionjax.models import layers  # noqa: E402


def _ms_per_step(runner: vp.JaxRunner, min_seconds: float) -> float:
  r = vp._timed_round(runner.step, min_seconds)
  return 1e3 * r["wall"] / r["steps"]


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--models", default="resnet50,resnet18_cifar,unet_small,"
                  "small_cnn")
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--min-seconds", type=float, default=3.0)
  ap.add_argument("--quick", action="store_true",
                  help="registry smoke widths at tiny sizes")
  args = ap.parse_args()
  sizes = vp.QUICK_SIZES if args.quick else vp.FULL_SIZES
  print(f"backend {jax.default_backend()}, {os.cpu_count()} cpus; ratio = "
        "lax ms / zoo ms per round (> 1: zoo faster)")
  for name in [n.strip() for n in args.models.split(",") if n.strip()]:
    batch, size = sizes.get(name, (4, 64))
    case = vp.make_case(name, args.quick, batch, size)
    runners = {}
    with mock.patch.object(layers, "conv_general_dilated",
                           jax.lax.conv_general_dilated):
      runners["lax"] = vp.JaxRunner(case)
    runners["zoo"] = vp.JaxRunner(case)
    for r in runners.values():
      r.step()
    ms = {k: [] for k in runners}
    load0 = os.getloadavg()[0]
    for _ in range(args.rounds):
      for k, r in runners.items():
        ms[k].append(_ms_per_step(r, args.min_seconds))
    ratios = [a / b for a, b in zip(ms["lax"], ms["zoo"])]
    fmt = lambda v: " ".join(f"{x:.0f}" for x in v)
    print(f"{name} {batch}x{size}²: lax ms [{fmt(ms['lax'])}]  zoo ms "
          f"[{fmt(ms['zoo'])}]  ratio median {statistics.median(ratios):.2f} "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}); compile s lax "
          f"{runners['lax'].compile_s:.1f} zoo {runners['zoo'].compile_s:.1f};"
          f" load {load0:.1f}->{os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
  main()
