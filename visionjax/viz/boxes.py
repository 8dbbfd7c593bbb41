"""Boxes with class names and scores drawn on images (detection, localization).

Boxes are normalized (x1, y1, x2, y2) — the layout of
:class:`visionjax.detection.postprocessing.Detections` — and are scaled to the
image here. Ground truth is drawn dashed in white, predictions solid in a
per-class colour with a ``name score`` tag.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from visionjax.viz.predictions import palette  # noqa: E402


def _colours(num_classes: int) -> np.ndarray:
  # Skip the palette's black (class 0 is a real class here).
  return palette(num_classes + 1)[1:]


def draw_boxes(ax, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
               class_names: Sequence[str], scores: Optional[np.ndarray] = None,
               gt_boxes: Optional[np.ndarray] = None, title: str = "") -> None:
  """Draws one image [H, W, 3] in [0, 1] with boxes on a matplotlib axis.

  boxes [N, 4] normalized xyxy with labels [N] (class indices) and optional
  scores [N]; gt_boxes [M, 4] normalized xyxy drawn dashed white.
  """
  h, w = image.shape[:2]
  scale = np.array([w, h, w, h], np.float64)
  cols = _colours(len(class_names))
  ax.imshow(image, interpolation="nearest", extent=(0, w, h, 0))
  ax.set_xlim(0, w)
  ax.set_ylim(h, 0)
  ax.set_xticks([])
  ax.set_yticks([])
  fs = 8
  for b in (np.zeros((0, 4)) if gt_boxes is None else np.asarray(gt_boxes)):
    x1, y1, x2, y2 = b * scale
    ax.add_patch(mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white",
                                    lw=1.0, ls="--"))
  for i, b in enumerate(np.asarray(boxes)):
    c = int(labels[i])
    x1, y1, x2, y2 = b * scale
    colour = cols[c % len(cols)]
    ax.add_patch(mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colour, lw=1.5))
    tag = class_names[c] if scores is None else f"{class_names[c]} {float(scores[i]):.2f}"
    ax.text(x1, y1, tag, fontsize=fs, color="black", va="bottom", clip_on=True,
            bbox=dict(facecolor=colour, alpha=0.8, pad=0.5, lw=0))
  if title:
    ax.set_title(title, fontsize=8)


def _grid(n: int, row_height: float):
  """A figure with n panels, 4 per row; returns (figure, the first n axes)."""
  cols = min(n, 4)
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, row_height * rows), squeeze=False)
  for ax in axes.flat[n:]:
    ax.axis("off")
  return fig, list(axes.flat[:n])


def _save(fig, path: str) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save_detections(images: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                    classes: np.ndarray, valid: np.ndarray, class_names: Sequence[str],
                    path: str, *, gt_boxes: Optional[np.ndarray] = None,
                    gt_valid: Optional[np.ndarray] = None, min_score: float = 0.5,
                    max_boxes: int = 20, per_image_dir: Optional[str] = None) -> None:
  """A grid of images with their detections (score ≥ ``min_score``, at most
  ``max_boxes`` per image) and ground truth; optionally one PNG per image in
  ``per_image_dir`` (``<index>.png``).

  Shapes: images [N, H, W, 3]; boxes [N, D, 4] normalized xyxy; scores,
  classes, valid [N, D]; gt_boxes [N, G, 4] normalized xyxy, gt_valid [N, G].
  """
  n = len(images)

  def one(ax, i):
    # Highest scores drawn last, so their tags end up on top.
    keep = np.flatnonzero(valid[i] & (scores[i] >= min_score))[:max_boxes]
    keep = keep[np.argsort(scores[i][keep], kind="stable")]
    gt = None if gt_boxes is None else gt_boxes[i][np.asarray(gt_valid[i], bool)]
    draw_boxes(ax, images[i], boxes[i][keep], classes[i][keep], class_names,
               scores[i][keep], gt)

  fig, axes = _grid(n, 3.0)
  for i in range(n):
    one(axes[i], i)
  _save(fig, path)
  if per_image_dir:
    os.makedirs(per_image_dir, exist_ok=True)
    for i in range(n):
      fig, ax = plt.subplots(figsize=(4, 4))
      one(ax, i)
      _save(fig, os.path.join(per_image_dir, f"{i:03d}.png"))


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
  b = np.asarray(boxes, np.float64)
  return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def save_localization(images: np.ndarray, labels: np.ndarray, true_boxes: np.ndarray,
                      logits: np.ndarray, pred_boxes: np.ndarray,
                      class_names: Sequence[str], path: str) -> None:
  """Grid: predicted class, probability and box (cx, cy, w, h) against the
  true box (dashed); titled 'pred (p) / true', green when right."""
  n = len(images)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  fig, axes = _grid(n, 3.2)
  for i in range(n):
    ax = axes[i]
    p = int(np.argmax(probs[i]))
    draw_boxes(ax, images[i], cxcywh_to_xyxy(pred_boxes[i])[None], np.array([p]), class_names,
               probs[i, p:p + 1], cxcywh_to_xyxy(true_boxes[i])[None])
    ax.set_title(f"{class_names[p]} ({probs[i, p]:.2f}) / {class_names[int(labels[i])]}",
                 fontsize=8, color="green" if p == int(labels[i]) else "red")
  _save(fig, path)
