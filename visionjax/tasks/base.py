"""The task contract: everything the training spine asks of a problem type.

A task owns what is specific to one problem (as scenic's per-task model
wrappers do): the targets it cuts from a canonical example, batch checks,
the loss, the metrics, post-processing and the picture. The data pipeline,
the steps, the engines and the loop call only the methods below, so a new
task is one new file in `visionjax/tasks/` plus one line in its registry
(`visionjax.tasks.REGISTRY`).

Everything a task computes inside a step is a *sum* with its *count*, so
data-parallel steps ``psum`` them and padded evaluation batches stay exact;
the host divides once when reporting. Metrics that are not sums (detection
AP) use the per-example hook: ``eval_examples`` returns padded per-image
arrays from the jitted eval step, the loop gathers them to host and folds
them into ``eval_update``'s state, and ``summarize(sums, state)`` reads it.

Where each method runs:

  in tf.data (graph mode)  corrupt(seed, example) -> the example the model sees
                           (identity; denoising adds its noise here)
                           targets(example) -> batch fields besides 'image'
  on host, per batch       check_values(batch)  (NumPy, before the device copy)
  at trace time            validate(batch, channels)
  inside jit               model_inputs (extra arguments of the model's call)
  inside jit               loss, train_sums, eval_sums, eval_examples, postprocess,
                           inference_outputs
  on host                  summarize_train, eval_init, eval_update, summarize,
                           visualize, to_result, draw_result
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Batch = Mapping[str, Any]


def check(cond: bool, msg: str) -> None:
  """Raises ``ValueError(msg)`` unless ``cond``."""
  if not cond:
    raise ValueError(msg)


def validate_image(batch: Batch, channels: int) -> None:
  """``batch['image']``: float [B, H, W, channels]."""
  check("image" in batch, f"batch has no 'image'; keys are {sorted(batch)}")
  img = batch["image"]
  check(img.ndim == 4, f"batch['image'] has shape {tuple(img.shape)} (rank "
        f"{img.ndim}); expected rank 4 [batch, height, width, {channels}]")
  check(jnp.issubdtype(img.dtype, jnp.floating),
        f"batch['image'] has dtype {img.dtype}; expected a float dtype "
        "(normalized pixels), e.g. float32")
  check(img.shape[-1] == channels, f"batch['image'] has {img.shape[-1]} "
        f"channels (shape {tuple(img.shape)}); the model expects {channels}")


def validate_int_field(batch: Batch, key: str, shape: tuple[int, ...]) -> None:
  """``batch[key]``: an integer array of ``shape``."""
  check(key in batch, f"batch has no {key!r}; keys are {sorted(batch)}")
  x = batch[key]
  check(tuple(x.shape) == shape,
        f"batch[{key!r}] has shape {tuple(x.shape)}; expected {shape}")
  check(jnp.issubdtype(x.dtype, jnp.integer),
        f"batch[{key!r}] has dtype {x.dtype}; expected an integer dtype")


def _where(batch: Batch, x: np.ndarray, where: np.ndarray | None) -> np.ndarray | None:
  """``where`` and ``batch['valid']`` (evaluation padding) broadcast to ``x``'s shape."""
  masks = [np.asarray(m, bool) for m in (where, batch.get("valid")) if m is not None]
  out = None
  for m in masks:
    m = m.reshape(m.shape + (1,) * (x.ndim - m.ndim))
    out = m if out is None else out & m
  return None if out is None else np.broadcast_to(out, x.shape)


def _first_bad(key: str, x: np.ndarray, bad: np.ndarray, expected: str) -> None:
  if bad.any():
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    n = int(bad.sum())
    more = f" ({n - 1} more such values)" if n > 1 else ""
    raise ValueError(f"batch[{key!r}]{list(idx)} = {x[idx]}{more}; expected {expected}")


def check_class_ids(batch: Batch, key: str, num_classes: int, *, ignore: int | None = None,
                    where: np.ndarray | None = None) -> None:
  """Host-side: ``batch[key]`` (NumPy ints) holds class ids in ``[0, num_classes)``
  or ``ignore``, wherever ``where`` and ``batch['valid']`` are True.

  Raises ValueError naming the field, the first bad element, its value and
  the allowed range. One min/max pass when every value is in range.
  """
  x = np.asarray(batch[key])
  if x.size == 0 or (x.min() >= 0 and x.max() < num_classes):
    return
  bad = (x < 0) | (x >= num_classes)
  if ignore is not None:
    bad &= x != ignore
  mask = _where(batch, x, where)
  if mask is not None:
    bad &= mask
  expected = f"class ids in [0, {num_classes})"
  _first_bad(key, x, bad, expected + (f" or {ignore} (ignored)" if ignore is not None else ""))


def check_finite(batch: Batch, key: str, *, where: np.ndarray | None = None) -> None:
  """Host-side: ``batch[key]`` (NumPy floats [..., 4] boxes or any floats) is
  finite wherever ``where`` and ``batch['valid']`` are True."""
  x = np.asarray(batch[key])
  if np.isfinite(x).all():
    return
  bad = ~np.isfinite(x)
  mask = _where(batch, x, where)
  if mask is not None:
    bad &= mask
  _first_bad(key, x, bad, "finite values")


def valid_mask(batch: Batch) -> jax.Array | None:
  """``batch['valid']`` [B] (False on evaluation padding), if present."""
  return batch.get("valid")


class Task(abc.ABC):
  """Base class of every task; subclasses are frozen dataclasses.

  Class attributes:
    name:        the registry name (``config.task``).
    annotation:  the dataset annotation it trains on: 'label', 'mask' or
                 'boxes' (`visionjax.data.datasets`); the class count and
                 class names come from it.
    dense:       per-pixel targets: fixed-size fitting keeps the aspect
                 ratio and pads (never enlarges), so every labelled pixel is
                 scored once; other tasks stretch to ``image_size``.
    uses_content: batches carry ``content`` int32 [B, 2], the (height,
                 width) of each input's top-left part that shows the picture
                 (the rest is fitting's padding; 0 in evaluation padding
                 examples), for `model_inputs` (Mask R-CNN clips its
                 proposals and detections to it). The pipeline and
                 `visionjax.train.inference.Predictor` provide it.
    metrics:     the scalar metrics ``summarize`` reports (candidates for
                 ``config.checkpoint.best_metric``; checked before training).
  """
  name: ClassVar[str]
  annotation: ClassVar[str]
  dense: ClassVar[bool] = False
  uses_content: ClassVar[bool] = False
  metrics: ClassVar[tuple[str, ...]]
  num_classes: int

  # ------------------------------------------------------------ input side
  def corrupt(self, seed: Any, example: dict) -> dict:
    """Canonical example (TF tensors, after augmentation and fitting) -> the
    example whose ``image`` the model sees, in training *and* evaluation
    (augmentations run in training only). ``seed``: int64 [2], the
    example's stateless seed in training, zeros in evaluation. The
    identity, except for tasks that make their own inputs (denoising)."""
    del seed
    return example

  @abc.abstractmethod
  def targets(self, example: dict) -> dict:
    """Canonical example (TF tensors, after augmentation) -> target fields."""

  @abc.abstractmethod
  def check_values(self, batch: Mapping[str, np.ndarray]) -> None:
    """Host-side value checks of one NumPy batch, before it goes to the
    devices: class ids in range (or the ignore value), finite boxes.
    Raises ValueError naming the field, element, value and allowed range
    (`check_class_ids`, `check_finite`). Elements masked out by padding
    (``valid``, ``box_valid``) are not checked. Must be cheap: it runs on
    every training batch."""

  @abc.abstractmethod
  def validate(self, batch: Batch, channels: int) -> None:
    """Raises ValueError naming what is wrong with ``batch`` (shapes, dtypes)."""

  # -------------------------------------------------------------- training
  def model_inputs(self, batch: Batch, *, train: bool = True) -> dict[str, Any]:
    """Keyword arguments of the model's call besides the images and
    ``train`` (jit, trace time). Training (``train=True``): Mask R-CNN
    samples its RoIs from the ground truth (``{'targets': ...}``).
    Evaluation and prediction (``train=False``; ``batch`` may hold only
    ``image`` and, for ``uses_content`` tasks, ``content``): Mask R-CNN's
    ``image_sizes``. Default: none."""
    del batch, train
    return {}

  def check_train_outputs(self, outputs: Any) -> None:
    """Trace-time check of the model's training-mode outputs (their pytree
    structure, not values) against the task's options, before the first step
    runs: ValueError naming the option and what the model returns. Default:
    nothing to check."""
    del outputs

  @abc.abstractmethod
  def loss(self, outputs: Any, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """``(loss_sum, count)``; the step divides the psum of each."""

  @abc.abstractmethod
  def train_sums(self, outputs: Any, batch: Batch) -> dict[str, jax.Array]:
    """A few cheap training metrics, as sums."""

  @abc.abstractmethod
  def summarize_train(self, sums: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Training sums (added over a log window) -> reported numbers."""

  # ------------------------------------------------------------ evaluation
  @abc.abstractmethod
  def eval_sums(self, outputs: Any, batch: Batch) -> dict[str, jax.Array]:
    """Sums added over the evaluation set (``batch['valid']`` masks padding)."""

  def eval_examples(self, outputs: Any, batch: Batch) -> dict[str, jax.Array]:
    """Per-example padded outputs for metrics that are not sums; ``{}``: none."""
    del outputs, batch
    return {}

  def eval_init(self, image_size: Sequence[int]) -> Any:
    """Host-side accumulator of ``eval_examples`` (None when unused)."""
    del image_size
    return None

  def eval_update(self, state: Any, examples: Mapping[str, np.ndarray]) -> Any:
    """Folds one batch of gathered ``eval_examples`` into ``state``."""
    del examples
    return state

  @abc.abstractmethod
  def summarize(self, sums: Mapping[str, np.ndarray], state: Any = None
                ) -> dict[str, Any]:
    """Evaluation sums (and ``eval_init``/``eval_update`` state) -> metrics."""

  # ----------------------------------------------------------- predictions
  def postprocess(self, outputs: Any) -> Any:
    """Model outputs -> predictions (jittable; detection: NMS)."""
    return outputs

  # ------------------------------------------------------ your own images
  @abc.abstractmethod
  def inference_outputs(self, outputs: Any) -> Any:
    """Model outputs -> what a `Predictor` brings to host (jittable): e.g.
    classes and probabilities, padded detections, logits."""

  @abc.abstractmethod
  def to_result(self, out: Mapping[str, np.ndarray] | np.ndarray, *,
                class_names: Sequence[str], content: tuple[int, int],
                size: tuple[int, int]) -> dict[str, Any]:
    """One image's ``inference_outputs`` (NumPy) -> its result at the
    original ``size`` (H, W); ``content`` (nh, nw) is the part of the model's
    input that showed the image (the rest is padding). Boxes in pixels."""

  @abc.abstractmethod
  def draw_result(self, image: np.ndarray, result: Mapping[str, Any],
                  class_names: Sequence[str]) -> np.ndarray:
    """``result`` drawn over ``image`` (uint8 [H, W, 3]) -> uint8 [H, W, 3]."""

  @abc.abstractmethod
  def visualize(self, images: np.ndarray, batch: Mapping[str, np.ndarray],
                predictions: Any, class_names: Sequence[str], path: str) -> None:
    """Writes the task's picture of ``predictions`` on ``images`` [N, H, W, 3]
    in [0, 1] (``batch`` holds the ground truth) to ``path``."""


def pixel_scale(size: tuple[int, int]) -> np.ndarray:
  """Normalized xyxy -> pixel edges of an image of ``size`` (H, W)."""
  h, w = size
  return np.asarray([w, h, w, h], np.float32)
