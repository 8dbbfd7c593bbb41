"""Input-pipeline throughput against the matching train step, on this machine.

For the data side of the experiment configs -- CIFAR-10 (pad-crop-flip),
VOC detection with the SSD recipe (photometric, zoom-out, IoU crop, flip,
300x300), VOC segmentation (DeepLab scale jitter, 513 crops) and Cityscapes
(scale jitter, 768 crops of 1024x2048 frames), and the built-in
digit_scenes quickstarts (small CNN classification, U-Net segmentation) --
this prints:

* pipeline images/s with tf.data's default threading (all cores) and with
  one thread (the per-core figure), at the config's batch size;
* the matching model's train-step images/s (the config's model at full size,
  on one JAX CPU device, at a small batch: CPU steps are slow);
* the step fed by the pipeline (prefetched to the device) against the step
  fed one fixed batch. "keeps up" means the pipeline makes images faster
  than the step uses them; on a CPU-only machine tf.data and the XLA step
  share the same cores, so fed/fixed below 1 is that contention, not input
  starvation.

No dataset is downloaded: the archives are written in the real formats and
at the real image sizes by the test fixture writers (tests/fixtures_data.py:
VOC images scaled to 300-640 px, Cityscapes at 1024x2048 PNG) and prepared
with the real TFDS builders. Timings on a shared machine are noisy (other
processes compete for the same cores); repeat and compare ratios.

  python benchmarks/input_pipeline.py [--only cifar10,voc_det] [--batches 10]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time

import jax
import tensorflow as tf
import tensorflow_datasets as tfds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))  # archive writers, config loader

import fixtures_data as F  # noqa: E402

from visionjax.data import datasets  # noqa: E402
from visionjax.train import loop, parallel  # noqa: E402

# name: (config file, dataset override, manual folder key, step batch)
PIPELINES = {
    "cifar10": ("resnet_cifar10", None, "cifar10", 32),
    "voc_det": ("ssd300_voc", None, "voc", 4),
    "voc_seg": ("deeplabv3_voc_seg", "voc_segmentation/2012", "voc", 2),
    "cityscapes": ("deeplabv3_cityscapes", None, "cityscapes", 1),
    # The built-in dataset (rendered, no archive): the two quickstarts, whose
    # steps are the fastest and so the hardest for the input to keep up with.
    "digits_cls": ("cnn_digits", None, None, 64),
    "scenes_seg": ("unet_scenes", None, None, 16),
}


def write_archives(root: str) -> dict[str, str]:
  """Writes the archives under ``root`` once per version of the fixtures: a
  folder written by older fixtures (say, before VOC's SegmentationObject
  PNGs) is rewritten, with the TFDS folders prepared from it."""
  folders = {k: os.path.join(root, "manual", k) for k in ("cifar10", "voc", "cityscapes")}
  with open(F.__file__, "rb") as f:
    version = hashlib.sha256(f.read()).hexdigest()[:16]
  marker = os.path.join(root, "written")
  if not os.path.exists(marker) or open(marker).read() != version:
    for stale in ("manual", "tfds"):
      shutil.rmtree(os.path.join(root, stale), ignore_errors=True)
    F.write_cifar10(folders["cifar10"], per_batch=200, num_test=200)
    F.write_voc(folders["voc"], "2007", scale=10)  # both years: SSD's "07+12"
    F.write_voc(folders["voc"], "2012", scale=10)
    F.write_cityscapes(folders["cityscapes"])
    with open(marker, "w") as f:
      f.write(version)
  return folders


def prepared_config(name: str, workdir: str, folders: dict[str, str]):
  """The config of pipeline ``name`` (`PIPELINES`) with its dataset prepared
  under ``workdir`` from the archives in ``folders`` (`write_archives`)."""
  cfg_name, ds_name, folder, _ = PIPELINES[name]
  c = F.load_config(cfg_name)
  if ds_name:
    c.dataset.name = ds_name
  c.dataset.data_dir = os.path.join(workdir, "tfds")
  c.progress_bar = False
  if folder is None:  # built-in: rendered on first use
    datasets.prepare(c.dataset)
  else:
    c.dataset.manual_dir = folders[folder]
    with F.fixture_checksums(folders[folder]):
      datasets.prepare(c.dataset)
  return c


def images_per_sec(ds: tf.data.Dataset, batches: int, warmup: int = 2) -> float:
  it = ds.as_numpy_iterator()
  for _ in range(warmup):
    next(it)
  n, t = 0, time.perf_counter()
  for _ in range(batches):
    n += len(next(it)["image"])
  return n / (time.perf_counter() - t)


def one_thread(ds: tf.data.Dataset) -> tf.data.Dataset:
  opts = tf.data.Options()
  opts.threading.private_threadpool_size = 1
  opts.threading.max_intra_op_parallelism = 1
  return ds.with_options(opts)


def _timed(run_step, steps: int, min_seconds: float) -> float:
  """Steps per second over at least ``steps`` steps and ``min_seconds``."""
  n, t = 0, time.perf_counter()
  while n < steps or time.perf_counter() - t < min_seconds:
    m = run_step()
    n += 1
  jax.block_until_ready(m)
  return n / (time.perf_counter() - t)


def step_rates(config, steps: int, min_seconds: float) -> tuple[float, float, float]:
  """(compile s, images/s fed one fixed batch, images/s fed by the pipeline)."""
  exp = loop.build(config, devices=jax.devices()[:1])
  state = exp.create_state()
  it = exp.train_dataset().as_numpy_iterator()
  fixed = exp.engine.put_batch(next(it))
  t = time.perf_counter()
  state, m = exp.train_step(state, fixed)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t
  box = [state]

  def step(batch):
    box[0], metrics = exp.train_step(box[0], batch)
    return metrics

  fixed_rate = _timed(lambda: step(fixed), steps, min_seconds) * config.batch_size
  fed = parallel.prefetch_to_device(it, exp.engine.put_batch)
  jax.block_until_ready(step(next(fed)))  # fill the prefetch queue
  fed_rate = _timed(lambda: step(next(fed)), steps, min_seconds) * config.batch_size
  return compile_s, fixed_rate, fed_rate


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--only", default=",".join(PIPELINES))
  ap.add_argument("--batches", type=int, default=10, help="timed pipeline batches")
  ap.add_argument("--steps", type=int, default=3, help="timed train steps (at least)")
  ap.add_argument("--min_seconds", type=float, default=10.0,
                  help="time each step rate over at least this long")
  ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                    "visionjax_input_bench"))
  args = ap.parse_args()
  tfds.disable_progress_bar()  # keep the table readable (builders print bars)
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  folders = write_archives(args.workdir)
  print(f"{cores} cores, JAX {jax.default_backend()} x{jax.device_count()}, "
        f"TF {tf.__version__}; shared machine: figures are noisy\n")
  header = (f"{'pipeline':<11}{'batch':>6}{'img/s all':>11}{'img/s 1thr':>12}"
            f"{'step b':>7}{'compile s':>10}{'step img/s':>11}{'fed img/s':>10}"
            f"{'fed/fixed':>10}  keeps up")
  print(header)
  for name in args.only.split(","):
    cfg_name, _, _, step_batch = PIPELINES[name]
    c = prepared_config(name, args.workdir, folders)
    exp = loop.build(c, devices=jax.devices()[:1])  # builds no model: cheap
    all_rate = images_per_sec(exp.train_dataset(), args.batches)
    one_rate = images_per_sec(one_thread(exp.train_dataset()), max(args.batches // 2, 2))
    c.batch_size = step_batch
    compile_s, fixed_rate, fed_rate = step_rates(c, args.steps, args.min_seconds)
    ratio = fed_rate / fixed_rate
    keeps = "yes" if all_rate >= fixed_rate else "NO"
    print(f"{name:<11}{F.load_config(cfg_name).batch_size:>6}{all_rate:>11.1f}{one_rate:>12.1f}"
          f"{step_batch:>7}{compile_s:>10.1f}{fixed_rate:>11.2f}{fed_rate:>10.2f}"
          f"{ratio:>10.2f}  {keeps} (input {all_rate / fixed_rate:.0f}x the step)",
          flush=True)


if __name__ == "__main__":
  main()
