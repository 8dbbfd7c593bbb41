"""Mask R-CNN (He et al. 2017) with a ResNet-FPN backbone, static shapes.

Architecture as torchvision's ``maskrcnn_resnet50_fpn`` (so the R50 variant
has exactly its parameter count, 44,454,513 at 91 classes, and its weights
can be ported later):

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
ops' convention. ``__call__`` runs RPN -> proposals -> box head on every
proposal and the mask head on the best ``mask_rois`` proposals: the shapes a
training or inference step builds on. The box-head post-processing is
``visionjax.detection.rcnn`` (torchvision's); RoI sampling, targets and
losses are ``visionjax.detection.rcnn_targets``. Running the box and mask
heads on the sampled RoIs in training, and the mask head on the final
detections, come with the instance-segmentation task (issue 19, later
items), not here.

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
  """Mask R-CNN: images [B, H, W, 3] -> dict of RPN, box and mask outputs.

  Outputs (A anchors, P = ``post_nms_top_n`` proposals, M = ``mask_rois``,
  K = ``num_classes`` with background at 0):
    'objectness' [B, A], 'rpn_deltas' [B, A, 4], 'anchors' [A, 4];
    'proposals' [B, P, 4] pixel xyxy, 'proposal_scores', 'proposal_valid' [B, P];
    'class_logits' [B, P, K], 'box_deltas' [B, P, K, 4];
    'mask_logits' [B, M, 28, 28, K] for the first M proposals.
  """
  num_classes: int = 91
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
  mask_rois: int = 100
  box_pool: int = 7
  mask_pool: int = 14

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False,
               image_sizes: Optional[jax.Array] = None) -> Dict[str, jax.Array]:
    check_images(images, "MaskRCNN")
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
        post_nms_top_n=self.post_nms_top_n, nms_threshold=self.rpn_nms_threshold)
    roi_feats = pyramid[:4]
    scales = [1.0 / (2 ** (i + 2)) for i in range(4)]
    pooled = multiscale_roi_align(roi_feats, props.boxes, self.box_pool, scales=scales,
                                  sampling_ratio=2, valid=props.valid)
    class_logits, box_deltas = self._box_head(pooled)
    m = min(self.mask_rois, self.post_nms_top_n)
    mask_pooled = multiscale_roi_align(roi_feats, props.boxes[:, :m], self.mask_pool,
                                       scales=scales, sampling_ratio=2,
                                       valid=props.valid[:, :m])
    mask_logits = self._mask_head(mask_pooled)
    return {"objectness": objectness.astype(jnp.float32),
            "rpn_deltas": deltas.astype(jnp.float32), "anchors": jnp.asarray(anchors),
            "proposals": props.boxes, "proposal_scores": props.scores,
            "proposal_valid": props.valid, "class_logits": class_logits.astype(jnp.float32),
            "box_deltas": box_deltas.astype(jnp.float32),
            "mask_logits": mask_logits.astype(jnp.float32)}

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
    logits = nn.Dense(self.num_classes, name="cls_score", **kw)(x)
    deltas = nn.Dense(self.num_classes * 4, name="bbox_pred", **kw)(x)
    return logits, deltas.reshape(b, r, self.num_classes, 4)

  def _mask_head(self, pooled):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, r = pooled.shape[:2]
    x = pooled.reshape((b * r,) + pooled.shape[2:])
    for i, f in enumerate(self.mask_layers):
      x = nn.relu(nn.Conv(f, (3, 3), padding=((1, 1), (1, 1)), name=f"mask_fcn{i + 1}",
                          **kw)(x))
    x = nn.relu(nn.ConvTranspose(self.mask_layers[-1], (2, 2), strides=(2, 2),
                                 name="conv5_mask", **kw)(x))
    x = nn.Conv(self.num_classes, (1, 1), name="mask_fcn_logits", **kw)(x)
    return x.reshape((b, r) + x.shape[1:])


# Tiny widths, one block per stage, one anchor shape per cell. At the 48×48
# smoke size (layer4 2×2, so train-mode BatchNorm sees 8 values per channel;
# at 32×32 only 2, and one Adam step raised the loss) there are 194 anchors:
# every one becomes a proposal (no top-k cut, NMS off at IoU > 1)
# and gets a mask, so proposals move continuously with the parameters and the
# shared one-step registry test sees a smooth loss. Both entries share it (one
# compile); the basic block is covered by the ResNet entries.
_SMOKE: Mapping[str, Any] = frozen(
    num_classes=3, stage_sizes=(1, 1, 1, 1), block="bottleneck", widths=(4, 8, 8, 16),
    stem_width=4, fpn_features=8, representation=16, mask_layers=(8,),
    aspect_ratios=((1.0,),) * 5, pre_nms_top_n=1000, post_nms_top_n=194,
    rpn_nms_threshold=1.0, mask_rois=194)

REGISTRY: Dict[str, ModelSpec] = {
    "maskrcnn_r50_fpn": ModelSpec(
        functools.partial(MaskRCNN), "instance_segmentation", input_size=(800, 1088),
        smoke=_SMOKE, smoke_size=(48, 48)),
    # CPU-sized: ResNet-18 trunk, narrower FPN and heads, fewer RoIs.
    "maskrcnn_r18_fpn": ModelSpec(
        functools.partial(MaskRCNN, stage_sizes=resnet.DEPTHS["resnet18"][0], block="basic",
                          num_classes=11, representation=256, mask_layers=(128, 128),
                          fpn_features=128, post_nms_top_n=200, mask_rois=32),
        "instance_segmentation", input_size=(256, 256), smoke=_SMOKE, smoke_size=(48, 48)),
}
