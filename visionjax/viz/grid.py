"""A grid of plain images: samples, augmentations, drawn results.

For pictures made elsewhere as arrays (`visionjax.viz.draw`: `triptych`,
`draw_boxes`, `draw_masks`; `visionjax.data.augment_config.preview`), shown
together in one figure. Built without pyplot, like every figure here, so it
shows inline when returned to a notebook cell.
"""
from __future__ import annotations

from typing import Optional, Sequence

from matplotlib.figure import Figure
import numpy as np

from visionjax.viz import _figure


def image_grid(images: Sequence[np.ndarray], titles: Optional[Sequence[str]] = None, *,
               cols: int = 8, panel_width: float = 1.6,
               panel_height: Optional[float] = None) -> Figure:
  """Images in rows of ``cols``, each with an optional title, no axes.

  Args:
    images: N arrays [H, W, 3] or [H, W] (uint8, or float in [0, 1]); sizes
      may differ (each panel fits its image).
    titles: N strings, or None.
    cols: panels a row (fewer if N is smaller).
    panel_width: inches per panel.
    panel_height: inches per panel; default: ``panel_width`` times the first
      image's height / width (+ 0.3 in for a title).

  Returns:
    The figure.
  """
  if titles is not None and len(titles) != len(images):
    raise ValueError(f"{len(titles)} titles for {len(images)} images")
  if panel_height is None:
    h, w = np.shape(images[0])[:2] if len(images) else (1, 1)
    panel_height = panel_width * h / w + (0.3 if titles is not None else 0.0)
  fig, axes = _figure.grid(len(images), cols, panel_width, panel_height)
  for i, ax in enumerate(axes):
    image = np.asarray(images[i])
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    ax.axis("off")
    if titles is not None:
      ax.set_title(titles[i], fontsize=8)
  fig.tight_layout()
  return fig
