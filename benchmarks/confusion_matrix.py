"""Benchmark: jitted confusion-matrix throughput, 19 classes, 1024x2048 label maps.

Compares visionjax.metrics.segmentation.confusion_matrix (jit, int32
scatter-add) with NumPy's bincount of label*C+pred on the same data, checks
that both give the same counts, and prints megapixels per second and the ratio.

  python benchmarks/confusion_matrix.py [--batch 2] [--repeats 10]
"""
import argparse
import time

import jax
import numpy as np

from visionjax.metrics import segmentation

C = 19


def best_time(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return min(times)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=2)
  ap.add_argument("--repeats", type=int, default=10)
  args = ap.parse_args()
  rng = np.random.default_rng(0)
  shape = (args.batch, 1024, 2048)
  labels = rng.integers(0, C, shape).astype(np.int32)
  labels[:, :64] = 255                                   # an ignored band, as in Cityscapes
  preds = np.where(rng.random(shape) < 0.8, labels % C, rng.integers(0, C, shape)).astype(np.int32)
  pixels = labels.size

  fn = jax.jit(lambda l, p: segmentation.confusion_matrix(l, p, C))
  l_dev, p_dev = jax.device_put(labels), jax.device_put(preds)
  cm = np.asarray(fn(l_dev, p_dev).block_until_ready())  # compile
  t_jax = best_time(lambda: fn(l_dev, p_dev).block_until_ready(), args.repeats)

  def numpy_cm():
    m = labels != 255
    return np.bincount(labels[m] * C + preds[m], minlength=C * C).reshape(C, C)

  ref = numpy_cm()
  t_np = best_time(numpy_cm, max(3, args.repeats // 3))
  print(f"device: {jax.devices()[0].platform}, batch {shape}, {C} classes")
  print(f"visionjax confusion_matrix (jit): {t_jax * 1e3:.2f} ms/batch, "
        f"{pixels / t_jax / 1e6:.1f} Mpixel/s, {args.batch / t_jax:.1f} images/s")
  print(f"numpy bincount reference:         {t_np * 1e3:.2f} ms/batch, "
        f"{pixels / t_np / 1e6:.1f} Mpixel/s")
  print(f"ratio visionjax / numpy: {t_np / t_jax:.1f}x; counts identical: "
        f"{np.array_equal(cm, ref)}")


if __name__ == "__main__":
  main()
