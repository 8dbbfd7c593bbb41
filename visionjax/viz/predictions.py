"""Prediction pictures: segmentation rows, classification grids, denoising triptychs.

Each ``*_figure`` function returns a `matplotlib.figure.Figure` (shown inline
when returned to a notebook cell); each ``save_*`` writes that figure as PNG.
Detection and localization pictures are in `visionjax.viz.boxes`.
"""
from __future__ import annotations

from typing import Sequence

from etils import epath
from matplotlib import patches as mpatches
from matplotlib.figure import Figure
import numpy as np

from visionjax.viz import _figure, draw
from visionjax.viz.palette import colorize, palette

# The opacity of the predicted classes over the image.
PREDICTION_ALPHA = 0.55


def _softmax(logits: np.ndarray) -> np.ndarray:
  z = np.asarray(logits, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def segmentation_figure(images: np.ndarray, masks: np.ndarray, logits: np.ndarray,
                        class_names: Sequence[str]) -> Figure:
  """Rows of image | ground truth | prediction overlay, with a colour legend.

  Args:
    images: [N, H, W, 3] float in [0, 1] (or uint8).
    masks: ground-truth class ids [N, H, W]; 255 (ignored) is drawn white.
    logits: [N, H, W, K] scores; the prediction is their argmax.
    class_names: K names, for the legend.

  Returns:
    A 7.5 x (2.5 N + 0.8) in figure.
  """
  images, masks = np.asarray(images), np.asarray(masks)
  n, k = len(images), len(class_names)
  preds = np.argmax(np.asarray(logits), -1)
  fig = _figure.new_figure(7.5, 2.5 * n + 0.8)
  axes = fig.subplots(n, 3, squeeze=False)
  for i in range(n):
    panels = (images[i], colorize(masks[i], k),
              draw.draw_masks(images[i], preds[i], k, alpha=PREDICTION_ALPHA))
    for ax, img, title in zip(axes[i], panels,
                              ("image", "ground truth", "prediction (overlay)")):
      ax.imshow(img, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(title, fontsize=10)
  handles = [mpatches.Patch(color=c, label=name) for c, name in zip(palette(k), class_names)]
  fig.legend(handles=handles, loc="lower center", ncol=min(k, 11), fontsize=8, frameon=False)
  fig.tight_layout(rect=(0, 0.05, 1, 1))  # leaves the bottom 5 % to the legend
  return fig


def save_segmentation(images: np.ndarray, masks: np.ndarray, logits: np.ndarray,
                      class_names: Sequence[str], path: epath.PathLike) -> None:
  """Writes `segmentation_figure` as PNG to ``path`` (750 x (250 N + 80) px)."""
  _figure.write_png(segmentation_figure(images, masks, logits, class_names), path)


def classification_figure(images: np.ndarray, labels: np.ndarray, logits: np.ndarray,
                          class_names: Sequence[str]) -> Figure:
  """A grid of images titled 'pred (p) / true', green if right, red if wrong.

  Args:
    images: [N, H, W, 3] float in [0, 1] (or uint8).
    labels: true class ids [N].
    logits: [N, K] scores.
    class_names: K names.

  Returns:
    A figure with up to 8 panels (1.6 x 1.9 in each) a row.
  """
  images, labels = np.asarray(images), np.asarray(labels)
  probs = _softmax(logits)
  fig, axes = _figure.grid(len(images), 8, 1.6, 1.9)
  for i, ax in enumerate(axes):
    p, y = int(np.argmax(probs[i])), int(labels[i])
    ax.axis("off")
    ax.imshow(images[i], interpolation="nearest")
    ax.set_title(f"{class_names[p]} ({probs[i, p]:.2f}) / {class_names[y]}",
                 fontsize=7, color="green" if p == y else "red")
  fig.tight_layout()
  return fig


def save_classification(images: np.ndarray, labels: np.ndarray, logits: np.ndarray,
                        class_names: Sequence[str], path: epath.PathLike) -> None:
  """Writes `classification_figure` as PNG to ``path``."""
  _figure.write_png(classification_figure(images, labels, logits, class_names), path)



def denoising_figure(noisy: np.ndarray, denoised: np.ndarray, clean: np.ndarray) -> Figure:
  """Rows of noisy input | denoised output | clean image (the triptych).

  Args:
    noisy, denoised, clean: [N, H, W, 3] float in [0, 1] (values outside are
      clipped) or uint8.

  Returns:
    A 6 x (2 N + 0.4) in figure.
  """
  rows = [np.asarray(a) for a in (noisy, denoised, clean)]
  rows = [a if a.dtype == np.uint8 else np.clip(a, 0.0, 1.0) for a in rows]
  n = len(rows[0])
  fig = _figure.new_figure(6.0, 2.0 * n + 0.4)
  axes = fig.subplots(n, 3, squeeze=False)
  for i in range(n):
    for ax, img, title in zip(axes[i], (r[i] for r in rows), ("noisy", "denoised", "clean")):
      ax.imshow(img, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(title, fontsize=10)
  fig.tight_layout()
  return fig


def save_denoising(noisy: np.ndarray, denoised: np.ndarray, clean: np.ndarray,
                   path: epath.PathLike) -> None:
  """Writes `denoising_figure` as PNG to ``path``."""
  _figure.write_png(denoising_figure(noisy, denoised, clean), path)
