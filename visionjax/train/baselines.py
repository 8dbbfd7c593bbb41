"""Classical segmentation baselines vs. a trained U-Net on the built-in scenes.

    rows = score_baselines("digit_scenes/dense64", split="test", unet_workdir="runs/unet")
    print(format_table(rows))

Each `visionjax.classical` method becomes a foreground/background segmenter
of an RGB image (the digits are foreground, whatever their class), and is
scored on the held-out split with the package's segmentation metrics
(`visionjax.metrics.segmentation`: one 2 x 2 pixel confusion matrix over the
split). The scenes' digits are drawn in a colour contrasting with the local
background, lighter or darker, so the unsupervised methods decide polarity
the same way: the *smaller* side of a split is the foreground (digits cover
about 13 % of the pixels).

  otsu            gray > Otsu threshold (or <), the smaller side
  local_gaussian  gray vs. its 15 x 15 Gaussian-weighted mean +- 0.03, on the
                  side Otsu found the digits (adaptive thresholding)
  sobel_filled    Sobel magnitude > its Otsu threshold, holes filled
  canny_filled    Canny edges (sigma 1), holes filled
  kmeans          2-means of the pixel colours (k-means++ seed 0), smaller cluster
  spectral        2-way spectral clustering of the 16 x 16 (4 x 4 mean-pooled)
                  pixel graph (colour sigma 0.15, space sigma 3 px, radius 4 px),
                  smaller cluster, up-sampled by repetition
  slic_otsu       SLIC superpixels (100, compactness 0.1), each pixel replaced
                  by its superpixel's mean gray, then Otsu's smaller side
  unet            a trained segmentation run's prediction, foreground = any digit
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from visionjax import classical
from visionjax.data import pipeline
from visionjax.metrics import segmentation as seg_metrics
from visionjax.train.config import base_config


def _smaller_side(side):
  """[H, W] bool -> the side (True or False pixels) that has fewer pixels."""
  return jnp.where(jnp.mean(side) > 0.5, ~side, side)


def _otsu(image):
  gray = classical.to_gray(image)
  return _smaller_side(gray > classical.threshold_otsu(gray))


def _local_gaussian(image):
  gray = classical.to_gray(image)
  bright = jnp.mean(gray > classical.threshold_otsu(gray)) < 0.5  # digits lighter
  local = classical.threshold_local(gray, 15, "gaussian")
  return jnp.where(bright, gray > local + 0.03, gray < local - 0.03)


def _sobel_filled(image):
  mag = classical.sobel(classical.to_gray(image))
  return classical.fill_holes(mag > classical.threshold_otsu(mag))


def _canny_filled(image):
  return classical.fill_holes(classical.canny(classical.to_gray(image), 1.0))


def _kmeans(image):
  labels = classical.kmeans_image(jax.random.key(0), image.astype(jnp.float32) / 255.0, 2)
  return _smaller_side(labels == 1)


def _spectral(image, pool: int = 4):
  h, w, c = image.shape
  x = image.astype(jnp.float32).reshape(h // pool, pool, w // pool, pool, c).mean((1, 3)) / 255
  aff = classical.pixel_affinity(x, sigma_colour=0.15, sigma_space=3.0, radius=4.0)
  labels = classical.spectral_clustering(jax.random.key(0), aff, 2).reshape(h // pool, w // pool)
  fg = _smaller_side(labels == 1)
  return jnp.repeat(jnp.repeat(fg, pool, 0), pool, 1)


def _slic_otsu(image):
  x = image.astype(jnp.float32) / 255.0
  labels = classical.slic(x, 100, 0.1, 10)
  gray = classical.to_gray(x).ravel()
  n = classical.grid_seeds(*labels.shape, 100)[0].shape[0]  # the label count
  sums = jax.ops.segment_sum(gray, labels.ravel(), n)
  counts = jax.ops.segment_sum(jnp.ones_like(gray), labels.ravel(), n)
  smooth = (sums / jnp.maximum(counts, 1.0))[labels]
  return _smaller_side(smooth > classical.threshold_otsu(smooth))


METHODS: dict[str, Callable] = {
    "otsu": _otsu, "local_gaussian": _local_gaussian, "sobel_filled": _sobel_filled,
    "canny_filled": _canny_filled, "kmeans": _kmeans, "spectral": _spectral,
    "slic_otsu": _slic_otsu}


def _scores(cm: np.ndarray) -> dict[str, float]:
  s = seg_metrics.segmentation_scores(cm)
  return {"fg_iou": float(s["iou_per_class"][1]), "miou": float(s["miou"]),
          "pixel_accuracy": float(s["pixel_accuracy"]), "mean_dice": float(s["mean_dice"])}


def _confusion(fg_true: np.ndarray, fg_pred: np.ndarray) -> np.ndarray:
  return np.asarray(seg_metrics.confusion_matrix(jnp.asarray(fg_true, jnp.int32),
                                                 jnp.asarray(fg_pred, jnp.int32), 2,
                                                 ignore_index=None))


def load_split(dataset: str, split: str, count: int | None, data_dir: str | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images [N, H, W, 3] and bool foreground [N, H, W] (mask > 0,
  ignored pixels 255 excluded) of a split."""
  dc = base_config().dataset
  dc.name = dataset
  dc.data_dir = data_dir
  data = pipeline.resolve(dc)
  exs = pipeline.examples(data, split, count=count or 10 ** 9)
  images = np.stack([e["image"] for e in exs])
  fg = np.stack([(e["mask"] > 0) & (e["mask"] != 255) for e in exs])
  return images, fg


def score_baselines(dataset: str = "digit_scenes/dense64", split: str = "test", *,
                    count: int | None = None, methods: Sequence[str] | None = None,
                    unet_workdir: str | None = None, unet_checkpoint: str = "best",
                    batch: int = 50, data_dir: str | None = None) -> list[dict[str, Any]]:
  """Scores each method on ``count`` images (default all) of ``split``.

  Returns:
    One row per method: ``method``, ``fg_iou`` (foreground IoU), ``miou``
    (mean of background and foreground IoU), ``pixel_accuracy``,
    ``mean_dice`` and ``ms_per_image`` (wall time after compilation, this
    machine).
  """
  images, fg = load_split(dataset, split, count, data_dir)
  batch = min(batch, len(images))
  names = list(methods or METHODS)
  unknown = [m for m in names if m not in METHODS]
  if unknown:
    raise ValueError(f"unknown method(s) {unknown}; expected some of {list(METHODS)}")
  rows = []
  for name in names:
    fn = jax.jit(jax.vmap(METHODS[name]))
    jax.block_until_ready(fn(jnp.asarray(images[:batch])))  # compile outside the timing
    start, preds = time.perf_counter(), []
    for i in range(0, len(images), batch):
      chunk = images[i:i + batch]
      if len(chunk) < batch:  # one compiled shape: pad the last chunk
        chunk = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:],
                                                chunk.dtype)])
      preds.append(np.asarray(fn(jnp.asarray(chunk))))
    elapsed = time.perf_counter() - start
    pred = np.concatenate(preds)[:len(images)]
    rows.append({"method": name, **_scores(_confusion(fg, pred)),
                 "ms_per_image": 1000 * elapsed / len(images)})
  if unet_workdir:
    from visionjax.train.inference import Predictor
    predictor = Predictor.from_workdir(unet_workdir, unet_checkpoint, max_batch=batch)
    predictor(list(images[:1]))  # compile
    start = time.perf_counter()
    results = predictor(list(images))
    elapsed = time.perf_counter() - start
    pred = np.stack([r["mask"] > 0 for r in results])
    rows.append({"method": f"unet ({unet_workdir}, {unet_checkpoint})",
                 **_scores(_confusion(fg, pred)), "ms_per_image": 1000 * elapsed / len(images)})
  return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
  """A Markdown table of `score_baselines` rows."""
  lines = ["| method | foreground IoU | mIoU (fg/bg) | pixel accuracy | mean Dice | ms / image |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
  for r in rows:
    lines.append(f"| {r['method']} | {r['fg_iou']:.3f} | {r['miou']:.3f} | "
                 f"{r['pixel_accuracy']:.3f} | {r['mean_dice']:.3f} | {r['ms_per_image']:.1f} |")
  return "\n".join(lines)


__all__ = ["METHODS", "score_baselines", "format_table", "load_split"]
