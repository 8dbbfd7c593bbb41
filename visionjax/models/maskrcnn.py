"""Mask R-CNN (He et al. 2017) with a ResNet-FPN backbone, static shapes.

Architecture as torchvision's ``maskrcnn_resnet50_fpn`` (so the R50 variant
has exactly its parameter count, 44,454,513 with 90 foreground classes +
background, and torchvision's weights load with output parity:
``visionjax.weights`` entry ``maskrcnn_resnet50_fpn``, tests/test_weights_maskrcnn.py):

* backbone: ResNet trunk (``visionjax.models.resnet``, BatchNorm as
  torchvision builds it without pretrained weights) and an FPN (Lin et al.
  2017): 1×1 lateral and 3×3 output convolutions with bias, nearest
  upsampling with PyTorch's index rule, an extra level P6 = max-pool(P5, 1, 2);
  256 channels at strides 4, 8, 16, 32, 64.
* RPN: a shared 3×3 conv + ReLU, per anchor one objectness logit and 4 box
  deltas; anchors and proposals from ``visionjax.detection.proposals``.
* box head: RoIAlign 7×7 (``visionjax.ops.multiscale_roi_align``, sampling
  ratio 2, P2–P5), two 1024-wide FC layers, class logits and per-class box
  deltas (``num_classes`` includes the background, as torchvision).
* mask head: RoIAlign 14×14, four 3×3 convs, a 2×2/2 transposed conv and
  per-class 28×28 mask logits.

Boxes inside the model are pixel xyxy of the (padded) input image, the R-CNN
ops' convention. ``num_classes`` counts the *foreground* classes (as the SSD
and the tasks do); the heads predict ``num_classes + 1`` with the background
at 0, torchvision's layout (its ``num_classes=91`` is ours 90).

Two modes (``__call__``):

* training (``train=True``, ``targets`` given): RPN -> proposals (constants,
  torchvision detaches them) -> ``sample_rois`` (proposals plus the ground
  truth, drawn with ``self.make_rng('dropout')``) -> box head on the S
  sampled RoIs and mask head on the first ``int(S·fraction)`` of them (every
  positive lies there; the others are masked by ``rois['positive']``).
  Returns what the losses (``visionjax.detection.rcnn_targets``) need; the
  task computes them.
* inference: RPN -> proposals -> box head -> ``postprocess_detections`` ->
  mask head on the final detection boxes -> each detection's mask
  probabilities of its predicted class.

Layout note for weight porting: features are NHWC, so the box head flattens
RoI features as (y, x, channel); torchvision flattens (channel, y, x).
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from visionjax.detection import proposals as proposal_lib
from visionjax.detection import rcnn, rcnn_targets
from visionjax.models import resnet
from visionjax.models.layers import ModelSpec, ZooModule, check_images, frozen
from visionjax.ops.roi import multiscale_roi_align


def upsample_nearest(x: jax.Array, size: Tuple[int, int]) -> jax.Array:
  """[B, h, w, C] -> [B, H, W, C], PyTorch's 'nearest' rule:
  ``src = min(floor(dst · h / H), h - 1)`` per axis (not half-pixel)."""
  h, w = x.shape[1:3]
  rows = np.minimum(np.floor(np.arange(size[0]) * (h / size[0])), h - 1).astype(np.int32)
  cols = np.minimum(np.floor(np.arange(size[1]) * (w / size[1])), w - 1).astype(np.int32)
  return x[:, rows][:, :, cols]


def _check_targets(targets, b):
  """Trace-time shapes of the training ``targets`` (see :class:`MaskRCNN`)."""
  if not isinstance(targets, Mapping) or not {"boxes", "labels", "valid"} <= set(targets):
    raise ValueError("MaskRCNN targets must be a dict with 'boxes', 'labels', 'valid'; got "
                     f"{sorted(targets) if isinstance(targets, Mapping) else type(targets)}")
  g = targets["boxes"].shape[1] if targets["boxes"].ndim == 3 else None
  if targets["boxes"].shape != (b, g, 4):
    raise ValueError(f"MaskRCNN targets['boxes'] has shape {targets['boxes'].shape}; "
                     f"expected ({b}, G, 4) pixel xyxy")
  for k in ("labels", "valid"):
    if targets[k].shape != (b, g):
      raise ValueError(f"MaskRCNN targets[{k!r}] has shape {targets[k].shape}; "
                       f"expected ({b}, {g})")


class FPN(ZooModule):
  """Feature pyramid: list of [B, H_i, W_i, C_i] (fine to coarse) -> list of
  [B, H_i, W_i, features] plus P6 (stride-2 subsampling of the last)."""
  features: int = 256

  @nn.compact
  def __call__(self, feats: Sequence[jax.Array]):
    conv = functools.partial(nn.Conv, self.features, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    lateral = [conv((1, 1), name=f"inner_{i}")(f) for i, f in enumerate(feats)]
    top = lateral[-1]
    outs = [conv((3, 3), padding=((1, 1), (1, 1)), name=f"layer_{len(feats) - 1}")(top)]
    for i in range(len(feats) - 2, -1, -1):
      top = lateral[i] + upsample_nearest(top, lateral[i].shape[1:3])
      outs.insert(0, conv((3, 3), padding=((1, 1), (1, 1)), name=f"layer_{i}")(top))
    outs.append(outs[-1][:, ::2, ::2])   # max_pool2d(kernel 1, stride 2)
    return outs


class MaskRCNN(ZooModule):
  """Mask R-CNN: images [B, H, W, 3] -> dict of outputs (module docstring).

  ``targets`` (training): ``{'boxes': [B, G, 4] pixel xyxy, 'labels': int
  [B, G] in 1..num_classes, 'valid': bool [B, G]}``.
  ``image_sizes`` [B, 2] float (height, width): each image's content, the
  input's top-left part (the rest is padding); proposals and detections are
  clipped to it in both modes, as torchvision's ``ImageList.image_sizes``.
  None: the whole input. The task passes it from the batch's ``content``.

  Training outputs (A anchors, S = ``roi_batch_size``, P = ``int(S ·
  roi_positive_fraction)``, K1 = num_classes + 1):
    'objectness' [B, A], 'rpn_deltas' [B, A, 4], 'anchors' [A, 4];
    'rpn_key' uint32 key data (``jax.random.key_data``) for the RPN's anchor
    sampling, drawn from the 'dropout' stream with the RoI sampling;
    'rois' dict of :class:`~visionjax.detection.rcnn_targets.RoISample`
    fields [B, S, ...]; 'class_logits' [B, S, K1], 'box_deltas' [B, S, K1, 4];
    'mask_logits' [B, P, 2·mask_pool, 2·mask_pool, K1] for ``rois[:, :P]``.
  Inference outputs (D = ``detections_per_image``):
    'boxes' [B, D, 4] pixel xyxy, 'scores' [B, D], 'labels' int32 [B, D]
    (1..num_classes, 0 = padding), 'valid' bool [B, D], 'masks' [B, D,
    2·mask_pool, 2·mask_pool] sigmoid probabilities of the detection's class.
  """
  num_classes: int = 90
  stage_sizes: Sequence[int] = resnet.DEPTHS["resnet50"][0]
  block: str = "bottleneck"
  widths: Sequence[int] = (64, 128, 256, 512)
  stem_width: int = 64
  fpn_features: int = 256
  anchor_sizes: Sequence[Sequence[float]] = proposal_lib.FPN_SIZES
  aspect_ratios: Sequence[Sequence[float]] = proposal_lib.FPN_ASPECT_RATIOS
  representation: int = 1024       # box head FC width
  mask_layers: Sequence[int] = (256, 256, 256, 256)
  pre_nms_top_n: int = 1000
  post_nms_top_n: int = 1000
  rpn_nms_threshold: float = 0.7
  roi_batch_size: int = 512        # sampled RoIs per image in training
  roi_positive_fraction: float = 0.25
  box_score_threshold: float = 0.05
  box_nms_threshold: float = 0.5
  detections_per_image: int = 100
  box_pool: int = 7
  mask_pool: int = 14
  sampling_ratio: int = 2          # RoIAlign samples per bin and axis (torchvision: 2)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False,
               targets: Optional[Mapping[str, jax.Array]] = None,
               image_sizes: Optional[jax.Array] = None) -> Dict[str, Any]:
    check_images(images, "MaskRCNN")
    if train and targets is None:
      raise ValueError("MaskRCNN(train=True) needs targets={'boxes', 'labels', 'valid'} "
                       "(ground truth for the RoI sampling); got targets=None")
    b, h, w = images.shape[:3]
    trunk = resnet.ResNetEncoder(
        stage_sizes=self.stage_sizes, block=self.block, widths=self.widths,
        stem_width=self.stem_width, axis_name=self.axis_name, dtype=self.dtype,
        param_dtype=self.param_dtype, name="backbone")(images, train=train)
    c = [trunk[f"layer{i + 1}"] for i in range(4)]
    pyramid = FPN(self.fpn_features, dtype=self.dtype, param_dtype=self.param_dtype,
                  name="fpn")(c)
    sizes = [p.shape[1:3] for p in pyramid]
    anchors, counts = proposal_lib.fpn_anchors((h, w), sizes, self.anchor_sizes,
                                               self.aspect_ratios)
    n_anchor = len(self.anchor_sizes[0]) * len(self.aspect_ratios[0])
    objectness, deltas = self._rpn(pyramid, n_anchor)
    if image_sizes is None:
      image_sizes = jnp.tile(jnp.array([[h, w]], jnp.float32), (b, 1))
    props = proposal_lib.generate_proposals(
        anchors, deltas, objectness, image_sizes, counts, pre_nms_top_n=self.pre_nms_top_n,
        post_nms_top_n=self.post_nms_top_n, nms_threshold=self.rpn_nms_threshold,
        # The train step is checkified (losses.unchecked), which refuses the
        # early-exit NMS loop under this vmap; inference keeps the early exit.
        static_trip_count=train)
    roi_feats = pyramid[:4]
    scales = [1.0 / (2 ** (i + 2)) for i in range(4)]
    pool = functools.partial(multiscale_roi_align, roi_feats, scales=scales,
                             sampling_ratio=self.sampling_ratio)
    if train:
      _check_targets(targets, b)
      k_rpn, k_roi = jax.random.split(self.make_rng("dropout"))
      rois = rcnn_targets.sample_rois(
          k_roi, props.boxes, props.valid, targets["boxes"], targets["labels"],
          targets["valid"], batch_size_per_image=self.roi_batch_size,
          positive_fraction=self.roi_positive_fraction)
      class_logits, box_deltas = self._box_head(
          pool(rois.boxes, self.box_pool, valid=rois.valid))
      p = max(1, int(self.roi_batch_size * self.roi_positive_fraction))
      mask_logits = self._mask_head(
          pool(rois.boxes[:, :p], self.mask_pool, valid=rois.positive[:, :p]))
      return {"objectness": objectness.astype(jnp.float32),
              "rpn_deltas": deltas.astype(jnp.float32), "anchors": jnp.asarray(anchors),
              "rpn_key": jax.random.key_data(k_rpn), "rois": rois._asdict(),
              "class_logits": class_logits.astype(jnp.float32),
              "box_deltas": box_deltas.astype(jnp.float32),
              "mask_logits": mask_logits.astype(jnp.float32)}
    class_logits, box_deltas = self._box_head(
        pool(props.boxes, self.box_pool, valid=props.valid))
    dets = rcnn.postprocess_detections(
        class_logits.astype(jnp.float32), box_deltas.astype(jnp.float32), props.boxes,
        image_sizes, proposal_valid=props.valid, score_threshold=self.box_score_threshold,
        nms_threshold=self.box_nms_threshold, detections_per_image=self.detections_per_image)
    mask_logits = self._mask_head(pool(dets.boxes, self.mask_pool, valid=dets.valid))
    masks = jax.nn.sigmoid(rcnn.select_class_masks(mask_logits.astype(jnp.float32),
                                                   dets.labels))
    return {"boxes": dets.boxes, "scores": dets.scores, "labels": dets.labels,
            "valid": dets.valid, "masks": jnp.where(dets.valid[..., None, None], masks, 0.0)}

  def _rpn(self, pyramid, n_anchor):
    """Shared head over all levels -> objectness [B, A], deltas [B, A, 4]."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    conv = nn.Conv(self.fpn_features, (3, 3), padding=((1, 1), (1, 1)), name="rpn_conv", **kw)
    cls = nn.Conv(n_anchor, (1, 1), name="rpn_cls", **kw)
    reg = nn.Conv(n_anchor * 4, (1, 1), name="rpn_bbox", **kw)
    logits, deltas = [], []
    for p in pyramid:
      t = nn.relu(conv(p))
      bb = p.shape[0]
      # [B, H, W, n] -> [B, H·W·n]: cell-major, anchors within a cell (fpn_anchors' order).
      logits.append(cls(t).reshape(bb, -1))
      deltas.append(reg(t).reshape(bb, -1, 4))
    return jnp.concatenate(logits, 1), jnp.concatenate(deltas, 1)

  def _box_head(self, pooled):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, r = pooled.shape[:2]
    x = pooled.reshape(b, r, -1)
    x = nn.relu(nn.Dense(self.representation, name="fc6", **kw)(x))
    x = nn.relu(nn.Dense(self.representation, name="fc7", **kw)(x))
    k1 = self.num_classes + 1
    logits = nn.Dense(k1, name="cls_score", **kw)(x)
    deltas = nn.Dense(k1 * 4, name="bbox_pred", **kw)(x)
    return logits, deltas.reshape(b, r, k1, 4)

  def _mask_head(self, pooled):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, r = pooled.shape[:2]
    x = pooled.reshape((b * r,) + pooled.shape[2:])
    for i, f in enumerate(self.mask_layers):
      x = nn.relu(nn.Conv(f, (3, 3), padding=((1, 1), (1, 1)), name=f"mask_fcn{i + 1}",
                          **kw)(x))
    x = nn.relu(nn.ConvTranspose(self.mask_layers[-1], (2, 2), strides=(2, 2),
                                 name="conv5_mask", **kw)(x))
    x = nn.Conv(self.num_classes + 1, (1, 1), name="mask_fcn_logits", **kw)(x)
    return x.reshape((b, r) + x.shape[1:])


# Tiny widths, one block per stage, one anchor shape per cell. At the 48×48
# smoke size (layer4 2×2, so train-mode BatchNorm sees 8 values per channel;
# at 32×32 only 2, and one Adam step raised the loss) there are 194 anchors:
# every one becomes a proposal (no top-k cut, NMS off at IoU > 1), so
# proposals move continuously with the parameters and the shared one-step
# registry test sees a smooth loss. All entries share it (one compile: it sets
# every field in which they differ); the basic block is covered by the ResNet
# entries, the training-mode RoI sampling and heads by the instance-
# segmentation task's tests.
_SMOKE: Mapping[str, Any] = frozen(
    num_classes=2, stage_sizes=(1, 1, 1, 1), block="bottleneck", widths=(4, 8, 8, 16),
    stem_width=4, fpn_features=8, representation=16, mask_layers=(8,),
    anchor_sizes=proposal_lib.FPN_SIZES, aspect_ratios=((1.0,),) * 5, pre_nms_top_n=1000,
    post_nms_top_n=194, rpn_nms_threshold=1.0, roi_batch_size=64, detections_per_image=8,
    box_score_threshold=0.0, mask_pool=7, sampling_ratio=1)

REGISTRY: Dict[str, ModelSpec] = {
    "maskrcnn_r50_fpn": ModelSpec(
        functools.partial(MaskRCNN), "instance_segmentation", input_size=(800, 1088),
        smoke=_SMOKE, smoke_size=(48, 48)),
    # CPU-sized: ResNet-18 trunk, narrower FPN and heads, fewer RoIs.
    "maskrcnn_r18_fpn": ModelSpec(
        functools.partial(MaskRCNN, stage_sizes=resnet.DEPTHS["resnet18"][0], block="basic",
                          num_classes=10, representation=256, mask_layers=(128, 128),
                          fpn_features=128, post_nms_top_n=200, roi_batch_size=128),
        "instance_segmentation", input_size=(256, 256), smoke=_SMOKE, smoke_size=(48, 48)),
    # The 64×64 built-in scenes on 2 CPU cores: one basic block per stage
    # (widths 32-256), a 64-wide FPN, anchors of 12-64 px for the 20-30 px
    # digits (P2: 12, P3: 20, P4: 32, P5: 48, P6: 64; ratios 0.5/1/2), 100
    # proposals, 32 sampled RoIs per image, 20 detections (scenes hold <= 3).
    # RoIAlign with one sample per bin and 14×14 masks (mask_pool 7): the
    # RoIAlign gathers and their scatter-add gradients dominate a CPU step
    # (measured on the shared 2-core machine: 4.6 s of CPU per step at batch
    # 16 with 2 samples, 64 RoIs and 28×28 masks; 0.22 s at batch 8 with these).
    "maskrcnn_lite": ModelSpec(
        functools.partial(MaskRCNN, stage_sizes=(1, 1, 1, 1), block="basic",
                          widths=(32, 64, 128, 256), stem_width=32, num_classes=10,
                          fpn_features=64, representation=256, mask_layers=(64, 64),
                          anchor_sizes=((12,), (20,), (32,), (48,), (64,)),
                          pre_nms_top_n=300, post_nms_top_n=100, roi_batch_size=32,
                          detections_per_image=20, mask_pool=7, sampling_ratio=1),
        "instance_segmentation", input_size=(64, 64), smoke=_SMOKE, smoke_size=(48, 48)),
}
