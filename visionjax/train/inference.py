"""Run a trained model on your own images: `Predictor`.

    predictor = Predictor.from_workdir("runs/unet", checkpoint="best")
    result = predictor("photo.jpg")               # one image -> one dict
    results = predictor([array, pil_image, url])  # a list -> a list of dicts

A `Predictor` rebuilds the run from its saved ``config.json`` (model, task,
normalisation, class names, input size), restores only the parameters and
BatchNorm statistics of one checkpoint (no optimizer state, as
`visionjax.train.evaluation` does) and runs the task's post-processing.

Inputs: file paths (``str`` / ``os.PathLike``, local or ``gs://``, read with
Pillow through `etils.epath`), PIL images, or arrays [H, W, 3] / [H, W]
(uint8 0..255, or float in [0, 1]) of any size; one image or a list (a 4-D
array [N, H, W, 3] is a list of N images).

Preprocessing is training's evaluation path (`visionjax.data.pipeline`):
each image is brought to the model's input size (``config.dataset.image_size``,
else the dataset's fixed image shape) by `visionjax.data.transforms.fit`
itself, so resampling and uint8 rounding are the pipeline's, bit for bit:

* non-dense tasks (classification, localization, detection) stretch the
  image to the input size; normalized boxes map back to the original image
  by scaling with its width and height;
* segmentation keeps the aspect ratio, shrinks to fit (never enlarges) and
  pads bottom/right with the dataset's mean pixel. The logits of the padding
  are cropped away, the rest is resized back to the original size
  **bilinearly** (`tf.image.resize`, half-pixel centres) and then
  arg-maxed. An image no larger than the input size is therefore only
  padded and cropped: its mask is exactly the model's arg-max on it.

Then pixels are normalized with ``config.dataset.mean`` / ``std`` (x 255).

Compilation: images of any size are fitted on the host, so the jitted
function only ever sees [B, h, w, 3] at the input size. Batches are padded
to a bucket size (powers of two up to ``max_batch``, and ``max_batch``),
so the function compiles at most once per bucket, whatever the image sizes
and list lengths (`Predictor.num_compiles` counts the traces).

Results (boxes in *pixels* of the original image, xyxy edges, i.e. the
normalized box times (W, H, W, H)):

* classification: ``{'class': int, 'name': str, 'probabilities': float [K]}``
* localization: ``{'class', 'name', 'score': softmax probability of the
  class, 'box': float [4]}``
* detection: ``{'boxes': float [N, 4], 'classes': int [N], 'names': [N str],
  'scores': float [N]}``, only the valid detections, best first
* segmentation: ``{'mask': int32 [H, W], 'names': the K class names}``
* instance segmentation: detection's keys and ``'masks': bool [N, H, W]``;
  the model is told each image's content size (``image_sizes``), so its
  proposals and detections lie on the picture, never in the input's padding
  (an image smaller than the input is padded, not upscaled)
"""
from __future__ import annotations

import io
import os
from typing import Any, Sequence

import jax
import numpy as np
from PIL import Image
import tensorflow as tf

from visionjax import paths
from visionjax.data import datasets, transforms
from visionjax.train import checkpoint as ckpt_lib
from visionjax.train import evaluation, loop, parallel, steps
from visionjax.train import workdir as workdir_lib

ImageLike = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray

def _buckets(max_batch: int) -> tuple[int, ...]:
  """Batch sizes the forward pass is compiled for: 1, 2, 4, ... < max_batch, max_batch."""
  if max_batch < 1:
    raise ValueError(f"max_batch={max_batch}; expected >= 1")
  out, b = [], 1
  while b < max_batch:
    out.append(b)
    b *= 2
  return (*out, max_batch)


def read_image(image: ImageLike) -> np.ndarray:
  """Any supported input -> uint8 [H, W, 3] RGB.

  Paths are read through `visionjax.paths` (local or ``gs://``); PIL images
  of any mode are converted to RGB; float arrays are taken as [0, 1] pixels
  and rounded to uint8 (training only ever saw uint8 pixels); [H, W] and
  [H, W, 1] arrays are grey and repeated to 3 channels.
  """
  if isinstance(image, (str, os.PathLike)):
    path = paths.resolve(image)
    try:
      data = path.read_bytes()
    except FileNotFoundError:
      raise FileNotFoundError(f"no image at {os.fspath(path)!r}") from None
    with Image.open(io.BytesIO(data)) as im:
      return np.asarray(im.convert("RGB"))
  if isinstance(image, Image.Image):
    return np.asarray(image.convert("RGB"))
  x = np.asarray(image)
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3 or x.shape[-1] not in (1, 3, 4) or 0 in x.shape:
    raise ValueError(f"image array has shape {x.shape}; expected [H, W, 3] (or [H, W], "
                     "[H, W, 1], [H, W, 4])")
  if x.shape[-1] == 4:
    x = x[..., :3]  # RGBA: the alpha channel is not an input of any model here
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  if np.issubdtype(x.dtype, np.floating):
    if not np.all(np.isfinite(x)):
      raise ValueError("image array has non-finite values")
    x = np.round(np.clip(x, 0.0, 1.0) * 255.0)
  elif x.dtype != np.uint8 and (x.min() < 0 or x.max() > 255):
    raise ValueError(f"integer image array ({x.dtype}) has values outside 0..255")
  return x.astype(np.uint8)


def _host(tree: Any) -> Any:
  """NumPy copy of a tree of replicated jax arrays (one shard) or host arrays."""
  return jax.tree.map(
      lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x),
      tree)


def _is_single(images: Any) -> bool:
  if isinstance(images, (str, os.PathLike, Image.Image)):
    return True
  if isinstance(images, np.ndarray) or hasattr(images, "__array__"):
    return np.ndim(images) in (2, 3)
  return False


class Predictor:
  """A trained model as a function from images to per-image results.

  See the module docstring for the inputs, the preprocessing and the
  results. Build it with `from_workdir`, or from an `Experiment` and its
  variables (tests, notebooks).

  Attributes:
    exp: the run's `visionjax.train.loop.Experiment` (config, task, model).
    task_name: ``config.task``.
    class_names: the K class names of the task's annotation.
    input_size: (h, w) the model runs at.
    buckets: the batch sizes the forward pass is compiled for.
    step: the checkpoint's step (None when built from variables).
  """

  def __init__(self, exp: loop.Experiment, variables: dict[str, Any], *,
               max_batch: int = 8, step: int | None = None):
    """Args:
      exp: the run's experiment (`visionjax.train.loop.build(config)`).
      variables: ``{'params': ..., 'batch_stats': ...}`` (host or device arrays;
        ``batch_stats`` may be empty).
      max_batch: the largest batch run at once; longer lists run in chunks.
      step: the checkpoint step, for reporting.
    """
    if exp.channels != 3:
      raise ValueError(f"the run's images have {exp.channels} channels; Predictor reads RGB "
                       "images (3 channels) only")
    self.exp = exp
    self.step = step
    self.task_name = exp.task.name
    dc = exp.config.dataset
    self.class_names = tuple(exp.class_names)
    self.input_size = tuple(int(s) for s in (
        dc.get("image_size") or exp.data.info.features["image"].shape[:2]))
    self.buckets = _buckets(int(max_batch))
    # The pipeline's constants, as it computes them (float32 x 255.0).
    self._mean = tf.constant(dc.get("mean", (0.5, 0.5, 0.5)), tf.float32) * 255.0
    self._std = tf.constant(dc.get("std", (0.25, 0.25, 0.25)), tf.float32) * 255.0
    self._fill = datasets.mean_pixel(dc)
    # One device, no collectives: the run may have trained with pmap's BatchNorm axis.
    self._model = parallel.clone_for_axis(exp.model, None)
    self._device = jax.local_devices()[0]
    self._variables = jax.device_put(
        steps.model_variables(_host(variables["params"]),
                              _host(variables.get("batch_stats") or {})),
        self._device)
    self._traces = 0
    self._forward = jax.jit(self._forward_impl)

  # ------------------------------------------------------------- building
  @classmethod
  def from_workdir(cls, workdir: str | os.PathLike, checkpoint: str | int = "latest", *,
                   max_batch: int = 8) -> "Predictor":
    """The predictor of one checkpoint of a run.

    Args:
      workdir: the run's folder (local or ``gs://``).
      checkpoint: 'latest' (the default: always exists), 'best' (by the run's
        ``config.checkpoint.best_metric``; an error names the choices when the
        run has none) or a step number (`evaluation.select_step`).
      max_batch: the largest batch run at once.
    """
    wd = workdir_lib.Workdir.existing(workdir)
    config = evaluation.load_config(wd)
    exp = loop.build(config)
    ckpt = ckpt_lib.Checkpointer(wd.checkpoints, every_steps=0, keep=1 << 30,
                                 async_save=False)
    try:
      step = evaluation.select_step(wd, ckpt, config, checkpoint)
      abstract = exp.abstract_state()
      # Parameters and BatchNorm statistics only: the optimizer state is never read.
      restored = ckpt.restore_subset(step, {"params": abstract.params,
                                            "batch_stats": abstract.batch_stats})
    finally:
      ckpt.close()
    return cls(exp, restored, max_batch=max_batch, step=step)

  # ------------------------------------------------------------ the model
  @property
  def variables(self) -> dict[str, Any]:
    """The model's variables (``params`` and, if any, ``batch_stats``), on one device."""
    return self._variables

  @property
  def num_compiles(self) -> int:
    """How many times the forward pass was traced (= compiled) so far."""
    return self._traces

  def _forward_impl(self, variables, images, content):
    """images float [B, h, w, 3] normalized, content int32 [B, 2] (each
    image's (nh, nw) in the input) -> the task's device outputs."""
    self._traces += 1  # a Python side effect: runs once per trace, never per call
    task = self.exp.task
    # The task's evaluation inputs (Mask R-CNN: image_sizes from content, so
    # it proposes and detects only on the picture, not in the padding).
    extra = task.model_inputs({"image": images, "content": content}, train=False)
    return task.inference_outputs(self._model.apply(variables, images, train=False, **extra))

  # --------------------------------------------------------- preprocessing
  def preprocess(self, image: ImageLike) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """One image -> ``(normalized float32 [h, w, 3], content (nh, nw), original (H, W))``.

    ``content`` is the part of the fitted image that shows the picture (the
    rest is segmentation's padding); it is (h, w) for stretching tasks.
    """
    pixels = read_image(image)
    dense = self.exp.task.dense
    fitted = transforms.fit({"image": tf.constant(pixels)}, self.input_size,
                            keep_aspect=dense, allow_upscale=not dense, fill=self._fill)
    x = (tf.cast(fitted["image"], tf.float32) - self._mean) / self._std
    h, w = pixels.shape[:2]
    # The same function the pipeline's `content` comes from (one rule).
    nh, nw = transforms.fit_size(h, w, self.input_size, keep_aspect=dense,
                                 allow_upscale=not dense)
    return x.numpy(), (int(nh), int(nw)), (h, w)

  # ------------------------------------------------------------ predicting
  def __call__(self, images: ImageLike | Sequence[ImageLike]) -> Any:
    return self.predict(images)

  def predict(self, images: ImageLike | Sequence[ImageLike]) -> Any:
    """One result dict per image (see the module docstring); one dict for
    one image, a list for a list (or a 4-D array)."""
    single = _is_single(images)
    items = [images] if single else list(images)
    results: list[dict[str, Any]] = []
    top = self.buckets[-1]
    for start in range(0, len(items), top):
      results.extend(self._predict_chunk(items[start:start + top]))
    return results[0] if single else results

  def _predict_chunk(self, items: Sequence[ImageLike]) -> list[dict[str, Any]]:
    prepared = [self.preprocess(im) for im in items]
    n = len(prepared)
    bucket = next(b for b in self.buckets if b >= n)
    batch = np.zeros((bucket, *self.input_size, 3), np.float32)  # padding rows are dropped
    content = np.tile(np.asarray(self.input_size, np.int32), (bucket, 1))
    for i, (x, c, _) in enumerate(prepared):
      batch[i], content[i] = x, c
    out = jax.device_get(self._forward(self._variables, jax.device_put(batch, self._device),
                                       jax.device_put(content, self._device)))
    return [to_result(self.exp.task, jax.tree.map(lambda a, i=i: np.asarray(a[i]), out),
                      self.class_names, content, size)
            for i, (_, content, size) in enumerate(prepared)]


def to_result(task: Any, out: Any, class_names: Sequence[str], content: tuple[int, int],
              size: tuple[int, int]) -> dict[str, Any]:
  """One image's forward-pass outputs -> its result at the original ``size``
  (the task's ``to_result``; see `visionjax.tasks.base.Task`)."""
  return task.to_result(out, class_names=tuple(class_names), content=tuple(content),
                        size=tuple(size))


def to_json(result: dict[str, Any]) -> dict[str, Any]:
  """A result with NumPy arrays as lists (for ``json.dumps``)."""
  return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()}
