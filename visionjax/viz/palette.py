"""Class colours: the PASCAL VOC palette and class-id masks to RGB.

Kept free of matplotlib (NumPy only), so array drawing code can use it
without importing a plotting library.
"""
from __future__ import annotations

import numpy as np

# Ignored pixels (``ignore_index``, e.g. VOC's 255 object borders) are white:
# black is class 0 (background) in the VOC palette.
IGNORE_COLOUR = np.array([1.0, 1.0, 1.0])


def palette(num_classes: int) -> np.ndarray:
  """Distinct colours [num_classes, 3] float64 in [0, 1]; class 0 is black.

  The PASCAL VOC bit-interleaving palette, so VOC masks look as usual; every
  value is a multiple of 1/255, so ``round(palette * 255)`` is exact uint8.
  Colour ``i`` does not depend on ``num_classes``.
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
  """Class-id mask [H, W] -> RGB float64 [H, W, 3] in [0, 1].

  Pixels equal to ``ignore_index`` are white; other ids outside
  [0, num_classes) are clipped into it.
  """
  mask = np.asarray(mask)
  pal = palette(num_classes)
  rgb = pal[np.clip(mask, 0, num_classes - 1)]
  rgb[mask == ignore_index] = IGNORE_COLOUR
  return rgb
