"""Resume cost: seconds from `train_dataset(start_step=s)` to its first batch.

A resumed run restores its checkpoint and then asks the input pipeline for
the batches after step ``s``. This times exactly that input part, for a
small and a large ``s``, on the built-in scenes (`unet_scenes`, rendered on
first use, nothing downloaded), with two implementations in one process:

* ``old``: the skip-based pipeline this package used before (copied below,
  labelled): one endless shuffled stream, resumed by replaying and skipping
  ``s * batch`` encoded examples, so its cost grows with ``s``;
* ``new``: `visionjax.data.pipeline.train_dataset`, whose epochs are each a
  function of ``(seed, epoch)``: it starts at the epoch of ``s`` and skips
  less than one epoch, so its cost should not depend on ``s`` (target: the
  large-``s`` time at most 1.2x the small-``s`` time).

Each figure is the fastest of ``--repeats`` tries, after one warm-up call of
each implementation (file cache, TF tracing). With ``--throughput N`` it
also times N batches of old and new from step 0 for every pipeline of
`benchmarks/input_pipeline.py` (CIFAR-10, VOC detection and segmentation,
Cityscapes on archives written in the real formats by the test fixtures,
and the two built-in quickstarts), in ``--rounds`` alternating rounds (old
then new, then new then old, ...) so machine load hits both alike, and
prints the median images/s of each and the median of the per-round new/old
ratios: the change must not slow any pipeline. Timings on a shared machine
are noisy; compare ratios. It also prints the process CPU time per image of
each (the work, which machine load hardly changes) and their median
per-round ratio.

  python benchmarks/resume.py [--steps 100,10000] [--repeats 2] [--no_resume]
      [--throughput 10 [--rounds 6] [--min_seconds 3] [--pipelines all]]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))  # config loader

import fixtures_data as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import input_pipeline  # noqa: E402  (its pipelines, archives and dataset preparation)

from visionjax.data import datasets, pipeline  # noqa: E402
from visionjax.train import loop  # noqa: E402


# ---------------------------------------------------------------- OLD CODE
# The pre-change `pipeline.train_dataset`, verbatim but for the `pipeline.`
# prefixes, kept only as this benchmark's baseline: it resumes by skipping
# ``start_step * batch`` examples of one endless reshuffled stream.
def old_train_dataset(data, task, *, batch_size: int, seed: int,
                      start_step: int = 0) -> tf.data.Dataset:
  dc = data.config
  batch = pipeline.host_batch_size(batch_size)
  seed = seed + jax.process_index()
  ds, _ = pipeline.load_split(data, dc.train_split, shuffle_files=True, seed=seed,
                              decode=False, all_datasets=True)
  ds = ds.repeat()
  host_share = pipeline.max_host_share(data, dc.train_split, all_datasets=True)
  ds = ds.shuffle(max(1, min(dc.get("shuffle_buffer", 10_000), host_share)),
                  seed=seed, reshuffle_each_iteration=True)
  ds = tf.data.Dataset.zip(tf.data.Dataset.counter(), ds)
  if start_step:
    ds = ds.skip(start_step * batch)
  decode, canonical = pipeline.decode_fn(data, task), data.adapter.canonical
  prep = pipeline._preprocess_fn(data, task, train=True)  # pylint: disable=protected-access
  ds = ds.map(pipeline._no_autograph(  # pylint: disable=protected-access
      lambda i, ex: prep(tf.stack([tf.cast(seed, tf.int64), i]), canonical(decode(ex)))),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)
# ------------------------------------------------------------ END OLD CODE


def first_batch_seconds(make, start_step: int) -> float:
  """Seconds to build the pipeline resumed at ``start_step`` and get a batch."""
  t = time.perf_counter()
  next(make(start_step).as_numpy_iterator())
  return time.perf_counter() - t


def process_cpu_seconds() -> float:
  """User + system CPU seconds of this process, all threads (tf.data's too)."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def images_per_sec(make, batches: int, min_seconds: float = 0.0) -> tuple[float, float]:
  """``(images/s, process CPU seconds per image)`` over at least ``batches``
  batches and ``min_seconds`` (a few milliseconds of a fast pipeline are all
  noise), after two warm-up batches, from step 0.

  The CPU figure is the work per image; on a loaded machine it varies far
  less than the wall-clock rate, which also depends on how much of the
  machine this process gets (it includes what tf.data computes ahead).
  """
  it = make(0).as_numpy_iterator()
  next(it), next(it)
  n, k, t, c = 0, 0, time.perf_counter(), process_cpu_seconds()
  while k < batches or time.perf_counter() - t < min_seconds:
    n += len(next(it)["image"])
    k += 1
  return n / (time.perf_counter() - t), (process_cpu_seconds() - c) / n


def implementations(exp, config) -> dict:
  """``{'old': make, 'new': make}``, each ``make(start_step) -> tf.data.Dataset``."""
  kw = dict(batch_size=config.batch_size, seed=config.seed)
  return {
      "old": lambda s: old_train_dataset(exp.data, exp.task, start_step=s, **kw),
      "new": lambda s: pipeline.train_dataset(exp.data, exp.task, start_step=s, **kw),
  }


def resume_times(args) -> None:
  small, large = (int(s) for s in args.steps.split(","))
  c = F.load_config(args.config)
  c.dataset.data_dir = os.path.join(args.workdir, "tfds")
  c.progress_bar = False
  datasets.prepare(c.dataset)  # built-in: rendered on first use
  exp = loop.build(c, devices=jax.devices()[:1])  # builds no model: cheap
  impls = implementations(exp, c)
  n = pipeline.max_host_share(exp.data, c.dataset.train_split, all_datasets=True)
  print(f"{c.dataset.name} {c.dataset.train_split}: {n} examples, batch {c.batch_size}, "
        f"shuffle buffer {min(c.dataset.get('shuffle_buffer', 10_000), n)}; "
        f"resume at steps {small} and {large} ({small * c.batch_size} and "
        f"{large * c.batch_size} examples in)\n")
  for make in impls.values():
    first_batch_seconds(make, 0)  # warm-up: file cache, TF tracing
  print(f"{'pipeline':<9}{f'step {small} s':>14}{f'step {large} s':>16}{'ratio':>8}")
  for name, make in impls.items():
    t_small = min(first_batch_seconds(make, small) for _ in range(args.repeats))
    t_large = min(first_batch_seconds(make, large) for _ in range(args.repeats))
    print(f"{name:<9}{t_small:>14.2f}{t_large:>16.2f}{t_large / t_small:>7.2f}x", flush=True)


def throughput_table(args) -> None:
  """Old vs new images/s for every pipeline of benchmarks/input_pipeline.py."""
  names = list(input_pipeline.PIPELINES) if args.pipelines == "all" else \
      args.pipelines.split(",")
  folders = input_pipeline.write_archives(args.workdir)
  configs = {name: input_pipeline.prepared_config(name, args.workdir, folders)
             for name in names}  # prepared first: TFDS's messages stay out of the table
  print(f"\nimages/s over at least {args.throughput} batches and {args.min_seconds:g} s from "
        f"step 0 (after 2 warm-up batches), {args.rounds} alternating rounds, medians; "
        f"load average {os.getloadavg()[0]:.1f}.\n'cpu old/new': process CPU ms per image, "
        "old over new (above 1: the new pipeline does less work per image)")
  print(f"{'pipeline':<11}{'batch':>6}{'train n':>8}{'old img/s':>11}{'new img/s':>11}"
        f"{'new/old':>9}{'old ms':>8}{'new ms':>8}{'cpu old/new':>12}{'  per-round new/old':<}")
  for name, c in configs.items():
    exp = loop.build(c, devices=jax.devices()[:1])  # builds no model: cheap
    impls = implementations(exp, c)
    rates, cpu = {k: [] for k in impls}, {k: [] for k in impls}
    for r in range(args.rounds):
      for k in (("old", "new") if r % 2 == 0 else ("new", "old")):
        rate, seconds = images_per_sec(impls[k], args.throughput, args.min_seconds)
        rates[k].append(rate)
        cpu[k].append(seconds)
    ratios = [n / o for n, o in zip(rates["new"], rates["old"])]
    cpu_ratios = [o / n for n, o in zip(cpu["new"], cpu["old"])]
    # 'train n' (this host's train examples): the fixture splits are tiny,
    # and the new pipeline starts each epoch afresh (a new shuffle of the
    # split), which a split smaller than a batch does several times per batch.
    n = pipeline.max_host_share(exp.data, c.dataset.train_split, all_datasets=True)
    print(f"{name:<11}{c.batch_size:>6}{n:>8}{np.median(rates['old']):>11.1f}"
          f"{np.median(rates['new']):>11.1f}{np.median(ratios):>9.2f}"
          f"{1e3 * np.median(cpu['old']):>8.2f}{1e3 * np.median(cpu['new']):>8.2f}"
          f"{np.median(cpu_ratios):>12.2f}  "
          + " ".join(f"{x:.2f}" for x in ratios), flush=True)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--config", default="unet_scenes", help="experiments/configs name")
  ap.add_argument("--steps", default="100,10000", help="small,large resume step")
  ap.add_argument("--repeats", type=int, default=2, help="tries per figure (fastest kept)")
  ap.add_argument("--no_resume", action="store_true", help="skip the resume-time figures")
  ap.add_argument("--throughput", type=int, default=0,
                  help="also time this many batches of each pipeline from step 0")
  ap.add_argument("--rounds", type=int, default=6, help="alternating throughput rounds")
  ap.add_argument("--min_seconds", type=float, default=3.0,
                  help="time each throughput figure over at least this long")
  ap.add_argument("--pipelines", default="all",
                  help=f"throughput: 'all' or some of {','.join(input_pipeline.PIPELINES)}")
  ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                    "visionjax_input_bench"))
  args = ap.parse_args()
  tfds.disable_progress_bar()
  if not args.no_resume:
    resume_times(args)
  if args.throughput:
    throughput_table(args)


if __name__ == "__main__":
  main()
