"""SSD box coding: offsets of a box relative to a default box, with variances.

For a box g and a default box d, both (cx, cy, w, h), and variances
v = (v_0, v_1, v_2, v_3) (SSD: 0.1, 0.1, 0.2, 0.2)::

  t_cx = (g_cx - d_cx) / (v_0 · d_w)      t_w = log(g_w / d_w) / v_2
  t_cy = (g_cy - d_cy) / (v_1 · d_h)      t_h = log(g_h / d_h) / v_3

:func:`decode` is the exact inverse. The variances only rescale the targets
(so that all four have comparable spread for the smooth-L1 loss); they are
the "encode_variance_in_target" convention of the reference implementation.

All functions are pure, jit/vmap-safe and broadcast over leading axes.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp

from visionjax.ops.boxes import box_convert, check_boxes

SSD_VARIANCES = (0.1, 0.1, 0.2, 0.2)
# Decoded log-sizes are capped at log(1000/16) (as torchvision's box coder),
# so an untrained head cannot overflow exp() into inf boxes.
_MAX_LOG_SCALE = math.log(1000.0 / 16)
_TINY = 1e-8


def _variances(variances: Sequence[float], dtype):
  v = jnp.asarray(variances, dtype)
  if v.shape != (4,):
    raise ValueError(f"variances has shape {v.shape}; expected (4,) (cx, cy, w, h)")
  return v


def encode(boxes, anchors, variances: Sequence[float] = SSD_VARIANCES, *, fmt: str = "xyxy"):
  """Offsets t [..., 4] of ``boxes`` [..., 4] (in ``fmt``) from ``anchors``
  [..., 4] (cx, cy, w, h), broadcast against each other; formula above.

  Widths/heights are floored at 1e-8 before the log so degenerate (padding)
  boxes give large but finite offsets.
  """
  g = box_convert(check_boxes(boxes), fmt, "cxcywh")
  d = check_boxes(anchors, "anchors").astype(g.dtype)
  v = _variances(variances, g.dtype)
  dwh = jnp.maximum(d[..., 2:], _TINY)
  t_c = (g[..., :2] - d[..., :2]) / (v[:2] * dwh)
  t_s = jnp.log(jnp.maximum(g[..., 2:], _TINY) / dwh) / v[2:]
  return jnp.concatenate([t_c, t_s], -1)


def decode(offsets, anchors, variances: Sequence[float] = SSD_VARIANCES, *, fmt: str = "xyxy"):
  """Boxes [..., 4] in ``fmt`` from offsets [..., 4] and anchors [..., 4]
  (cx, cy, w, h): ``g_cx = d_cx + t_cx·v_0·d_w``, ``g_w = d_w·exp(t_w·v_2)``, ...

  Inverse of :func:`encode` (the log-size is clipped at log(1000/16)).
  """
  t = check_boxes(offsets, "offsets")
  d = check_boxes(anchors, "anchors").astype(t.dtype)
  v = _variances(variances, t.dtype)
  c = d[..., :2] + t[..., :2] * v[:2] * d[..., 2:]
  wh = d[..., 2:] * jnp.exp(jnp.minimum(t[..., 2:] * v[2:], _MAX_LOG_SCALE))
  return box_convert(jnp.concatenate([c, wh], -1), "cxcywh", fmt)
