"""torchvision state dicts -> visionjax variables.

    from visionjax import weights
    conv = weights.from_torchvision("resnet50", "resnet50-0676ba61.pth")
    model = conv.model()                       # models.create(...)
    logits = model.apply(conv.variables, conv.preprocessing.normalize(x))

`source` is a `.pth` path, a state dict (name -> tensor/array) or a
`torch.nn.Module`. Supported torchvision names and the visionjax models
they become (`TORCHVISION_MODELS`):

  resnet18/34/50/101/152     same names (torchvision's v1.5 blocks)
  vgg11..vgg19, *_bn         same names, `ceil_mode=False` (floor pools)
  alexnet                    alexnet
  efficientnet_b0..b3        same names
  deeplabv3_resnet50/101     same names, `output_stride=8, pad_input=False`
  fcn_resnet50/101           fcn_resnet50_tv / fcn_resnet101_tv
  ssd300_vgg16               ssd300_vgg16_tv, num_classes = torchvision's - 1
  maskrcnn_resnet50_fpn      maskrcnn_r50_fpn, num_classes = torchvision's - 1
                             (a Mask R-CNN state dict with a ResNet-18 trunk
                             becomes maskrcnn_r18_fpn; see `_maskrcnn_kwargs`)

Layout changes: conv kernels OIHW -> HWIO, dense kernels transposed, and the
first dense layer after a flatten (VGG fc6, AlexNet fc6) has its inputs
reordered from torchvision's (C, H, W) flatten to visionjax's (H, W, C).
BatchNorm weight/bias/running_mean/running_var become scale/bias (params)
and mean/var (batch_stats); both use epsilon 1e-5. The optional auxiliary
heads of the segmentation models (`aux_classifier.*`) are dropped (they are
only a training loss), and said so in the provenance notes. Mask R-CNN's
transposed conv (`conv5_mask`, torch [in, out, kh, kw]) is flipped in space
for flax's `ConvTranspose` (which does not flip), and its box head's fc6 is
reordered like VGG's from a (C, 7, 7) flatten. Its published file predates
torchvision's renamed blocks (`rpn.head.conv.weight`, `fpn.inner_blocks.0.
weight`, `mask_head.mask_fcn1.weight`); both spellings are read, as
torchvision's own `_load_from_state_dict` hooks do.

Preprocessing and provenance come from torchvision's own weights metadata
(`torchvision.models.get_model_weights`), picking the weights entry whose
file name matches the `.pth` given, or the one named by `weights=`, else
the model's DEFAULT entry (whose transforms are the architecture's usual
ones; provenance then says the origin is unknown).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from visionjax.weights.core import (
  Converted,
  Preprocessing,
  Provenance,
  SourceReader,
  VariableFiller,
  abstract_variables,
  sha256_of,
)

# torchvision's ssd300_vgg16 normalises inside the model with these
# (`image_mean`, and `image_std` = 1/255 to undo ToTensor's 0-1 scaling),
# i.e. 0-255 pixels minus mean·255.
SSD300_MEAN = (0.48235, 0.45882, 0.40784)

TV_LICENSE = (
    "torchvision's code is BSD-3-Clause. torchvision states that its "
    "pre-trained models may have their own licenses or terms and conditions "
    "derived from the dataset used for training, and that it is the user's "
    "responsibility to determine whether they have permission to use them "
    "for their use case. Training data: {dataset}.")


@dataclasses.dataclass(frozen=True)
class _Entry:
  """How one torchvision model becomes a visionjax one."""
  visionjax_name: str
  mapper: Callable[[SourceReader, VariableFiller], None]
  kwargs: Callable[[SourceReader], Dict[str, Any]]
  dataset: str
  ignore: Tuple[str, ...] = ()
  # Renames applied to the state dict first (old torchvision key spellings).
  rename: Optional[Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]] = None
  # The visionjax model for this source, when it depends on the source
  # (default: `visionjax_name`); `kwargs` is then relative to that model.
  pick: Optional[Callable[[SourceReader], str]] = None


# --------------------------------------------------------------------------
# Leaf conversions.


def _conv(r: SourceReader, f: VariableFiller, dst: str, src: str,
          bias: bool) -> None:
  """torch Conv2d `src` -> flax nn.Conv at params/`dst` (OIHW -> HWIO)."""
  f.set(f"params/{dst}/kernel", r[f"{src}.weight"].transpose(2, 3, 1, 0))
  if bias:
    f.set(f"params/{dst}/bias", r[f"{src}.bias"])


def _bn(r: SourceReader, f: VariableFiller, dst: str, src: str) -> None:
  """torch BatchNorm2d `src` -> flax BatchNorm at `dst`."""
  f.set(f"params/{dst}/scale", r[f"{src}.weight"])
  f.set(f"params/{dst}/bias", r[f"{src}.bias"])
  f.set(f"batch_stats/{dst}/mean", r[f"{src}.running_mean"])
  f.set(f"batch_stats/{dst}/var", r[f"{src}.running_var"])


def _conv_bn(r: SourceReader, f: VariableFiller, dst: str, conv: str,
             bn: str, bias: bool = False) -> None:
  """A conv + BN pair -> visionjax `ConvNormAct` at `dst`."""
  _conv(r, f, f"{dst}/conv", conv, bias)
  _bn(r, f, f"{dst}/norm", bn)


def _dense(r: SourceReader, f: VariableFiller, dst: str, src: str,
           chw: Optional[Tuple[int, int, int]] = None) -> None:
  """torch Linear -> flax Dense; `chw` reorders a flattened (C, H, W) input
  to visionjax's (H, W, C) flatten order."""
  w = r[f"{src}.weight"]                                      # [out, in]
  if chw is not None:  # straight to [(h, w, c), out]: one copy of fc6.
    c, h, wd = chw
    w = w.reshape(w.shape[0], c, h, wd).transpose(2, 3, 1, 0).reshape(
        h * wd * c, w.shape[0])
  else:
    w = w.T
  f.set(f"params/{dst}/kernel", w)
  f.set(f"params/{dst}/bias", r[f"{src}.bias"])


def _indices(r: SourceReader, pattern: str) -> list:
  """Sorted integers n of the keys fully matching `pattern` (one group)."""
  rx = re.compile(pattern)
  return sorted({int(m.group(1)) for k in r.keys()
                 for m in [rx.fullmatch(k)] if m})


# --------------------------------------------------------------------------
# Architectures.


def _resnet_trunk(r: SourceReader, f: VariableFiller, src: str,
                  dst: str) -> None:
  """torchvision ResNet conv1/bn1/layer1..4 (under prefix `src`) ->
  visionjax ResNetEncoder at `dst`."""
  _conv_bn(r, f, f"{dst}/stem", f"{src}conv1", f"{src}bn1")
  for i in range(1, 5):
    for j in _indices(r, rf"{re.escape(src)}layer{i}\.(\d+)\.conv1\.weight"):
      blk = f"{src}layer{i}.{j}"
      for k in (1, 2, 3):
        if f"{blk}.conv{k}.weight" in r:
          _conv_bn(r, f, f"{dst}/layer{i}_{j}/conv{k}", f"{blk}.conv{k}",
                   f"{blk}.bn{k}")
      if f"{blk}.downsample.0.weight" in r:
        _conv_bn(r, f, f"{dst}/layer{i}_{j}/downsample",
                 f"{blk}.downsample.0", f"{blk}.downsample.1")


def _resnet(r: SourceReader, f: VariableFiller) -> None:
  _resnet_trunk(r, f, "", "encoder")
  _dense(r, f, "fc", "fc")


def _vgg_convs(r: SourceReader, f: VariableFiller, convs: Sequence[str],
               stage_sizes: Sequence[int], dst: str, bn: bool) -> None:
  """Conv keys in network order -> visionjax conv{stage}_{j} at `dst`.

  With BatchNorm, torchvision's BN is the module right after its conv."""
  names = [f"conv{i + 1}_{j + 1}" for i, n in enumerate(stage_sizes)
           for j in range(n)]
  if len(convs) != len(names):
    raise ValueError(f"the source has {len(convs)} VGG conv layers, the "
                     f"visionjax model {len(names)}")
  for name, key in zip(names, convs):
    if bn:
      head, idx = key.rsplit(".", 1)
      _conv_bn(r, f, f"{dst}/{name}", key, f"{head}.{int(idx) + 1}",
               bias=True)
    else:
      _conv(r, f, f"{dst}/{name}/conv", key, bias=True)


def _vgg(stage_sizes: Sequence[int], bn: bool) -> Callable:
  def mapper(r: SourceReader, f: VariableFiller) -> None:
    convs = [f"features.{n}" for n in _indices(r, r"features\.(\d+)\.weight")
             if r.peek(f"features.{n}.weight").ndim == 4]
    _vgg_convs(r, f, convs, stage_sizes, "features", bn)
    _dense(r, f, "fc6", "classifier.0", chw=(512, 7, 7))
    _dense(r, f, "fc7", "classifier.3")
    _dense(r, f, "fc8", "classifier.6")
  return mapper


def _alexnet(r: SourceReader, f: VariableFiller) -> None:
  for i, n in enumerate((0, 3, 6, 8, 10)):
    _conv(r, f, f"conv{i + 1}", f"features.{n}", bias=True)
  _dense(r, f, "fc6", "classifier.1", chw=(256, 6, 6))
  _dense(r, f, "fc7", "classifier.4")
  _dense(r, f, "fc8", "classifier.6")


def _efficientnet(r: SourceReader, f: VariableFiller) -> None:
  _conv_bn(r, f, "stem", "features.0.0", "features.0.1")
  stages = _indices(r, r"features\.(\d+)\.0\.block\.0\.0\.weight")
  for s in stages:
    for j in _indices(r, rf"features\.{s}\.(\d+)\.block\.0\.0\.weight"):
      blk = f"features.{s}.{j}.block"
      dst = f"stage{s}_{j}"
      # Blocks without expansion (ratio 1) start at the depthwise conv.
      parts = (["expand"] if f"{blk}.3.0.weight" in r else []) + [
          "depthwise", "se", "project"]
      for n, part in enumerate(parts):
        if part == "se":
          _conv(r, f, f"{dst}/se_reduce", f"{blk}.{n}.fc1", bias=True)
          _conv(r, f, f"{dst}/se_expand", f"{blk}.{n}.fc2", bias=True)
        else:
          _conv_bn(r, f, f"{dst}/{part}", f"{blk}.{n}.0", f"{blk}.{n}.1")
  last = max(_indices(r, r"features\.(\d+)\.0\.weight"))
  _conv_bn(r, f, "head", f"features.{last}.0", f"features.{last}.1")
  _dense(r, f, "classifier", "classifier.1")


def _deeplab(r: SourceReader, f: VariableFiller) -> None:
  _resnet_trunk(r, f, "backbone.", "encoder")
  aspp = "classifier.0"
  _conv_bn(r, f, "aspp/conv1x1", f"{aspp}.convs.0.0", f"{aspp}.convs.0.1")
  # torchvision's DeepLabHead fixes the atrous rates at 12, 24, 36 (OS 8).
  for n, rate in zip((1, 2, 3), (12, 24, 36)):
    _conv_bn(r, f, f"aspp/atrous{rate}", f"{aspp}.convs.{n}.0",
             f"{aspp}.convs.{n}.1")
  _conv_bn(r, f, "aspp/image_pool", f"{aspp}.convs.4.1", f"{aspp}.convs.4.2")
  _conv_bn(r, f, "aspp/project", f"{aspp}.project.0", f"{aspp}.project.1")
  _conv_bn(r, f, "head", "classifier.1", "classifier.2")
  _conv(r, f, "classifier", "classifier.4", bias=True)


def _fcn(r: SourceReader, f: VariableFiller) -> None:
  _resnet_trunk(r, f, "backbone.", "encoder")
  _conv_bn(r, f, "head", "classifier.0", "classifier.1")
  _conv(r, f, "classifier", "classifier.4", bias=True)


def _ssd300(r: SourceReader, f: VariableFiller) -> None:
  # VGG-16's 13 convs: conv1_1..conv4_3 in backbone.features, conv5_1..5_3
  # at the start of backbone.extra.0 (after pool4), then fc6/fc7 in
  # backbone.extra.0.7.
  convs = [f"backbone.features.{n}" for n in
           _indices(r, r"backbone\.features\.(\d+)\.weight")]
  convs += [f"backbone.extra.0.{n}" for n in
            _indices(r, r"backbone\.extra\.0\.(\d+)\.weight")]
  _vgg_convs(r, f, convs, (2, 2, 3, 3, 3), "encoder", bn=False)
  _conv(r, f, "encoder/fc6/conv", "backbone.extra.0.7.1", bias=True)
  _conv(r, f, "encoder/fc7/conv", "backbone.extra.0.7.3", bias=True)
  f.set("params/conv4_l2norm/scale", r["backbone.scale_weight"])
  for i in _indices(r, r"backbone\.extra\.(\d+)\.0\.weight"):
    _conv(r, f, f"extra{i}_1/conv", f"backbone.extra.{i}.0", bias=True)
    _conv(r, f, f"extra{i}_2/conv", f"backbone.extra.{i}.2", bias=True)
  # Both torchvision's heads and visionjax's lay out a cell's channels as
  # (box, value), so the convs map as they are.
  head = "head.{}_head.module_list.{}"
  for k in _indices(r, r"head\.regression_head\.module_list\.(\d+)\.weight"):
    _conv(r, f, f"loc{k}", head.format("regression", k), bias=True)
    _conv(r, f, f"conf{k}", head.format("classification", k), bias=True)


def _conv_transpose(r: SourceReader, f: VariableFiller, dst: str,
                    src: str) -> None:
  """torch ConvTranspose2d `src` -> flax nn.ConvTranspose at params/`dst`.

  torch's is the gradient of a conv ([in, out, kh, kw], kernel applied
  flipped); flax's (transpose_kernel=False) applies its HWIO kernel as is,
  so the kernel is flipped in space."""
  w = r[f"{src}.weight"].transpose(2, 3, 0, 1)[::-1, ::-1]
  f.set(f"params/{dst}/kernel", w)
  f.set(f"params/{dst}/bias", r[f"{src}.bias"])


# torchvision before 0.13 named these blocks without the `.0` of the
# Conv2dNormActivation wrapper; COCO_V1's file still does (torchvision
# renames on load: FeaturePyramidNetwork/RPNHead/MaskRCNNHeads
# `_load_from_state_dict`).
_MASKRCNN_OLD_NAMES = (
    (re.compile(r"(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)"),
     r"\1.0.\2"),
    (re.compile(r"rpn\.head\.conv\.(weight|bias)"), r"rpn.head.conv.0.0.\1"),
    (re.compile(r"roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)"),
     lambda m: f"roi_heads.mask_head.{int(m.group(1)) - 1}.0.{m.group(2)}"),
)


def _maskrcnn_new_names(arrays: Dict[str, np.ndarray]
                        ) -> Dict[str, np.ndarray]:
  """Old torchvision key spellings -> current ones (others unchanged)."""
  out = {}
  for k, v in arrays.items():
    for rx, repl in _MASKRCNN_OLD_NAMES:
      if rx.fullmatch(k):
        k = rx.sub(repl, k)
        break
    if k in out:
      raise ValueError(f"the source has both the old and the new name of "
                       f"{k!r}")
    out[k] = v
  return out


def _maskrcnn(r: SourceReader, f: VariableFiller) -> None:
  _resnet_trunk(r, f, "backbone.body.", "backbone")
  fpn = "backbone.fpn.{}_blocks.{}.0"
  for i in _indices(r, r"backbone\.fpn\.inner_blocks\.(\d+)\.0\.weight"):
    _conv(r, f, f"fpn/inner_{i}", fpn.format("inner", i), bias=True)
    _conv(r, f, f"fpn/layer_{i}", fpn.format("layer", i), bias=True)
  # torchvision's RPN head lays a cell's channels out as (anchor, value),
  # as visionjax's: the convs map as they are.
  _conv(r, f, "rpn_conv", "rpn.head.conv.0.0", bias=True)
  _conv(r, f, "rpn_cls", "rpn.head.cls_logits", bias=True)
  _conv(r, f, "rpn_bbox", "rpn.head.bbox_pred", bias=True)
  c = r.peek("backbone.fpn.layer_blocks.0.0.weight").shape[0]
  side = int(round((r.peek("roi_heads.box_head.fc6.weight").shape[1] / c)
                   ** 0.5))
  _dense(r, f, "fc6", "roi_heads.box_head.fc6", chw=(c, side, side))
  _dense(r, f, "fc7", "roi_heads.box_head.fc7")
  # Per-class deltas: rows (class, 4) in both.
  _dense(r, f, "cls_score", "roi_heads.box_predictor.cls_score")
  _dense(r, f, "bbox_pred", "roi_heads.box_predictor.bbox_pred")
  for i in _indices(r, r"roi_heads\.mask_head\.(\d+)\.0\.weight"):
    _conv(r, f, f"mask_fcn{i + 1}", f"roi_heads.mask_head.{i}.0", bias=True)
  _conv_transpose(r, f, "conv5_mask", "roi_heads.mask_predictor.conv5_mask")
  _conv(r, f, "mask_fcn_logits", "roi_heads.mask_predictor.mask_fcn_logits",
        bias=True)


def _maskrcnn_arch(r: SourceReader) -> Dict[str, Any]:
  """The MaskRCNN fields a state dict determines (visionjax names)."""
  body = "backbone.body."
  stages = tuple(len(_indices(r, rf"backbone\.body\.layer{i}\.(\d+)\.conv1\.weight"))
                 for i in range(1, 5))
  mask = _indices(r, r"roi_heads\.mask_head\.(\d+)\.0\.weight")
  return {
      "stage_sizes": stages,
      "block": ("bottleneck" if f"{body}layer1.0.conv3.weight" in r
                else "basic"),
      "widths": tuple(r.peek(f"{body}layer{i}.0.conv1.weight").shape[0]
                      for i in range(1, 5)),
      "stem_width": r.peek(f"{body}conv1.weight").shape[0],
      "fpn_features": r.peek("backbone.fpn.layer_blocks.0.0.weight").shape[0],
      "representation": r.peek("roi_heads.box_head.fc6.weight").shape[0],
      "mask_layers": tuple(r.peek(f"roi_heads.mask_head.{i}.0.weight").shape[0]
                           for i in mask),
      # torchvision counts the background class, visionjax does not.
      "num_classes": r.peek("roi_heads.box_predictor.cls_score.weight"
                            ).shape[0] - 1,
  }


MASKRCNN_VARIANTS = ("maskrcnn_r50_fpn", "maskrcnn_r18_fpn")


def _model_fields(name: str, fields: Sequence[str]) -> Dict[str, Any]:
  from visionjax import models  # pylint: disable=import-outside-toplevel
  m = models.create(name)
  return {k: (tuple(v) if isinstance(v, (list, tuple)) else v)
          for k in fields for v in [getattr(m, k)]}


def _maskrcnn_pick(r: SourceReader) -> str:
  """The registered Mask R-CNN whose ResNet trunk the source has (ResNet-50
  for torchvision's published weights); the first variant otherwise."""
  arch = _maskrcnn_arch(r)
  keys = ("stage_sizes", "block")
  for name in MASKRCNN_VARIANTS:
    if _model_fields(name, keys) == {k: arch[k] for k in keys}:
      return name
  return MASKRCNN_VARIANTS[0]


def _maskrcnn_kwargs(r: SourceReader) -> Dict[str, Any]:
  """The source's architecture, as overrides of the picked model's fields
  (only those that differ; {} for torchvision's own R50-FPN at 90+1
  classes). Inference settings (proposal counts, thresholds) stay the
  visionjax model's: maskrcnn_r50_fpn's are torchvision's defaults."""
  arch = _maskrcnn_arch(r)
  have = _model_fields(_maskrcnn_pick(r), tuple(arch))
  return {k: v for k, v in arch.items() if have[k] != v}


# --------------------------------------------------------------------------
# The table.


def _classes(key: str, per: int = 1, minus: int = 0) -> Callable:
  """kwargs with num_classes = rows of `key` / per - minus."""
  return lambda r: {"num_classes": r.peek(key).shape[0] // per - minus}


def _with(base: Callable, **fixed: Any) -> Callable:
  return lambda r: {**base(r), **fixed}


IMAGENET = "ImageNet-1K (ILSVRC 2012)"
COCO_VOC = ("a subset of COCO train2017 with the 20 Pascal VOC categories "
            "(backbone pre-trained on ImageNet-1K)")
COCO = "COCO train2017 (backbone pre-trained on ImageNet-1K)"


def _table() -> Dict[str, _Entry]:
  from visionjax.models import vgg  # pylint: disable=import-outside-toplevel
  t: Dict[str, _Entry] = {}
  for depth in (18, 34, 50, 101, 152):
    t[f"resnet{depth}"] = _Entry(f"resnet{depth}", _resnet,
                                 _classes("fc.weight"), IMAGENET)
  for name, stages in vgg.STAGES.items():
    for bn in (False, True):
      n = name + ("_bn" if bn else "")
      t[n] = _Entry(n, _vgg(stages, bn),
                    _with(_classes("classifier.6.weight"), ceil_mode=False),
                    IMAGENET)
  t["alexnet"] = _Entry("alexnet", _alexnet, _classes("classifier.6.weight"),
                        IMAGENET)
  for b in range(4):
    t[f"efficientnet_b{b}"] = _Entry(
        f"efficientnet_b{b}", _efficientnet, _classes("classifier.1.weight"),
        IMAGENET)
  for depth in (50, 101):
    t[f"deeplabv3_resnet{depth}"] = _Entry(
        f"deeplabv3_resnet{depth}", _deeplab,
        _with(_classes("classifier.4.weight"), output_stride=8,
              pad_input=False), COCO_VOC, ignore=("aux_classifier.",))
    t[f"fcn_resnet{depth}"] = _Entry(
        f"fcn_resnet{depth}_tv", _fcn, _classes("classifier.4.weight"),
        COCO_VOC, ignore=("aux_classifier.",))
  # Map 0 has 4 boxes per cell; torchvision counts the background class.
  t["ssd300_vgg16"] = _Entry(
      "ssd300_vgg16_tv", _ssd300,
      _classes("head.classification_head.module_list.0.weight", per=4,
               minus=1), COCO)
  t["maskrcnn_resnet50_fpn"] = _Entry(
      "maskrcnn_r50_fpn", _maskrcnn, _maskrcnn_kwargs, COCO,
      rename=_maskrcnn_new_names, pick=_maskrcnn_pick)
  return t


_TABLE = _table()
TORCHVISION_MODELS: Mapping[str, str] = {
    k: e.visionjax_name for k, e in _TABLE.items()}


# --------------------------------------------------------------------------
# Sources, metadata, conversion.


def state_dict_arrays(source: Any) -> Dict[str, np.ndarray]:
  """A `.pth` path, state dict or `torch.nn.Module` -> {name: float32 array}.

  Accepts the training checkpoints of torchvision's reference scripts
  ({'model': state_dict, ...}) and strips DataParallel's 'module.' prefix.
  """
  import torch  # pylint: disable=import-outside-toplevel
  if isinstance(source, (str, os.PathLike)):
    source = torch.load(os.fspath(source), map_location="cpu",
                        weights_only=True)
  if isinstance(source, torch.nn.Module):
    source = source.state_dict()
  if not isinstance(source, Mapping):
    raise TypeError(f"expected a .pth path, a state dict or a torch.nn."
                    f"Module, got {type(source).__name__}")
  for key in ("model", "state_dict"):
    if key in source and isinstance(source[key], Mapping):
      source = source[key]
  out = {}
  for k, v in source.items():
    if k.startswith("module."):
      k = k[len("module."):]
    if isinstance(v, torch.Tensor):
      v = v.detach().cpu()
      v = v.float().numpy() if v.is_floating_point() else v.numpy()
    out[k] = np.asarray(v)
  return out


def _weights_entry(name: str, weights: Optional[str],
                   file: Optional[str]) -> Tuple[Any, bool]:
  """(torchvision WeightsEnum member, whether it is known to be the source).

  An explicit `weights` name wins; else the entry whose URL file name is
  the given file's; else DEFAULT (for its transforms only)."""
  from torchvision.models import get_model_weights  # pylint: disable=import-outside-toplevel
  enum = get_model_weights(name)
  if weights is not None:
    key = weights.split(".")[-1]
    try:
      return enum[key], True
    except KeyError:
      raise ValueError(f"{name}: unknown weights {weights!r}; torchvision "
                       f"has {[w.name for w in enum]}") from None
  if file is not None:
    base = os.path.basename(file)
    for w in enum:
      if os.path.basename(w.url) == base:
        return w, True
  return enum.DEFAULT, False


def _preprocessing(name: str, entry: Any) -> Preprocessing:
  if name.startswith("ssd300"):
    # The model resizes to 300×300 (bilinear) and normalises itself.
    return Preprocessing(mean=tuple(255.0 * m for m in SSD300_MEAN),
                         std=(1.0, 1.0, 1.0), value_range=(0.0, 255.0),
                         input_size=(300, 300), resize_size=None,
                         interpolation="bilinear")
  if name.startswith("maskrcnn"):
    # GeneralizedRCNNTransform's defaults: ImageNet statistics on 0-1
    # pixels, shorter side resized to min_size 800 (longer <= 1333).
    return Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                         value_range=(0.0, 1.0), input_size=None,
                         resize_size=800, interpolation="bilinear")
  t = entry.transforms()
  crop = getattr(t, "crop_size", None)
  resize = getattr(t, "resize_size", None)
  return Preprocessing(
      mean=tuple(float(m) for m in t.mean), std=tuple(float(s) for s in t.std),
      value_range=(0.0, 1.0),
      input_size=(crop[0], crop[0]) if crop else None,
      resize_size=resize[0] if resize else None,
      interpolation=t.interpolation.value)


def _versions() -> Dict[str, str]:
  import torch  # pylint: disable=import-outside-toplevel
  import torchvision  # pylint: disable=import-outside-toplevel
  return {"torch": torch.__version__, "torchvision": torchvision.__version__}


def from_torchvision(name: str, source: Any, *, weights: Optional[str] = None
                     ) -> Converted:
  """Converts torchvision model `name`'s weights in `source` (see module doc).

  Args:
    name: torchvision model name, a key of `TORCHVISION_MODELS`.
    source: `.pth` path, state dict, or `torch.nn.Module`.
    weights: torchvision weights entry ('IMAGENET1K_V2' or
      'ResNet50_Weights.IMAGENET1K_V2') the source holds, for preprocessing
      and provenance; default: matched by file name, else unknown.
  Returns:
    `Converted` with the visionjax name, create overrides, variables,
    preprocessing and provenance.
  """
  if name not in _TABLE:
    raise ValueError(f"no torchvision converter for {name!r}; supported: "
                     f"{', '.join(sorted(_TABLE))}")
  spec = _TABLE[name]
  file = (os.fspath(source) if isinstance(source, (str, os.PathLike))
          else None)
  arrays = state_dict_arrays(source)
  reader = SourceReader(spec.rename(arrays) if spec.rename else arrays)
  vj_name = spec.pick(reader) if spec.pick else spec.visionjax_name
  kwargs = spec.kwargs(reader)
  filler = VariableFiller(abstract_variables(vj_name, kwargs))
  spec.mapper(reader, filler)
  reader.finish(ignore_prefixes=spec.ignore,
                ignore_suffixes=("num_batches_tracked",))
  variables = filler.done()

  entry, known = _weights_entry(name, weights, file)
  notes = []
  if spec.ignore and any(k.startswith(spec.ignore) for k in reader.keys()):
    notes.append(f"dropped {', '.join(spec.ignore)}* (torchvision's "
                 "auxiliary training head)")
  if spec.visionjax_name.startswith("ssd300"):
    notes.append("torchvision label l (0 = background) is visionjax class "
                 "l - 1; its categories below are indexed by l")
  if vj_name.startswith("maskrcnn"):
    notes.append("labels are torchvision's (1..num_classes, 0 = "
                 "background), as are the categories' indices; torchvision "
                 "resizes each image so its shorter side is 800 and its "
                 "longer at most 1333 (bilinear), normalises it and pads it "
                 "to a multiple of 32: do the same and pass the unpadded "
                 "sizes as `image_sizes`")
  if not known:
    notes.append("origin of the weights unknown: preprocessing is that of "
                 f"torchvision's default {entry} weights")
  categories = entry.meta.get("categories")
  provenance = Provenance(
      source="torchvision", source_model=name,
      weights=str(entry) if known else None,
      url=entry.url if known else None, file=file,
      sha256=sha256_of(file) if file else None,
      dataset=spec.dataset, license=TV_LICENSE.format(dataset=spec.dataset),
      library_versions=_versions(),
      metrics=dict(entry.meta.get("_metrics", {})) if known else {},
      categories=(tuple(categories) if known and categories else None),
      notes=tuple(notes))
  return Converted(vj_name, kwargs, variables,
                   _preprocessing(name, entry), provenance)


def download(name: str, weights: Optional[str] = None
             ) -> Tuple[Dict[str, Any], str]:
  """Downloads torchvision's weights (needs internet; cached by torch.hub).

  Returns (state dict, the weights entry's name)."""
  from torchvision.models import get_model_weights  # pylint: disable=import-outside-toplevel
  enum = get_model_weights(name)
  entry = enum[weights.split(".")[-1]] if weights else enum.DEFAULT
  return entry.get_state_dict(progress=True, check_hash=True), str(entry)
