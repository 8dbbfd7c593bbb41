"""YOLO-style anchor-free single-stage detector (YOLOX/FCOS-like heads).

    images [B, H, W, C] -> {'obj_logits':  [B, P]      objectness,
                            'cls_logits':  [B, P, K]   per-class (sigmoid),
                            'box_deltas':  [B, P, 4]   raw distances to the sides,
                            'points':      [P, 2]      cell centres (x, y), normalized,
                            'strides':     [P, 2]      cell sizes (sx, sy), normalized,
                            'size_ranges': [P, 2]      object sizes (in strides) per level}

The image is divided into grid cells at each stride; every cell predicts one
box directly (no anchors): an objectness score, K class scores and the
distances from its centre to the box sides. Decoding, target assignment,
loss and post-processing live in :mod:`visionjax.detection.grid`; the
training task is the same `DetectionTask` as the SSD's (it recognises the
outputs). Like the SSD's default boxes, ``points``/``strides``/``size_ranges``
are NumPy constants computed from the feature-map shapes at trace time, so
the module works at any input size.

Architecture: backbone features named in ``sources`` (increasing stride), a
top-down FPN neck (1×1 laterals to ``neck_width``, nearest upsampling,
addition, a 3×3 conv), and per level a YOLOX decoupled head: a 1×1 stem to
``head_width``, then a class branch and a box branch of ``head_depth`` 3×3
conv-BN-ReLU layers each; the box branch also predicts objectness. Class and
objectness biases start at log(π/(1-π)), π = 0.01 (RetinaNet's prior), so
the untrained focal loss is not swamped by background cells.

Level ranges (FCOS): level k takes objects whose size seen from a cell,
max(l, t, r, b), is in (range_factor·s_{k-1}, range_factor·s_k] pixels
(the first level from 0, the last without bound, i.e. up to the image
size; range_factor 8 is FCOS's
64/128/... for strides 8/16/...).

Registered models:
  yolo_lite      a small ResNet (3 stages, widths 32/64/128) for the 64×64
                 digit scenes, one level at stride 8 (an 8×8 grid, 64 cells).
  yolo_resnet18  ResNet-18 layer2/3/4 (strides 8, 16, 32), 128-wide neck
                 and heads with 2 convs per branch, at 320×320.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from visionjax.models.backbones import SMOKE_ENCODER, build_encoder
from visionjax.models.layers import (
  ConvNormAct,
  ModelSpec,
  ZooModule,
  batch_norm,
  check_images,
  frozen,
)


def grid_layout(map_shapes: Sequence[tuple], image_shape: tuple,
                range_factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(points, strides, size_ranges), each [P, 2] float32, for feature maps
  of ``map_shapes`` [(h, w), ...] (increasing stride) over an image (H, W).

  Cells are row-major per level, levels in order; a cell's centre is
  ((j + 0.5)/w, (i + 0.5)/h). The stride in pixels of level k is H/h_k (the
  height's; used for the ranges).
  """
  h_img, w_img = image_shape
  points, strides, ranges = [], [], []
  px_strides = [h_img / h for h, _ in map_shapes]
  for k, (h, w) in enumerate(map_shapes):
    ys, xs = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    points.append(np.stack([xs.ravel(), ys.ravel()], -1))
    strides.append(np.broadcast_to([1.0 / w, 1.0 / h], (h * w, 2)))
    s = px_strides[k]
    lo = 0.0 if k == 0 else range_factor * px_strides[k - 1] / s
    # The last level has no upper bound: a box inside the image is at most
    # max(h, w) of its strides from any cell; one more keeps the bound finite.
    hi = float(max(h, w) + 1) if k == len(map_shapes) - 1 else range_factor
    ranges.append(np.broadcast_to([lo, hi], (h * w, 2)))
  cat = lambda xs: np.concatenate(xs, 0).astype(np.float32)
  return cat(points), cat(strides), cat(ranges)


class YOLO(ZooModule):
  """Anchor-free grid detector; see the module docstring for the outputs.

  num_classes:  foreground classes K.
  sources:      backbone features, one level each, in increasing stride.
  neck_width, head_width, head_depth: widths and convs per head branch.
  range_factor: FCOS level ranges (module docstring).
  prior:        initial objectness/class probability.
  """
  num_classes: int = 20
  encoder: str = "resnet18"
  encoder_kwargs: Optional[Mapping[str, Any]] = None
  sources: Sequence[str] = ("layer2", "layer3", "layer4")
  neck_width: int = 128
  head_width: int = 128
  head_depth: int = 2
  range_factor: float = 8.0
  prior: float = 0.01
  act: Callable = nn.relu

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> Dict[str, jax.Array]:
    check_images(images, "YOLO")
    enc = build_encoder(self.encoder, self.encoder_kwargs, axis_name=self.axis_name,
                        dtype=self.dtype, param_dtype=self.param_dtype, name="encoder")
    feats = enc(images, train=train)
    missing = [s for s in self.sources if s not in feats]
    if missing:
      raise ValueError(f"YOLO: sources {missing} are not features of encoder "
                       f"{self.encoder!r}; it has {sorted(feats)}")
    norm = batch_norm(train, self.axis_name, self.dtype, self.param_dtype)
    kw = dict(norm=norm, act=self.act, dtype=self.dtype, param_dtype=self.param_dtype)
    # FPN top-down: coarsest first, each finer level adds the upsampled one.
    lateral = [ConvNormAct(self.neck_width, 1, name=f"lateral{i}", **kw)(feats[s])
               for i, s in enumerate(self.sources)]
    maps = [None] * len(lateral)
    top = None
    for i in reversed(range(len(lateral))):
      x = lateral[i]
      if top is not None:
        x = x + jax.image.resize(top, x.shape[:3] + top.shape[3:], "nearest")
      top = x
      maps[i] = ConvNormAct(self.neck_width, 3, name=f"smooth{i}", **kw)(x)
    bias = float(np.log(self.prior / (1 - self.prior)))
    conv = functools.partial(nn.Conv, kernel_size=(1, 1), dtype=self.dtype,
                             param_dtype=self.param_dtype)
    b = images.shape[0]
    obj, cls, box = [], [], []
    for i, x in enumerate(maps):
      x = ConvNormAct(self.head_width, 1, name=f"head{i}_stem", **kw)(x)
      c, r = x, x
      for j in range(self.head_depth):
        c = ConvNormAct(self.head_width, 3, name=f"head{i}_cls{j}", **kw)(c)
        r = ConvNormAct(self.head_width, 3, name=f"head{i}_reg{j}", **kw)(r)
      cls.append(conv(self.num_classes, bias_init=nn.initializers.constant(bias),
                      name=f"head{i}_cls_out")(c).reshape(b, -1, self.num_classes))
      box.append(conv(4, name=f"head{i}_box_out")(r).reshape(b, -1, 4))
      obj.append(conv(1, bias_init=nn.initializers.constant(bias),
                      name=f"head{i}_obj_out")(r).reshape(b, -1))
    points, strides, ranges = grid_layout([m.shape[1:3] for m in maps], images.shape[1:3],
                                          self.range_factor)
    return {"obj_logits": jnp.concatenate(obj, 1).astype(jnp.float32),
            "cls_logits": jnp.concatenate(cls, 1).astype(jnp.float32),
            "box_deltas": jnp.concatenate(box, 1).astype(jnp.float32),
            "points": jnp.asarray(points), "strides": jnp.asarray(strides),
            "size_ranges": jnp.asarray(ranges)}


_LITE_ENCODER = frozen(stage_sizes=(2, 2, 2), widths=(32, 64, 128), stem_width=32)
# One tiny module for both entries (the shared smoke test runs it once): three
# levels, so it takes the FPN and multi-level paths that yolo_lite skips.
_SMOKE = frozen(encoder="resnet18", encoder_kwargs=SMOKE_ENCODER["resnet18"],
                sources=("layer2", "layer3", "layer4"), neck_width=8, head_width=8, head_depth=1,
                range_factor=8.0, prior=0.01)

REGISTRY: Dict[str, ModelSpec] = {
    "yolo_lite": ModelSpec(
        functools.partial(YOLO, encoder="resnet18", encoder_kwargs=_LITE_ENCODER,
                          sources=("layer2",), neck_width=64, head_width=64, head_depth=1),
        "detection", input_size=(64, 64),
        smoke=_SMOKE, smoke_size=(64, 64)),
    "yolo_resnet18": ModelSpec(
        functools.partial(YOLO, encoder="resnet18"),
        "detection", input_size=(320, 320), smoke=_SMOKE, smoke_size=(64, 64)),
}
