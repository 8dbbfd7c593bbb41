"""Benchmark every registered model on the current JAX backend.

For each model: trainable parameters, FLOPs per image (XLA's cost analysis
of the compiled inference function, divided by the batch), compile time of
the train step, and train-step / inference throughput in images per second.

    python benchmarks/models.py                # one model per family, 64 px
    python benchmarks/models.py --models all   # every registered model
    python benchmarks/models.py --models resnet50,unet --resolution 224
    python benchmarks/models.py --models segmentation --batch 8 --dtype bfloat16

Resolution: each model runs at min(--resolution, its published input size),
so the 32×32 CIFAR models stay at 32×32; the row prints what was used. The
train step is one SGD-with-momentum update on a task-appropriate loss
(cross-entropy; per-pixel for segmentation; + L1 on boxes for localizers;
mean squared outputs for backbones and detectors), with BatchNorm statistics
updated.
Weights are random: speed does not depend on their values.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import visionjax.models as vm

# One model per family, so the default run stays near 10 minutes on a
# 2-core CPU (compiling a deep network's train step takes 10-40 s there);
# `--models all` benchmarks every registered name.
DEFAULT_MODELS = (
    "small_cnn", "lenet5", "alexnet", "vgg16", "resnet18", "resnet50",
    "resnet18_cifar", "efficientnet_b0", "resnet18_localizer", "fcn8s",
    "unet_small", "unet", "segnet", "deeplabv3_resnet50")


def _random_variables(shapes: Any, seed: int = 0) -> Any:
  """Random weights from NumPy with the shapes of `model.init` (no compile)."""
  rng = np.random.default_rng(seed)

  def fill(leaf):
    fan_in = int(np.prod(leaf.shape[:-1])) if leaf.ndim > 1 else 1
    return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(fan_in),
                       leaf.dtype)

  return jax.tree_util.tree_map(fill, shapes)


def _loss(task: str, out: Any, labels: Any) -> jax.Array:
  if task in ("classification", "segmentation"):
    return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()
  if task == "localization":
    return (optax.softmax_cross_entropy_with_integer_labels(
        out["logits"], labels).mean() + jnp.abs(out["boxes"] - 0.5).mean())
  # Backbones and detectors: mean squared outputs, a stand-in differentiable
  # loss with the same backward cost as a real one.
  return sum(jnp.mean(jnp.square(f)) for f in jax.tree_util.tree_leaves(out)
             if jnp.issubdtype(f.dtype, jnp.floating))


def _labels(task: str, num_classes: int, batch: int, size: Tuple[int, int]):
  if task == "segmentation":
    return jnp.zeros((batch, *size), jnp.int32)
  return jnp.arange(batch, dtype=jnp.int32) % max(num_classes, 1)


def _time(fn: Callable[[], Any], min_seconds: float, min_iters: int) -> float:
  """Seconds per call, after one warm-up call."""
  jax.block_until_ready(fn())
  n, start = 0, time.perf_counter()
  while n < min_iters or time.perf_counter() - start < min_seconds:
    jax.block_until_ready(fn())
    n += 1
  return (time.perf_counter() - start) / n


def _flops(compiled: Any) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", float("nan")))


def bench_model(name: str, resolution: int, batch: int, dtype: Any,
                min_seconds: float) -> Dict[str, Any]:
  spec = vm.spec_of(name)
  model = vm.create(name, dtype=dtype)
  size = (min(resolution, spec.input_size[0]),
          min(resolution, spec.input_size[1]))
  images = jnp.asarray(np.random.default_rng(1).standard_normal(
      (batch, *size, spec.in_channels)), jnp.float32)
  key = jax.random.key(0)
  variables = _random_variables(jax.eval_shape(
      model.init, {"params": key, "dropout": key}, images))
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}
  labels = _labels(spec.task, getattr(model, "num_classes", 1), batch, size)
  tx = optax.sgd(0.01, momentum=0.9)
  opt_state = tx.init(params)

  def train_step(p, s, o, x):
    def loss_fn(p):
      out, new_s = model.apply({"params": p, **s}, x, train=True,
                               rngs={"dropout": key}, mutable=list(s))
      return _loss(spec.task, out, labels), new_s
    (loss, new_s), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
    updates, o = tx.update(grads, o, p)
    return optax.apply_updates(p, updates), new_s, o, loss

  def infer(p, s, x):
    return model.apply({"params": p, **s}, x, train=False)

  t0 = time.perf_counter()
  train = jax.jit(train_step, donate_argnums=(0, 1, 2)).lower(
      params, state, opt_state, images).compile()
  compile_s = time.perf_counter() - t0
  fwd = jax.jit(infer).lower(params, state, images).compile()
  flops = _flops(fwd) / batch

  carry = [params, state, opt_state]

  def run_train():
    carry[0], carry[1], carry[2], loss = train(*carry, images)
    return loss

  train_s = _time(run_train, min_seconds, 2)
  infer_s = _time(lambda: fwd(carry[0], carry[1], images), min_seconds, 3)
  return {"model": name, "task": spec.task,
          "params": vm.count_params(variables), "gflops": flops / 1e9,
          "compile_s": compile_s, "train_ips": batch / train_s,
          "infer_ips": batch / infer_s, "batch": batch,
          "resolution": f"{size[0]}x{size[1]}"}


def _select(arg: str) -> List[str]:
  if arg == "all":
    return vm.list_models()
  if arg == "default":
    return list(DEFAULT_MODELS)
  out: List[str] = []
  for item in arg.split(","):
    item = item.strip()
    if item in set(vm.MODEL_TASKS.values()):  # a task name: all its models
      out += vm.list_models(item)
    else:
      vm.spec_of(item)  # ValueError listing the valid names.
      out.append(item)
  return out


def main(argv: List[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="default",
                      help="'default' (one per family), 'all', a task "
                      "name, or comma-separated names")
  parser.add_argument("--resolution", type=int, default=64,
                      help="side in pixels (capped at the published size)")
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--dtype", default="float32",
                      choices=["float32", "bfloat16", "float16"])
  parser.add_argument("--min-seconds", type=float, default=0.3,
                      help="minimum timed seconds per measurement")
  args = parser.parse_args(argv)
  dtype = getattr(jnp, args.dtype)
  names = _select(args.models)
  dev = jax.devices()[0]
  print(f"backend={jax.default_backend()} device={dev.device_kind} "
        f"devices={jax.device_count()} jax={jax.__version__} "
        f"dtype={args.dtype} batch={args.batch}", flush=True)
  header = (f"{'model':28s} {'params':>12s} {'GFLOPs/img':>10s} "
            f"{'compile s':>9s} {'train img/s':>11s} {'infer img/s':>11s} "
            f"{'batch':>5s} {'resolution':>10s}")
  print(header)
  print("-" * len(header), flush=True)
  t_all = time.perf_counter()
  for name in names:
    try:
      r = bench_model(name, args.resolution, args.batch, dtype,
                      args.min_seconds)
    except Exception as e:  # report and keep benchmarking the others.
      print(f"{name:28s} FAILED: {type(e).__name__}: {e}", flush=True)
      continue
    print(f"{r['model']:28s} {r['params']:>12,d} {r['gflops']:>10.3f} "
          f"{r['compile_s']:>9.1f} {r['train_ips']:>11.1f} "
          f"{r['infer_ips']:>11.1f} {r['batch']:>5d} {r['resolution']:>10s}",
          flush=True)
  print(f"total {time.perf_counter() - t_all:.0f} s", file=sys.stderr)


if __name__ == "__main__":
  main()
