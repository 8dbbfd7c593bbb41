"""Boxes with class names and scores drawn on images (detection, localization).

Boxes are normalized (x1, y1, x2, y2), the layout of
:class:`visionjax.detection.postprocessing.Detections`, and are scaled to the
image here. Ground truth is drawn dashed in white, predictions solid in a
per-class colour with a ``name score`` tag. Each ``*_figure`` function returns
a `matplotlib.figure.Figure`; each ``save_*`` writes one as PNG. For boxes
drawn into a uint8 array instead, see `visionjax.viz.draw.draw_boxes`.
"""
from __future__ import annotations

from typing import Optional, Sequence

from etils import epath
from matplotlib import patches as mpatches
from matplotlib.figure import Figure
import numpy as np

from visionjax.viz import _figure
from visionjax.viz.palette import palette


def _colours(num_classes: int) -> np.ndarray:
  # Skip the palette's black (class 0 is a real class here); the same colours
  # as `draw.draw_boxes` gives labelled boxes.
  return palette(num_classes + 1)[1:]


def _boxes_on_axis(ax, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                   class_names: Sequence[str], scores: Optional[np.ndarray] = None,
                   gt_boxes: Optional[np.ndarray] = None) -> None:
  """Draws one image [H, W, 3] (float in [0, 1] or uint8) with boxes on ``ax``.

  boxes [N, 4] normalized xyxy with labels [N] (class indices) and optional
  scores [N]; gt_boxes [M, 4] normalized xyxy drawn dashed white. Drawn as
  vector patches (not rasterised into the image) so thin lines and tags stay
  sharp on small images.
  """
  image = np.asarray(image)
  h, w = image.shape[:2]
  scale = np.array([w, h, w, h], np.float64)
  cols = _colours(len(class_names))
  ax.imshow(image, interpolation="nearest", extent=(0, w, h, 0))
  ax.set_xlim(0, w)
  ax.set_ylim(h, 0)
  ax.set_xticks([])
  ax.set_yticks([])
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
    ax.text(x1, y1, tag, fontsize=8, color="black", va="bottom", clip_on=True,
            bbox=dict(facecolor=colour, alpha=0.8, pad=0.5, lw=0))


def _detections_on_axis(ax, i: int, images, boxes, scores, classes, valid, class_names,
                        gt_boxes, gt_valid, min_score, max_boxes) -> None:
  """Image ``i`` of a batch with its kept detections and ground truth."""
  keep = np.flatnonzero(valid[i] & (scores[i] >= min_score))[:max_boxes]
  # Highest scores drawn last, so their tags end up on top.
  keep = keep[np.argsort(scores[i][keep], kind="stable")]
  gt = None if gt_boxes is None else gt_boxes[i][np.asarray(gt_valid[i], bool)]
  _boxes_on_axis(ax, images[i], boxes[i][keep], classes[i][keep], class_names,
                 scores[i][keep], gt)


def detections_figure(images: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                      classes: np.ndarray, valid: np.ndarray, class_names: Sequence[str], *,
                      gt_boxes: Optional[np.ndarray] = None,
                      gt_valid: Optional[np.ndarray] = None, min_score: float = 0.5,
                      max_boxes: int = 20, panel_size: float = 3.0) -> Figure:
  """A grid (4 a row) of images with their detections and ground truth.

  Shows detections that are valid with score >= ``min_score``, at most
  ``max_boxes`` per image (the first ones; post-processed detections come
  sorted by score).

  Args:
    images: [N, H, W, 3] float in [0, 1] (or uint8).
    boxes: [N, D, 4] normalized xyxy.
    scores, classes, valid: [N, D].
    class_names: names indexed by class.
    gt_boxes: optional [N, G, 4] normalized xyxy, with gt_valid [N, G].
    min_score: the lowest score shown.
    max_boxes: the most detections shown per image.
    panel_size: the side of each (square) panel in inches.

  Returns:
    The figure.
  """
  images, boxes, scores, classes, valid = map(np.asarray, (images, boxes, scores, classes, valid))
  if gt_boxes is not None:
    gt_boxes = np.asarray(gt_boxes)
    gt_valid = (np.ones(gt_boxes.shape[:2], bool) if gt_valid is None
                else np.asarray(gt_valid, bool))
  fig, axes = _figure.grid(len(images), 4, panel_size, panel_size)
  for i, ax in enumerate(axes):
    _detections_on_axis(ax, i, images, boxes, scores, classes, valid, class_names,
                        gt_boxes, gt_valid, min_score, max_boxes)
  fig.tight_layout()
  return fig


def save_detections(images: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                    classes: np.ndarray, valid: np.ndarray, class_names: Sequence[str],
                    path: epath.PathLike, *, gt_boxes: Optional[np.ndarray] = None,
                    gt_valid: Optional[np.ndarray] = None, min_score: float = 0.5,
                    max_boxes: int = 20,
                    per_image_dir: Optional[epath.PathLike] = None) -> None:
  """Writes `detections_figure` as PNG to ``path``; optionally also one
  4 x 4 in PNG per image in ``per_image_dir`` (``000.png``, ``001.png``, ...).

  Shapes as in `detections_figure`.
  """
  kw = dict(gt_boxes=gt_boxes, gt_valid=gt_valid, min_score=min_score, max_boxes=max_boxes)
  _figure.write_png(detections_figure(images, boxes, scores, classes, valid, class_names, **kw),
                    path)
  if per_image_dir:
    d = epath.Path(per_image_dir)
    for i in range(len(images)):
      sl = slice(i, i + 1)
      one = dict(kw, gt_boxes=None if gt_boxes is None else np.asarray(gt_boxes)[sl],
                 gt_valid=None if gt_valid is None else np.asarray(gt_valid)[sl])
      fig = detections_figure(np.asarray(images)[sl], np.asarray(boxes)[sl],
                              np.asarray(scores)[sl], np.asarray(classes)[sl],
                              np.asarray(valid)[sl], class_names, panel_size=4.0, **one)
      _figure.write_png(fig, d / f"{i:03d}.png")


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
  """Boxes [..., 4] (cx, cy, w, h) -> (x1, y1, x2, y2), float64."""
  b = np.asarray(boxes, np.float64)
  return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def localization_figure(images: np.ndarray, labels: np.ndarray, true_boxes: np.ndarray,
                        logits: np.ndarray, pred_boxes: np.ndarray,
                        class_names: Sequence[str], *, box_format: str = "xyxy") -> Figure:
  """A grid (4 a row) of predicted class, probability and box against the
  true box (dashed); titled 'pred (p) / true', green when right.

  Args:
    images: [N, H, W, 3] float in [0, 1] (or uint8).
    labels: true class ids [N].
    true_boxes: [N, 4] normalized, in ``box_format``.
    logits: [N, K] class scores.
    pred_boxes: [N, 4] normalized, in ``box_format`` (the localization task's
      ``postprocess`` gives xyxy).
    class_names: K names.
    box_format: "xyxy" (x1, y1, x2, y2; the package's convention) or
      "cxcywh" (cx, cy, w, h; the localizer head's raw parameterization).

  Returns:
    The figure (3 x 3.2 in panels).
  """
  if box_format not in ("xyxy", "cxcywh"):
    raise ValueError(f"box_format must be 'xyxy' or 'cxcywh'; got {box_format!r}")
  to_xyxy = cxcywh_to_xyxy if box_format == "cxcywh" else (lambda b: np.asarray(b, np.float64))
  images, labels = np.asarray(images), np.asarray(labels)
  true_boxes, pred_boxes = to_xyxy(true_boxes), to_xyxy(pred_boxes)
  z = np.asarray(logits, np.float64)
  probs = np.exp(z - z.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  fig, axes = _figure.grid(len(images), 4, 3.0, 3.2)
  for i, ax in enumerate(axes):
    p, y = int(np.argmax(probs[i])), int(labels[i])
    _boxes_on_axis(ax, images[i], pred_boxes[i][None], np.array([p]), class_names,
                   probs[i, p:p + 1], true_boxes[i][None])
    ax.set_title(f"{class_names[p]} ({probs[i, p]:.2f}) / {class_names[y]}",
                 fontsize=8, color="green" if p == y else "red")
  fig.tight_layout()
  return fig


def save_localization(images: np.ndarray, labels: np.ndarray, true_boxes: np.ndarray,
                      logits: np.ndarray, pred_boxes: np.ndarray,
                      class_names: Sequence[str], path: epath.PathLike, *,
                      box_format: str = "xyxy") -> None:
  """Writes `localization_figure` as PNG to ``path``."""
  _figure.write_png(localization_figure(images, labels, true_boxes, logits, pred_boxes,
                                        class_names, box_format=box_format), path)
