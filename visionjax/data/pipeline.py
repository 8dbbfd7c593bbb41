"""tf.data input pipelines: TFDS split -> canonical examples -> host batches.

A dataset config is resolved once (`resolve` -> `Data`: names, builders,
adapter). Every dataset is mapped to one *canonical* example layout by its
adapter (`visionjax.data.datasets`), augmented, fitted to a static size, and
then the task (`visionjax.tasks`, passed in) cuts its targets from it. The
pipeline yields NumPy host batches (this process's share of the global
batch); `visionjax.train.parallel` places them on the device mesh.

Guarantees:
* Training order and augmentation are a deterministic function of
  ``config.seed``: each epoch's order (file order and example shuffle) is a
  function of ``(seed, epoch)`` and random augmentations draw from stateless
  ops seeded by ``(seed, example_index)``. A resumed run starts at the epoch
  of ``start_step`` and skips only the part of that epoch already consumed,
  so 5 + 5 steps see exactly the data that 10 uninterrupted steps see, and
  resuming at step 100,000 costs no more than at step 10. Every epoch shows
  each of this host's examples exactly once.
* Each host reads a disjoint part of the split (`tfds.split_for_jax_process`).
* Training shuffles encoded examples (JPEG/PNG bytes) and decodes after, so
  the shuffle buffer (capped at this host's share of the split) holds bytes.
* ``dataset.name = 'a+b'`` trains on ``train_split`` of both (same family,
  e.g. ``voc/2007+voc/2012``) and evaluates on the first.
* Evaluation batches are padded to the full host batch with ``valid=False``
  examples, and every host yields the same number of batches, so each example
  counts exactly once and multi-host evaluation never deadlocks.
* Static shapes: when ``config.dataset.image_size`` is set, examples whose
  augmentation did not already produce a fixed size are fitted to it. For
  segmentation the image is shrunk to fit (never enlarged) keeping its aspect
  ratio and padded bottom/right with the mean pixel and mask 255, so every
  labelled pixel is scored once at its own resolution (VOC's <= 500 px images
  evaluate unresized at 512x512); other tasks stretch to ``image_size``
  (normalized boxes follow). Datasets of varying image size need
  ``image_size``.

The task argument is any `visionjax.tasks.base.Task`: the pipeline calls its
``corrupt(seed, example)`` (the model's input: the identity except for
denoising) and ``targets(example)`` in the tf.data map and reads its
``dense`` and ``uses_content`` flags (the latter adds ``content`` int32 [2],
the (height, width) of the input that shows the picture; `_content_fn`).
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from visionjax.data import augment_config, datasets, prepared, sources, transforms

Batch = dict[str, np.ndarray]


def host_batch_size(global_batch: int) -> int:
  """This process's share of the global batch (which must split evenly)."""
  n_proc, n_dev = jax.process_count(), jax.device_count()
  if global_batch % n_dev:
    raise ValueError(
        f"batch_size={global_batch} must be divisible by the number of "
        f"devices ({n_dev}) so every device gets the same number of examples")
  return global_batch // n_proc


def _image_features(builder: tfds.core.DatasetBuilder) -> dict[str, Any]:
  return {k: f for k, f in builder.info.features.items()
          if isinstance(f, tfds.features.Image)}


def _split_size(dc: ml_collections.ConfigDict, splits, split: str, index: int = 0,
                count: int = 1) -> int:
  """Examples of ``split`` ('a', 'a[:10%]', 'a+b', ...) that process ``index``
  of ``count`` reads: `tfds.even_splits` shares out each part separately,
  the first ``n % count`` processes getting one more."""
  total = 0
  for part in split.split("+"):
    try:
      n = splits[part.strip()].num_examples
    except (KeyError, ValueError) as e:
      raise ValueError(f"dataset {dc.name!r} has no split {part.strip()!r} "
                       f"(in {split!r}); its splits are {sorted(splits)}") from e
    total += n // count + (index < n % count)
  return total


class CanonicalInfo:
  """A builder's `tfds.core.DatasetInfo` whose ``features['image']`` is the
  feature that becomes the canonical image (Cityscapes: ``image_left``);
  every other attribute is the builder's."""

  def __init__(self, info: tfds.core.DatasetInfo, image_key: str):
    self._info = info
    self.features = {**dict(info.features.items()), "image": info.features[image_key]}

  def __getattr__(self, name: str) -> Any:
    return getattr(self._info, name)


@dataclasses.dataclass(frozen=True)
class Data:
  """``config.dataset`` resolved once: its TFDS names, adapter and builders.

  ``config`` is the dataset config (``config.dataset``); ``builders[i]`` reads
  ``names[i]`` (several for ``a+b``, one family).
  """
  config: ml_collections.ConfigDict
  names: tuple[str, ...]
  adapter: datasets.DatasetAdapter
  builders: tuple[tfds.core.DatasetBuilder, ...]

  @property
  def info(self) -> CanonicalInfo:
    """The first dataset's info; ``.features['image'].shape`` is (H, W, C),
    with None for sizes that vary between images."""
    return CanonicalInfo(self.builders[0].info, self.adapter.image_key)

  def configs(self) -> list[ml_collections.ConfigDict]:
    return [datasets.single(self.config, n) for n in self.names]

  def prepare(self) -> None:
    """Builds every dataset once into ``data_dir`` (no-op when built)."""
    for dc, builder in zip(self.configs(), self.builders):
      sources.prepare_builder(dc, builder, self.adapter.sources(datasets.config_name(dc.name)),
                              self.adapter.manual_only)
      prepared.check_files(builder)  # a missing/truncated file named now, not mid-run

  def num_classes(self, annotation: str) -> int:
    return datasets.num_classes(self.config, annotation, self.builders[0])

  def class_names(self, annotation: str) -> tuple[str, ...]:
    return datasets.class_names(self.config, annotation, self.builders[0])


def resolve(dc: ml_collections.ConfigDict) -> Data:
  """Resolves ``dc`` (``config.dataset``) once; raises on an unknown name."""
  names = tuple(datasets.dataset_names(dc))
  ad = datasets.adapter(dc)
  try:
    builders = tuple(datasets.get_builder(datasets.single(dc, n)) for n in names)
  except Exception as e:  # noqa: BLE001  (a damaged dataset_info.json gets named)
    named = prepared.info_error(dc.get("data_dir"), names, e)
    if named is e:
      raise
    raise named from None
  return Data(config=dc, names=names, adapter=ad, builders=builders)


def load_split(data: Data, split: str, *, shuffle_files: bool, seed: int,
               decode: bool = True, all_datasets: bool = False
               ) -> tuple[tf.data.Dataset, int]:
  """This process's part of ``split`` of the dataset and the split's size.

  With ``decode=False`` image features stay encoded (PNG/JPEG bytes) until
  `decode_fn` is applied, so shuffle buffers hold bytes, not pixels. For
  names joined by ``+``: every dataset's ``split``, concatenated, with
  ``all_datasets``; else the first dataset's.
  """
  data.prepare()
  count = None if all_datasets else 1
  parts = [_load_one(dc, b, split, shuffle_files, seed, decode)
           for dc, b in zip(data.configs()[:count], data.builders[:count])]
  ds = parts[0][0]
  for other, _ in parts[1:]:
    ds = ds.concatenate(other)
  return ds, sum(n for _, n in parts)


def _load_one(dc, builder, split, shuffle_files, seed, decode):
  splits = builder.info.splits
  total = _split_size(dc, splits, split)
  decoders = None if decode else {
      k: tfds.decode.SkipDecoding() for k in _image_features(builder)}
  read = dict(shuffle_files=shuffle_files, decoders=decoders,
              read_config=tfds.ReadConfig(shuffle_seed=seed))
  if _split_size(dc, splits, split, jax.process_index(), jax.process_count()):
    ds = builder.as_dataset(split=tfds.split_for_jax_process(split, drop_remainder=False),
                            **read)
  else:  # more processes than examples: TFDS rejects an empty sub-split
    ds = builder.as_dataset(split=split, **read).take(0)
  return ds, total


def examples(data: Data, split: str | None = None, *, count: int = 8
             ) -> list[dict[str, np.ndarray]]:
  """The first ``count`` examples of ``split`` (default: the eval split) as
  canonical examples in NumPy: ``image`` uint8 [H, W, 3] at its stored size
  and the annotations the dataset has (``label``, ``mask``, ``boxes``...;
  see `visionjax.data.datasets`), neither augmented, fitted nor normalized.

  For pictures and for feeding `visionjax.train.inference.Predictor` the
  images a user would have; training and evaluation read `train_dataset` and
  `eval_batches`.
  """
  ds, _ = load_split(data, split or data.config.eval_split, shuffle_files=False, seed=0)
  canonical = data.adapter.canonical
  return [{k: v.numpy() for k, v in canonical(ex).items()} for ex in ds.take(count)]


def max_host_share(data: Data, split: str, all_datasets: bool = False) -> int:
  """The most examples of ``split`` any process reads (process 0's share)."""
  count = None if all_datasets else 1
  return sum(_split_size(dc, b.info.splits, split, 0, jax.process_count())
             for dc, b in zip(data.configs()[:count], data.builders[:count]))


def _unused_features(task: Any) -> tuple[str, ...]:
  """Stored features ``task`` never reads: the instance-id PNG (`digit_scenes`,
  `voc_segmentation`, `coco_json` >= 1.1.0) unless it trains on instances."""
  return () if getattr(task, "annotation", None) == "instances" else ("instance_mask",)


def decode_fn(data: Data, task: Any) -> Callable[[dict], dict]:
  """Decodes the image features `load_split(decode=False)` left encoded,
  dropping (undecoded) those ``task`` never reads: one full-size PNG decode
  per example less for every task but instance segmentation."""
  unused = _unused_features(task)
  features = {k: f for k, f in _image_features(data.builders[0]).items() if k not in unused}
  return lambda ex: {**{k: v for k, v in ex.items() if k not in unused},
                     **{k: f.decode_example(ex[k]) for k, f in features.items()}}


def _fit_fn(data: Data, task: Any, output_size) -> Callable[[dict], dict]:
  """Brings examples to ``image_size`` unless the augmentation fixed it."""
  dc = data.config
  size = dc.get("image_size")
  if isinstance(output_size, tuple):  # the augmentation fixed the size
    return lambda ex: ex
  if not size:
    shape = data.info.features["image"].shape
    if None in shape[:2]:
      raise ValueError(
          f"dataset {dc.name!r} has images of varying size {shape}; set "
          "config.dataset.image_size = (height, width) so batches have one shape")
    return lambda ex: ex
  dense = task.dense
  return lambda ex: transforms.fit(ex, size, keep_aspect=dense, allow_upscale=not dense,
                                   fill=datasets.mean_pixel(dc))


def _content_fn(data: Data, task: Any, output_size) -> Callable[[dict], tf.Tensor] | None:
  """For a task with ``uses_content``: augmented example (before `_fit_fn`)
  -> ``content`` int32 [2], the (height, width) of the top-left part of the
  model's input that shows the picture. `transforms.fit_size` where the
  example is fitted (letterboxing pads bottom/right); the whole input where
  the augmentation fixed the size (its padding, e.g. a crop larger than a
  small image, is not tracked) or the dataset's images all have one size.
  None for other tasks: their batches stay as they were."""
  if not getattr(task, "uses_content", False):
    return None
  size = data.config.get("image_size")
  if isinstance(output_size, tuple):
    fixed = tf.constant(output_size, tf.int32)
    return lambda ex: fixed
  if not size:
    return lambda ex: tf.stack(transforms.hw(ex))
  dense = task.dense
  return lambda ex: tf.stack(transforms.fit_size(*transforms.hw(ex), size, keep_aspect=dense,
                                                 allow_upscale=not dense))


def _preprocess_fn(data: Data, task: Any, train: bool) -> Callable[[tf.Tensor, dict], dict]:
  """Canonical example -> normalized image + the task's targets."""
  dc = data.config
  mean = tf.constant(dc.get("mean", (0.5, 0.5, 0.5)), tf.float32) * 255.0
  std = tf.constant(dc.get("std", (0.25, 0.25, 0.25)), tf.float32) * 255.0
  augment = augment_config.make_augment(dc, train)
  fit = _fit_fn(data, task, augment.output_size)
  content = _content_fn(data, task, augment.output_size)
  # Instance maps never reach here for a task that does not train on them:
  # `decode_fn` drops the stored PNG, so no spatial op resamples them.

  def fn(seed: tf.Tensor, ex: dict) -> dict:
    ex = augment(seed, ex)
    extra = {} if content is None else {"content": content(ex)}
    ex = task.corrupt(seed, fit(ex))
    return {"image": (tf.cast(ex["image"], tf.float32) - mean) / std, **task.targets(ex),
            **extra}

  return fn


def _no_autograph(fn: Callable) -> Callable:
  """Map functions are plain TF ops (tf.cond where needed): skipping the
  AutoGraph source rewrite halves tracing time."""
  return tf.autograph.experimental.do_not_convert(fn)


def _host_train_size(data: Data, split: str) -> int:
  """Examples of ``split`` (all ``a+b`` datasets) this process reads per epoch."""
  index, count = jax.process_index(), jax.process_count()
  return sum(_split_size(dc, b.info.splits, split, index, count)
             for dc, b in zip(data.configs(), data.builders))


def _train_epoch(data: Data, split: str, seed: int, buffer: int, epoch_size: int
                 ) -> Callable[[tf.Tensor], tf.data.Dataset]:
  """``epoch -> dataset`` of this process's part of ``split``, once, in an
  order that is a pure function of ``(seed, epoch)``.

  The encoded examples pass a ``buffer``-sized shuffle. When that buffer
  cannot hold a whole epoch and a dataset has several files, the files are
  also read in a per-epoch shuffled order (TFDS interleaves them), so
  examples far apart on disk still mix. All seeds come from ``(seed, epoch)``
  and nothing reshuffles, so epoch ``e`` is the same stream whichever epoch
  the iterator started at: a resumed run reaches its position without
  replaying earlier epochs.
  """
  index, count = jax.process_index(), jax.process_count()
  builders = [b for dc, b in zip(data.configs(), data.builders)
              if _split_size(dc, b.info.splits, split, index, count)]
  host_split = tfds.split_for_jax_process(split, drop_remainder=False)
  decoders = lambda b: {f: tfds.decode.SkipDecoding() for f in _image_features(b)}
  # Files of the whole named splits ('train' for 'train[:90%]'): an upper
  # bound on the files this host's slice reads, known without file names.
  num_files = lambda b: sum(b.info.splits[re.sub(r"\[.*\]", "", part).strip()].num_shards
                            for part in split.split("+"))
  shuffle_files = buffer < epoch_size and any(num_files(b) > 1 for b in builders)

  def concat(parts: list[tf.data.Dataset]) -> tf.data.Dataset:
    ds = parts[0]
    for other in parts[1:]:
      ds = ds.concatenate(other)
    return ds

  def epoch_seeds(epoch: tf.Tensor) -> tf.Tensor:
    # One int64 seed per dataset's file order plus one for the example
    # shuffle; stateless, so they depend on (seed, epoch) alone.
    return tf.random.stateless_uniform(
        [len(builders) + 1], seed=tf.stack([tf.constant(seed, tf.int64), epoch]),
        minval=None, maxval=None, dtype=tf.int64)

  if not shuffle_files:
    # File order cannot matter: read it fixed, once, outside the epoch loop,
    # so TFDS may keep caching small datasets in memory across epochs.
    fixed = concat([b.as_dataset(split=host_split, shuffle_files=False,
                                 decoders=decoders(b)) for b in builders])
    return lambda epoch: fixed.shuffle(buffer, seed=epoch_seeds(epoch)[-1],
                                       reshuffle_each_iteration=False)

  def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
    seeds = epoch_seeds(epoch)
    # TFDS shuffles its file instructions in-graph with this seed: a tensor
    # seed changes the file order every epoch, reproducibly. No autocache:
    # a cache built here would be shared by every epoch and freeze epoch 0's
    # file order.
    parts = [b.as_dataset(split=host_split, shuffle_files=True, decoders=decoders(b),
                          read_config=tfds.ReadConfig(
                              shuffle_seed=seeds[k], shuffle_reshuffle_each_iteration=False,
                              try_autocache=False))
             for k, b in enumerate(builders)]
    return concat(parts).shuffle(buffer, seed=seeds[-1], reshuffle_each_iteration=False)

  return one_epoch


def train_dataset(data: Data, task: Any, *, batch_size: int, seed: int,
                  start_step: int = 0) -> tf.data.Dataset:
  """Endless, shuffled, augmented host batches of the global ``batch_size``,
  starting after ``start_step``.

  The stream is a sequence of epochs, each a permutation of this process's
  part of the train split that depends only on ``(seed, epoch)``. Resuming
  at step ``s`` starts at epoch ``s * B // N`` (host batch ``B``, host share
  ``N``) and skips the ``s * B % N`` encoded examples of it already consumed:
  the cost is bounded by one epoch instead of growing with ``s``.
  """
  dc = data.config
  batch = host_batch_size(batch_size)
  seed = seed + jax.process_index()
  data.prepare()
  epoch_size = _host_train_size(data, dc.train_split)
  if not epoch_size:
    raise ValueError(
        f"process {jax.process_index()} of {jax.process_count()} has no examples of "
        f"{dc.name!r} {dc.train_split!r} to train on: the split is smaller than the "
        "number of processes")
  # Shuffle encoded examples (bytes, not pixels: a 10k buffer of decoded
  # Cityscapes frames would need ~140 GB). Each epoch is shuffled on its own,
  # so a buffer beyond this host's share of the split would never fill.
  host_share = max_host_share(data, dc.train_split, all_datasets=True)
  buffer = max(1, min(dc.get("shuffle_buffer", 10_000), host_share))
  first = start_step * batch  # this host's examples consumed before start_step
  epoch, offset = divmod(first, epoch_size)
  ds = tf.data.Dataset.range(epoch, np.iinfo(np.int64).max).flat_map(
      _no_autograph(_train_epoch(data, dc.train_split, seed, buffer, epoch_size)))
  # Skip the consumed part of the resumed epoch while still encoded (it is
  # less than one epoch), then index every example by its position in this
  # host's stream so its augmentation seed does not depend on where the run
  # started.
  if offset:
    ds = ds.skip(offset)
  ds = tf.data.Dataset.zip(tf.data.Dataset.counter(start=first), ds)
  decode, canonical = decode_fn(data, task), data.adapter.canonical
  prep = _preprocess_fn(data, task, train=True)
  ds = ds.map(_no_autograph(lambda i, ex: prep(tf.stack([tf.cast(seed, tf.int64), i]),
                                              canonical(decode(ex)))),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def eval_batches(data: Data, task: Any, *, batch_size: int, split: str | None = None
                 ) -> Iterator[Batch]:
  """Padded host batches of the global ``batch_size`` over one pass of
  ``split`` (default: the eval split); ``valid`` marks real examples.

  Every process yields ``ceil(largest host share / host_batch)`` batches;
  a host whose share ran out yields all-padding batches (``valid`` False).
  """
  split = split or data.config.eval_split
  batch = host_batch_size(batch_size)
  ds, _ = load_split(data, split, shuffle_files=False, seed=0, decode=False)
  decode, canonical = decode_fn(data, task), data.adapter.canonical
  prep = _preprocess_fn(data, task, train=False)
  ds = ds.map(_no_autograph(lambda ex: {**prep(tf.zeros([2], tf.int64), canonical(decode(ex))),
                                       "valid": tf.constant(True)}),
              num_parallel_calls=tf.data.AUTOTUNE)
  empty = {k: np.zeros((0, *s.shape), s.dtype.as_numpy_dtype)
           for k, s in ds.element_spec.items()}
  ds = ds.batch(batch).prefetch(tf.data.AUTOTUNE)
  num_batches = math.ceil(max_host_share(data, split) / batch)
  it = ds.as_numpy_iterator()
  for _ in range(num_batches):
    b = next(it, None)
    yield pad_batch(empty if b is None else b, batch)


def pad_batch(b: Batch, size: int) -> Batch:
  """Pads every array of ``b`` along axis 0 to ``size`` with zeros."""
  n = len(b["valid"])
  if n > size:
    raise ValueError(f"batch of {n} examples is larger than the padded size {size}")
  if n == size:
    return b
  return {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)])
          for k, v in b.items()}
