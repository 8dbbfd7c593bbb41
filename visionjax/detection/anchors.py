"""SSD default boxes (Liu et al. 2016, "SSD: Single Shot MultiBox Detector").

Every feature map k of size f_h × f_w gets, at each cell (i, j), a set of
default boxes centred at::

  cx = (j + 0.5) · step_x,   cy = (i + 0.5) · step_y     (normalized to [0, 1])

with ``step = 1 / f`` (the paper) or an explicit stride as a fraction of the
image (the reference Caffe implementation: 8/300, 16/300, ...). Per cell, in
this order (the order the reference implementation and its ports use, so a
head's output channels line up with the boxes):

  1. the square box of side s_k;
  2. if ``max_size`` is set, the square box of side s'_k = sqrt(s_k · s_{k+1});
  3. for each aspect ratio r of ``aspect_ratios``: the box (w, h) =
     (s_k·√r, s_k/√r), then (s_k/√r, s_k·√r).

So a map has ``f_h · f_w · (1 + [max_size] + 2·len(aspect_ratios))`` boxes;
the boxes of all maps are concatenated map by map, cell by cell (row-major),
box by box: the layout of a head's ``[B, f_h, f_w, n·4]`` output reshaped to
``[B, f_h · f_w · n, 4]``.

Scales. The paper's rule for m maps is ``s_k = s_min + (s_max - s_min)(k-1)/(m-1)``
(:func:`paper_specs`). The released SSD300/SSD512 models (and the 8,732 /
24,564 box counts everyone quotes) use the Caffe script's pixel sizes instead
(:func:`ssd300_specs`, :func:`ssd512_specs`): conv4_3 at 0.1 (SSD300) or
0.07 (SSD512) and the other maps spread between 0.2 and 0.9 (0.15 and 0.9)
with an integer percentage step.

Everything here is NumPy on static shapes: default boxes are constants of
the architecture, computed once at trace time.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class AnchorSpec:
  """Default boxes of one feature map (sizes are fractions of the image).

  min_size:      s_k, side of the first square box.
  max_size:      s_{k+1}; adds the square box of side sqrt(s_k · s_{k+1}).
                 None: no such box.
  aspect_ratios: ratios r > 0, r ≠ 1; each adds the boxes r and 1/r.
  step:          spacing of box centres as a fraction of the image (e.g.
                 8/300); None: 1 / feature-map size (the paper).
  """
  min_size: float
  max_size: Optional[float] = None
  aspect_ratios: Tuple[float, ...] = (2.0,)
  step: Optional[float] = None

  def __post_init__(self):
    if not self.min_size > 0:
      raise ValueError(f"AnchorSpec.min_size={self.min_size!r}; expected > 0")
    if self.max_size is not None and not self.max_size > 0:
      raise ValueError(f"AnchorSpec.max_size={self.max_size!r}; expected > 0 or None")
    bad = [r for r in self.aspect_ratios if not r > 0 or r == 1]
    if bad:
      raise ValueError(f"AnchorSpec.aspect_ratios has {bad}; expected ratios > 0 and != 1 "
                       "(the square box is always present)")
    if self.step is not None and not self.step > 0:
      raise ValueError(f"AnchorSpec.step={self.step!r}; expected > 0 or None")

  @property
  def boxes_per_location(self) -> int:
    return 1 + (self.max_size is not None) + 2 * len(self.aspect_ratios)


def paper_specs(num_maps: int, s_min: float = 0.2, s_max: float = 0.9,
                aspect_ratios: Sequence[Sequence[float]] | None = None
                ) -> Tuple[AnchorSpec, ...]:
  """The paper's scale rule for ``num_maps`` feature maps (any backbone).

  ``s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)`` for k = 1..m, and
  ``s_{m+1}`` continues the same arithmetic progression (for the last map's
  extra square box). ``aspect_ratios``: per map (default (2, 3) everywhere,
  the paper's {1, 2, 3, 1/2, 1/3} plus the extra square: 6 boxes per cell).
  """
  if num_maps < 1:
    raise ValueError(f"num_maps={num_maps}; expected >= 1")
  if not 0 < s_min <= s_max:
    raise ValueError(f"s_min={s_min}, s_max={s_max}; expected 0 < s_min <= s_max")
  if aspect_ratios is None:
    aspect_ratios = [(2.0, 3.0)] * num_maps
  if len(aspect_ratios) != num_maps:
    raise ValueError(f"aspect_ratios has {len(aspect_ratios)} entries; expected {num_maps}")
  delta = (s_max - s_min) / (num_maps - 1) if num_maps > 1 else 0.0
  scales = [s_min + delta * k for k in range(num_maps + 1)]
  if num_maps == 1:
    scales[1] = s_max if s_max > s_min else s_min
  return tuple(AnchorSpec(scales[k], scales[k + 1], tuple(map(float, aspect_ratios[k])))
               for k in range(num_maps))


def _caffe_specs(image_size: int, min_ratio: int, max_ratio: int, first_ratio: float,
                 steps: Sequence[int], aspect_ratios: Sequence[Sequence[float]]
                 ) -> Tuple[AnchorSpec, ...]:
  """The SSD Caffe script's sizes: percentages with an integer step."""
  m = len(steps)
  step = int(math.floor((max_ratio - min_ratio) / (m - 2)))
  ratios = list(range(min_ratio, max_ratio + 1, step))
  min_sizes = [image_size * first_ratio] + [image_size * r / 100.0 for r in ratios]
  max_sizes = [image_size * min_ratio / 100.0] + [image_size * (r + step) / 100.0
                                                  for r in ratios]
  return tuple(AnchorSpec(lo / image_size, hi / image_size, tuple(ar), s / image_size)
               for lo, hi, ar, s in zip(min_sizes, max_sizes, aspect_ratios, steps))


SSD300_FEATURE_SIZES = (38, 19, 10, 5, 3, 1)
SSD512_FEATURE_SIZES = (64, 32, 16, 8, 4, 2, 1)


def ssd300_specs() -> Tuple[AnchorSpec, ...]:
  """SSD300: sizes 30, 60, 111, 162, 213, 264 px (max 60 .. 315), steps 8 .. 300,
  aspect ratios (2), (2, 3), (2, 3), (2, 3), (2), (2): 4, 6, 6, 6, 4, 4 boxes per cell."""
  return _caffe_specs(300, 20, 90, 0.1, (8, 16, 32, 64, 100, 300),
                      [(2.,), (2., 3.), (2., 3.), (2., 3.), (2.,), (2.,)])


def ssd512_specs() -> Tuple[AnchorSpec, ...]:
  """SSD512: sizes 35.84, 76.8, 153.6, .., 460.8 px (max 76.8 .. 537.6), steps
  8 .. 512, aspect ratios (2), (2, 3) × 4, (2), (2)."""
  return _caffe_specs(512, 15, 90, 0.07, (8, 16, 32, 64, 128, 256, 512),
                      [(2.,), (2., 3.), (2., 3.), (2., 3.), (2., 3.), (2.,), (2.,)])


def _hw(size) -> Tuple[int, int]:
  if isinstance(size, (int, np.integer)):
    return int(size), int(size)
  h, w = size
  return int(h), int(w)


def num_default_boxes(feature_sizes: Sequence, specs: Sequence[AnchorSpec]) -> int:
  """Σ_k f_h · f_w · boxes_per_location_k."""
  _check_pairing(feature_sizes, specs)
  return sum(int(np.prod(_hw(f))) * s.boxes_per_location for f, s in zip(feature_sizes, specs))


def _check_pairing(feature_sizes, specs):
  if len(feature_sizes) != len(specs):
    raise ValueError(f"{len(feature_sizes)} feature maps but {len(specs)} anchor specs; "
                     "expected one spec per map")


def default_boxes(feature_sizes: Sequence, specs: Sequence[AnchorSpec], *,
                  clip: bool = False) -> np.ndarray:
  """Default boxes float32 [A, 4] as normalized (cx, cy, w, h).

  Args:
    feature_sizes: per map, ``f`` or ``(f_h, f_w)``.
    specs: one :class:`AnchorSpec` per map.
    clip: clip the boxes' corners to [0, 1] (the reference SSD300 does not).

  Layout: see the module docstring (map, row, column, box).
  """
  _check_pairing(feature_sizes, specs)
  out = []
  for size, spec in zip(feature_sizes, specs):
    fh, fw = _hw(size)
    if fh < 1 or fw < 1:
      raise ValueError(f"feature size {size!r}; expected positive sizes")
    sy = 1.0 / fh if spec.step is None else spec.step
    sx = 1.0 / fw if spec.step is None else spec.step
    wh = [(spec.min_size, spec.min_size)]
    if spec.max_size is not None:
      s = math.sqrt(spec.min_size * spec.max_size)
      wh.append((s, s))
    for r in spec.aspect_ratios:
      q = math.sqrt(r)
      wh += [(spec.min_size * q, spec.min_size / q), (spec.min_size / q, spec.min_size * q)]
    wh = np.asarray(wh, np.float64)                                  # [n, 2]
    cy, cx = np.meshgrid((np.arange(fh) + 0.5) * sy, (np.arange(fw) + 0.5) * sx,
                         indexing="ij")
    centres = np.stack([cx, cy], -1).reshape(-1, 1, 2)               # [f, 1, 2]
    boxes = np.concatenate(np.broadcast_arrays(centres, wh[None]), -1)  # [f, n, 4]
    out.append(boxes.reshape(-1, 4))
  boxes = np.concatenate(out, 0)
  if clip:
    lo = np.clip(boxes[:, :2] - boxes[:, 2:] / 2, 0, 1)
    hi = np.clip(boxes[:, :2] + boxes[:, 2:] / 2, 0, 1)
    boxes = np.concatenate([(lo + hi) / 2, hi - lo], -1)
  return boxes.astype(np.float32)


def ssd300_default_boxes() -> np.ndarray:
  """The 8,732 default boxes of SSD300 [8732, 4] (cx, cy, w, h)."""
  return default_boxes(SSD300_FEATURE_SIZES, ssd300_specs())


def ssd512_default_boxes() -> np.ndarray:
  """The 24,564 default boxes of SSD512 [24564, 4] (cx, cy, w, h)."""
  return default_boxes(SSD512_FEATURE_SIZES, ssd512_specs())
