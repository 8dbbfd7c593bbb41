"""Images/s of the jitted SSD train step and of jitted post-processing.

    python benchmarks/detection.py                       # ssd_lite and ssd300_vgg16
    python benchmarks/detection.py --models ssd_lite --train-batch 32 --iters 20

Train step: exactly the training spine's program (`visionjax.train.steps.
train_step` with `DetectionTask`): forward, matching of padded ground truth
to every default box, multibox loss with hard-negative mining, backward and
the optimizer update — one `jax.jit`, timed after a warm-up call. Post-
processing: `DetectionTask.postprocess` (softmax, decode, per-class top-400,
class-aware NMS, top-200) on a batch of model outputs, one `jax.jit`. Its
inputs are random logits, so thousands of boxes pass the 0.01 score
threshold: a worst case for NMS (trained models leave far fewer).

Prints compile time, seconds per call, images/s and, for the train step,
XLA's FLOP estimate. On a shared CPU the numbers move with the load.
"""
from __future__ import annotations

import argparse
import functools
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import visionjax.models as vm  # noqa: E402
from visionjax.tasks import DetectionTask  # noqa: E402
from visionjax.train import steps  # noqa: E402
from visionjax.train.state import init_state  # noqa: E402

NUM_CLASSES = {"ssd_lite": 10}     # the digit scenes; others: VOC's 20


def _batch(rng, b, size, max_boxes=8):
  h, w = size
  xy = rng.uniform(0, 0.6, (b, max_boxes, 2))
  wh = rng.uniform(0.1, 0.4, (b, max_boxes, 2))
  xyxy = np.concatenate([xy, xy + wh], -1).astype(np.float32)
  return {"image": rng.normal(size=(b, h, w, 3)).astype(np.float32),
          "boxes": xyxy, "box_labels": rng.integers(0, 10, (b, max_boxes)).astype(np.int32),
          "box_valid": np.arange(max_boxes)[None] < rng.integers(1, 4, (b, 1))}


def _time(fn, *args, iters):
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(iters):
    out = jax.block_until_ready(fn(*args))
  return compile_s, (time.perf_counter() - t0) / iters, out


def bench_train(name, batch, iters, rng):
  spec = vm.spec_of(name)
  k = NUM_CLASSES.get(name, 20)
  model = vm.create(name, num_classes=k)
  task = DetectionTask(k)
  tx = optax.sgd(1e-3, momentum=0.9)
  size = spec.input_size
  state = jax.jit(functools.partial(init_state, model=model, tx=tx,
                                    input_shape=(1, *size, 3)))(jax.random.key(0))
  step = jax.jit(functools.partial(steps.train_step, model=model, tx=tx, task=task,
                                   schedule=optax.constant_schedule(1e-3), channels=3))
  data = jax.device_put(_batch(rng, batch, size))
  t0 = time.perf_counter()
  compiled = step.lower(state, data).compile()
  compile_s = time.perf_counter() - t0
  flops = compiled.cost_analysis() or {}
  flops = flops[0] if isinstance(flops, (list, tuple)) else flops
  gflop = float(flops.get("flops", float("nan"))) / 1e9
  # The step donates nothing here, so the same state can be reused.
  _, sec, _ = _time(compiled, state, data, iters=iters)
  print(f"train step   {name:16s} {size[0]}x{size[1]} batch {batch:3d}: "
        f"{sec:7.3f} s/step  {batch / sec:8.1f} images/s  "
        f"(compile {compile_s:5.1f} s, XLA estimate {gflop:7.1f} GFLOP/step, "
        f"{gflop / sec:5.1f} GFLOP/s)")
  return model, task, state, size, k


def bench_postprocess(name, model, task, state, size, k, batch, iters, rng):
  a = int(jax.eval_shape(lambda v, x: model.apply(v, x), {"params": state.params,
                                                           "batch_stats": state.batch_stats}
                         if state.batch_stats else {"params": state.params},
                         jax.ShapeDtypeStruct((1, *size, 3), jnp.float32))["anchors"].shape[0])
  outputs = {"logits": jnp.asarray(rng.normal(0, 2, (batch, a, k + 1)), jnp.float32),
             "offsets": jnp.asarray(rng.normal(0, 0.5, (batch, a, 4)), jnp.float32),
             "anchors": jnp.asarray(rng.uniform(0.05, 0.9, (a, 4)), jnp.float32)}
  t0 = time.perf_counter()
  post = jax.jit(task.postprocess).lower(outputs).compile()
  compile_s = time.perf_counter() - t0
  _, sec, dets = _time(post, outputs, iters=iters)
  per_image = float(np.mean(np.asarray(dets.valid).sum(-1)))
  print(f"postprocess  {name:16s} {a:6d} boxes x {k + 1:2d} classes, batch {batch:3d}: "
        f"{sec:7.3f} s/batch {batch / sec:8.1f} images/s  (compile {compile_s:5.1f} s, "
        f"{per_image:.0f} detections/image kept)")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", nargs="+", default=["ssd_lite", "ssd300_vgg16"])
  p.add_argument("--train-batch", type=int, default=0,
                 help="images per train step (default: 32 for ssd_lite, 2 otherwise)")
  p.add_argument("--post-batch", type=int, default=8)
  p.add_argument("--iters", type=int, default=5)
  args = p.parse_args()
  rng = np.random.default_rng(0)
  print(f"devices: {jax.devices()}  cpus: {os.cpu_count()}  load: {os.getloadavg()[0]:.1f}")
  for name in args.models:
    batch = args.train_batch or (32 if name == "ssd_lite" else 2)
    iters = args.iters if name == "ssd_lite" else max(1, args.iters // 2)
    model, task, state, size, k = bench_train(name, batch, iters, rng)
    bench_postprocess(name, model, task, state, size, k, args.post_batch, args.iters, rng)


if __name__ == "__main__":
  main()
