"""Images/s of the jitted detector train step, post-processing and inference.

    python benchmarks/detection.py                       # ssd_lite and ssd300_vgg16
    python benchmarks/detection.py --models ssd_lite --train-batch 32 --iters 20
    python benchmarks/detection.py --models ssd_lite yolo_lite   # SSD vs YOLO-style
    python benchmarks/detection.py --inference ssd_lite=/tmp/ssd yolo_lite=/tmp/yolo

Train step: exactly the training spine's program (`visionjax.train.steps.
train_step` with `DetectionTask`): forward, matching of padded ground truth
to every default box, multibox loss with hard-negative mining, backward and
the optimizer update — one `jax.jit`, timed after a warm-up call. Post-
processing: `DetectionTask.postprocess` (softmax, decode, per-class top-400,
class-aware NMS, top-200) on a batch of model outputs, one `jax.jit`. Its
inputs are random logits, so thousands of boxes pass the 0.01 score
threshold: a worst case for NMS (trained models leave far fewer).

The YOLO-style grid models (`yolo_lite`, ...) run through the same task and
the same timings; their post-processing inputs are random logits too.

``--inference NAME=WORKDIR ...``: end-to-end inference of trained runs
(model forward in eval mode + the task's post-processing, one `jax.jit`, as
`visionjax.train.inference.Predictor` runs it) on the first ``--infer-batch``
held-out images of the run's dataset, normalized as the run was, with the
run's best checkpoint and task options; prints images/s of each and the
ratio of each to the first.

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

NUM_CLASSES = {"ssd_lite": 10, "yolo_lite": 10}     # the digit scenes; others: VOC's 20
SMALL = ("ssd_lite", "yolo_lite")                    # batch 32 and full iterations


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
  shapes = jax.eval_shape(lambda v, x: model.apply(v, x), {"params": state.params,
                                                            "batch_stats": state.batch_stats}
                          if state.batch_stats else {"params": state.params},
                          jax.ShapeDtypeStruct((1, *size, 3), jnp.float32))
  if "anchors" in shapes:
    a = int(shapes["anchors"].shape[0])
    outputs = {"logits": jnp.asarray(rng.normal(0, 2, (batch, a, k + 1)), jnp.float32),
               "offsets": jnp.asarray(rng.normal(0, 0.5, (batch, a, 4)), jnp.float32),
               "anchors": jnp.asarray(rng.uniform(0.05, 0.9, (a, 4)), jnp.float32)}
  else:  # a grid head: random logits and distances at the model's own cells
    a = int(shapes["points"].shape[0])
    consts = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                         jnp.zeros((1, *size, 3)))
    outputs = {"obj_logits": jnp.asarray(rng.normal(0, 2, (batch, a)), jnp.float32),
               "cls_logits": jnp.asarray(rng.normal(0, 2, (batch, a, k)), jnp.float32),
               "box_deltas": jnp.asarray(rng.normal(0, 0.5, (batch, a, 4)), jnp.float32),
               **{n: consts[n] for n in ("points", "strides", "size_ranges")}}
  t0 = time.perf_counter()
  post = jax.jit(task.postprocess).lower(outputs).compile()
  compile_s = time.perf_counter() - t0
  _, sec, dets = _time(post, outputs, iters=iters)
  per_image = float(np.mean(np.asarray(dets.valid).sum(-1)))
  scores = f"{k + 1:2d} classes" if "anchors" in shapes else f"{k:2d} classes"
  print(f"postprocess  {name:16s} {a:6d} boxes x {scores}, batch {batch:3d}: "
        f"{sec:7.3f} s/batch {batch / sec:8.1f} images/s  (compile {compile_s:5.1f} s, "
        f"{per_image:.0f} detections/image kept)")


def _held_out_images(config, n):
  """The first n held-out images of a run's dataset, normalized as in training."""
  import tensorflow_datasets as tfds
  dc = config.dataset
  ds = tfds.load(dc.name, split="test", data_dir=dc.get("data_dir") or None)
  images = np.stack([ex["image"] for ex in tfds.as_numpy(ds.take(n))]).astype(np.float32)
  mean = np.asarray(dc.get("mean", (0.5, 0.5, 0.5)), np.float32) * 255.0
  std = np.asarray(dc.get("std", (0.25, 0.25, 0.25)), np.float32) * 255.0
  return (images - mean) / std


def bench_inference(runs, batch, iters, rounds=5):
  """Forward + post-processing of trained runs on the same held-out images.

  The runs are compiled first, then timed in ``rounds`` alternating rounds
  of ``iters`` calls each (A B A B ...), so that a change of load on a shared
  machine hits every run alike; the median round is reported.
  """
  from visionjax.train.inference import Predictor
  timed = []
  for item in runs:
    name, _, workdir = item.partition("=")
    pred = Predictor.from_workdir(workdir, "best")
    model, task = pred.exp.model, pred.exp.task
    images = jax.device_put(_held_out_images(pred.exp.config, batch))
    fn = jax.jit(lambda v, x, m=model, t=task: t.inference_outputs(m.apply(v, x, train=False)))
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(pred.variables, images))
    compile_s = time.perf_counter() - t0
    kept = float(np.mean(np.asarray(out["valid"]).sum(-1)))
    timed.append((name, pred, fn, images, compile_s, kept, []))
  for _ in range(rounds):
    for _name, pred, fn, images, _, _, secs in timed:
      secs.append(_time(fn, pred.variables, images, iters=iters)[1])
  rates = []
  for name, pred, _fn, images, compile_s, kept, secs in timed:
    sec = float(np.median(secs))
    rates.append(images.shape[0] / sec)
    print(f"inference    {name:16s} {pred.exp.config.model.name:12s} batch {images.shape[0]:3d}: "
          f"{sec:7.3f} s/batch {rates[-1]:8.1f} images/s  (median of {rounds} alternating "
          f"rounds of {iters}; compile {compile_s:5.1f} s, {kept:.1f} detections/image kept, "
          f"step {pred.step})")
  for (name, *_), rate in zip(timed[1:], rates[1:]):
    print(f"ratio {name} / {timed[0][0]}: {rate / rates[0]:.2f}x images/s")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", nargs="+", default=["ssd_lite", "ssd300_vgg16"])
  p.add_argument("--train-batch", type=int, default=0,
                 help="images per train step (default: 32 for ssd_lite, 2 otherwise)")
  p.add_argument("--post-batch", type=int, default=8)
  p.add_argument("--iters", type=int, default=5)
  p.add_argument("--inference", nargs="+", default=None, metavar="NAME=WORKDIR",
                 help="time end-to-end inference of these trained runs instead")
  p.add_argument("--infer-batch", type=int, default=200)
  args = p.parse_args()
  rng = np.random.default_rng(0)
  print(f"devices: {jax.devices()}  cpus: {os.cpu_count()}  load: {os.getloadavg()[0]:.1f}")
  if args.inference:
    bench_inference(args.inference, args.infer_batch, args.iters)
    return
  for name in args.models:
    batch = args.train_batch or (32 if name in SMALL else 2)
    iters = args.iters if name in SMALL else max(1, args.iters // 2)
    model, task, state, size, k = bench_train(name, batch, iters, rng)
    bench_postprocess(name, model, task, state, size, k, args.post_batch, args.iters, rng)


if __name__ == "__main__":
  main()
