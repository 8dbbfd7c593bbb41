"""A/B of XLA:CPU flag sets on visionjax's train step, in alternating rounds.

    python benchmarks/xla_flags.py --models=unet_small,resnet18_cifar
    python benchmarks/xla_flags.py --sets='default=;off=--xla_cpu_use_xnnpack=false'

XLA reads its flags once, when JAX starts its backend, so each flag set gets
its own spawned child (`benchmarks/vs_pytorch.py`'s worker, same train step,
batch and size as that script) started with `XLA_FLAGS` set; the parent then
alternates rounds over the children (each round >= `--min-seconds`), so the
machine's load moves all sets alike. Per model it prints each set's ms per
step per round and, against the first set, the median and range of the
per-round ratio (first-set ms / set ms; > 1: the set is faster), with the
load average.

The default sets: the installed jaxlib's defaults (XNNPACK/YNN on:
`--xla_cpu_use_xnnpack=true`, which fuses convolutions, dots and some
reductions into `ynn_fusion`s), XNNPACK off, and YNN fusion types added to
the default list (`+eltwise`, `+dot`; the accepted names are those of
`LIBRARY_FUSION_TYPE_*`: dot, eltwise, reduce, individual_dot,
individual_convolution).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)

import vs_pytorch as vp  # noqa: E402  (benchmarks/vs_pytorch.py)

DEFAULT_SETS = (
    "default=;"
    "xnnpack_off=--xla_cpu_use_xnnpack=false;"
    "ynn+eltwise=--xla_cpu_experimental_ynn_fusion_type=+eltwise;"
    "ynn+dot=--xla_cpu_experimental_ynn_fusion_type=+dot")


def parse_sets(text: str):
  out = []
  for item in filter(None, (s.strip() for s in text.split(";"))):
    if "=" not in item:
      raise ValueError(f"flag set {item!r}: expected NAME=FLAGS")
    name, flags = item.split("=", 1)
    out.append((name.strip(), flags.strip()))
  if not out:
    raise ValueError(f"--sets {text!r}: no flag set")
  return out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--models", default="unet_small,resnet18_cifar")
  ap.add_argument("--sets", default=DEFAULT_SETS,
                  help="'NAME=XLA_FLAGS;NAME=XLA_FLAGS;...' (first: baseline)")
  ap.add_argument("--rounds", type=int, default=4)
  ap.add_argument("--min-seconds", type=float, default=3.0)
  ap.add_argument("--quick", action="store_true")
  args = ap.parse_args()
  sets = parse_sets(args.sets)
  sizes = vp.QUICK_SIZES if args.quick else vp.FULL_SIZES
  base_flags = os.environ.get("XLA_FLAGS", "")
  print(f"# XLA flag sets, {os.cpu_count()} cpus, {args.rounds} rounds of >= "
        f"{args.min_seconds:g} s; ratio = {sets[0][0]} ms / set ms per round "
        "(> 1: the set is faster)", flush=True)
  for name in [n.strip() for n in args.models.split(",") if n.strip()]:
    batch, size = sizes.get(name, (4, 64))
    case = vp.make_case(name, args.quick, batch, size)
    workers = {}
    try:
      for set_name, flags in sets:
        os.environ["XLA_FLAGS"] = f"{base_flags} {flags}".strip()
        t0 = time.perf_counter()
        workers[set_name] = vp._Worker("jax", case)
        print(f"  {name} [{set_name}] ready in {time.perf_counter() - t0:.0f}"
              f" s (compile {workers[set_name].info['compile_s']:.1f} s)",
              flush=True)
      os.environ["XLA_FLAGS"] = base_flags
      ms = {k: [] for k in workers}
      load0 = os.getloadavg()[0]
      for _ in range(args.rounds):
        for k, w in workers.items():
          r = w.ask("round", args.min_seconds)
          ms[k].append(1e3 * r["wall"] / r["steps"])
      load1 = os.getloadavg()[0]
    finally:
      os.environ["XLA_FLAGS"] = base_flags
      for w in workers.values():
        w.close()
    ref = sets[0][0]
    print(f"{name} {batch}x{size}² (load {load0:.2f} -> {load1:.2f}):")
    for k, v in ms.items():
      ratios = [a / b for a, b in zip(ms[ref], v)]
      print(f"  {k:14s} ms [{' '.join(f'{x:.0f}' for x in v)}]  ratio "
            f"median {statistics.median(ratios):.3f} (range "
            f"{min(ratios):.3f}-{max(ratios):.3f})", flush=True)


if __name__ == "__main__":
  main()
