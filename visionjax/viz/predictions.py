"""Prediction pictures: segmentation overlays, classification grids, and
(via `visionjax.viz.boxes`) detection and localization boxes."""
from __future__ import annotations

import os
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

IGNORE_COLOUR = np.array([1.0, 1.0, 1.0])


def palette(num_classes: int) -> np.ndarray:
  """Distinct colours [num_classes, 3] in [0, 1]; class 0 (background) black.

  The PASCAL VOC bit-interleaving palette, so VOC masks look as usual.
  """
  cmap = np.zeros((num_classes, 3))
  for i in range(num_classes):
    c, r, g, b = i, 0, 0, 0
    for j in range(8):
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    cmap[i] = (r, g, b)
  return cmap / 255.0


def colorize(mask: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
  """Class-id mask [H, W] -> RGB [H, W, 3]; ignored pixels white."""
  pal = palette(num_classes)
  rgb = pal[np.clip(mask, 0, num_classes - 1)]
  rgb[mask == ignore_index] = IGNORE_COLOUR
  return rgb


def save_segmentation(images: np.ndarray, masks: np.ndarray, logits: np.ndarray,
                      class_names: Sequence[str], path: str) -> None:
  """Rows of image | ground truth | prediction, with a colour legend."""
  n, k = len(images), len(class_names)
  preds = np.argmax(logits, -1)
  fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n + 0.8), squeeze=False)
  for i in range(n):
    gt = colorize(masks[i], k)
    pr = colorize(preds[i], k)
    for ax, img, title in zip(axes[i], (images[i], gt, 0.45 * images[i] + 0.55 * pr),
                              ("image", "ground truth", "prediction (overlay)")):
      ax.imshow(img, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(title, fontsize=10)
  handles = [mpatches.Patch(color=c, label=name)
             for c, name in zip(palette(k), class_names)]
  fig.legend(handles=handles, loc="lower center", ncol=min(k, 11), fontsize=8,
             frameon=False)
  fig.tight_layout(rect=(0, 0.05, 1, 1))
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save_classification(images: np.ndarray, labels: np.ndarray, logits: np.ndarray,
                        class_names: Sequence[str], path: str) -> None:
  """A grid of images titled 'pred (p) / true', green if right, red if wrong."""
  n = len(images)
  cols = min(n, 8)
  rows = -(-n // cols)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for i, ax in enumerate(axes.flat[:n]):
    p = int(np.argmax(probs[i]))
    ax.imshow(images[i], interpolation="nearest")
    ax.set_title(f"{class_names[p]} ({probs[i, p]:.2f}) / {class_names[labels[i]]}",
                 fontsize=7, color="green" if p == labels[i] else "red")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save(task: str, images: np.ndarray, batch: dict[str, np.ndarray], outputs: Any,
         class_names: Sequence[str], path: str) -> None:
  """Dispatches on ``task`` to the picture that fits it."""
  n = len(images)
  if task == "segmentation":
    save_segmentation(images, batch["mask"][:n], np.asarray(outputs), class_names, path)
  elif task == "classification":
    save_classification(images, batch["label"][:n], np.asarray(outputs), class_names, path)
  elif task == "detection":
    # outputs: post-processed Detections (normalized xyxy); batch boxes are yxyx.
    from visionjax.viz import boxes as box_viz
    gt = np.asarray(batch["boxes"][:n])[..., [1, 0, 3, 2]]
    box_viz.save_detections(
        images, np.asarray(outputs.boxes), np.asarray(outputs.scores),
        np.asarray(outputs.classes), np.asarray(outputs.valid), class_names, path,
        gt_boxes=gt, gt_valid=np.asarray(batch["box_valid"][:n]),
        per_image_dir=os.path.join(os.path.dirname(path), "detections"))
  elif task == "localization":
    from visionjax.viz import boxes as box_viz
    box_viz.save_localization(images, batch["label"][:n], batch["box"][:n],
                              np.asarray(outputs["logits"]), np.asarray(outputs["boxes"]),
                              class_names, path)
