"""torchvision Mask R-CNN -> visionjax: converted weights give torchvision's
outputs, stage by stage and end to end.

The reference is torchvision's own ``MaskRCNN`` in eval mode with random
weights (no download) whose BatchNorm statistics/affines and biases are
randomised (``randomize``). Its transform is made the identity apart from
normalisation (``min_size``/``max_size`` equal to the image's sides, so the
resize factor is exactly 1); visionjax gets the same normalised image,
zero-padded as torchvision pads it to a multiple of 32, with the unpadded
size as ``image_sizes``.

Compared, in order (first mismatch is the easiest to read):
  * FPN levels P2-P6 and the RPN's objectness and deltas per level: max
    relative difference (tests/weights_parity.py) <= 1e-5;
  * proposals: visionjax's ``generate_proposals`` on the captured RPN
    outputs with the model's settings (the call the model makes) against
    torchvision's RPN output: the same count, each torchvision proposal
    matched one-to-one to the nearest of ours, within ``BOX_ATOL`` pixels
    in every coordinate;
  * final detections: same count; each torchvision detection matched in
    the same way to one of ours of the same label (so near-tied scores that
    order differently by float noise still pass: their gaps go down to
    ~1e-6), then boxes, scores and the masks pasted into the image
    (``ops.paste_masks``, as the instance-segmentation task does);
  * the heads on the same inputs: torchvision's box head run on our
    proposals and its mask head on our detection boxes, against ours
    (class logits, per-class deltas, 28×28 mask logits) at 1e-5.

The default test uses a small twin of ``maskrcnn_r18_fpn`` (ResNet-18
trunk, 128-wide FPN, torchvision heads resized to visionjax's: same code
paths as the R50 converter) on a 100×120 image; the R50-FPN itself, at
90 + 1 classes and 1000 proposals, is marked slow.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from test_weights_torchvision import randomize  # noqa: E402
from torchvision.models import detection as tvd  # noqa: E402
from torchvision.models import resnet18  # noqa: E402
from torchvision.models.detection.backbone_utils import BackboneWithFPN  # noqa: E402
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead  # noqa: E402
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor  # noqa: E402
from weights_parity import RTOL, max_rel  # noqa: E402

from visionjax import ops  # noqa: E402
from visionjax import weights as vw  # noqa: E402
from visionjax.detection import proposals as proposal_lib  # noqa: E402
from visionjax.weights import torchvision as vwt  # noqa: E402

BOX_ATOL = 2e-3     # pixels; boxes reach ~100-200 px, decoded with weights 10/5
SCORE_ATOL = 2e-5
MASK_ATOL = 1e-3    # pasted probabilities (sub-pixel box noise moves the resampling)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CAPTURED = ("fpn", "rpn_cls", "rpn_bbox", "cls_score", "bbox_pred", "mask_fcn_logits")


def _r18_twin(**settings):
  """torchvision MaskRCNN with visionjax maskrcnn_r18_fpn's architecture."""
  torch.manual_seed(0)
  backbone = BackboneWithFPN(resnet18(weights=None),
                             {f"layer{i}": str(i - 1) for i in range(1, 5)},
                             [64, 128, 256, 512], 128)
  return randomize(tvd.MaskRCNN(
      backbone, num_classes=None, box_head=TwoMLPHead(128 * 7 * 7, 256),
      box_predictor=FastRCNNPredictor(256, 11), mask_head=MaskRCNNHeads(128, [128, 128], 1),
      mask_predictor=MaskRCNNPredictor(128, 128, 11), **settings))


def _r50(**settings):
  torch.manual_seed(0)
  module = randomize(tvd.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                               **settings))
  # Random ResNet-50 features reach std ~650 at the FPN: the heads' outputs
  # (objectness and deltas std ~30-60) would make every proposal the whole
  # image or a sliver (12 survive NMS) and saturate the scores. These factors
  # bring logits to std ~1-2 and deltas to ~0.3-0.7: ~980 distinct
  # proposals and 100 detections of 16-80 px.
  with torch.no_grad():
    for layer, factor in ((module.rpn.head.cls_logits, 0.03), (module.rpn.head.bbox_pred, 0.01),
                          (module.roi_heads.box_predictor.cls_score, 0.03),
                          (module.roi_heads.box_predictor.bbox_pred, 0.01),
                          (module.roi_heads.mask_predictor.mask_fcn_logits, 0.01)):
      layer.weight.mul_(factor)
  return module


def _torchvision_run(module, image):
  """Eval outputs for one CHW 0-1 image, plus the intermediate tensors."""
  raw = {}
  hooks = [
      module.backbone.register_forward_hook(lambda m, i, o: raw.update(fpn=o)),
      module.rpn.head.register_forward_hook(lambda m, i, o: raw.update(rpn=o)),
      module.rpn.register_forward_hook(lambda m, i, o: raw.update(proposals=o[0][0])),
      module.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: raw.update(box=o)),
      module.roi_heads.mask_predictor.register_forward_hook(
          lambda m, i, o: raw.update(mask=o))]
  with torch.no_grad():
    out = module([torch.from_numpy(image)])[0]
  for h in hooks:
    h.remove()
  features = raw["fpn"]
  raw = jax.tree.map(lambda t: t.numpy(), raw)
  return {k: v.numpy() for k, v in out.items()}, raw, features


def _torchvision_heads(module, features, image_size, proposals, boxes):
  """torchvision's box head on `proposals` and mask head on `boxes` (pixel
  xyxy NumPy): (class logits, box deltas, mask logits [N, K1, 28, 28])."""
  rh = module.roi_heads
  sizes = [tuple(image_size)]
  with torch.no_grad():
    logits, deltas = rh.box_predictor(rh.box_head(
        rh.box_roi_pool(features, [torch.from_numpy(np.array(proposals))], sizes)))
    masks = rh.mask_predictor(rh.mask_head(
        rh.mask_roi_pool(features, [torch.from_numpy(np.array(boxes))], sizes)))
  return logits.numpy(), deltas.numpy(), masks.numpy()


def _visionjax_run(conv, image, **overrides):
  """Our eval outputs for the same image (normalised, zero-padded to a
  multiple of 32 as torchvision's batching does), the captured module
  outputs of CAPTURED, the proposals (``generate_proposals`` on the
  captured RPN outputs with the model's settings: the model's own call) and
  the masks pasted into the unpadded image; one compile at XLA -O0
  (tests/weights_parity.py)."""
  h, w = image.shape[1:]
  x = conv.preprocessing.normalize(image.transpose(1, 2, 0))[None]
  x = jnp.pad(x, ((0, 0), (0, -h % 32), (0, -w % 32), (0, 0)))
  sizes = jnp.array([[h, w]], jnp.float32)
  model = conv.model(**overrides)

  def apply(v, x, s):
    out, inter = model.apply(v, x, image_sizes=s,
                             capture_intermediates=lambda m, _: m.name in CAPTURED)
    inter = {k: v["__call__"] for k, v in inter["intermediates"].items()}
    fpn = inter["fpn"][0]
    anchors, counts = proposal_lib.fpn_anchors(x.shape[1:3], [p.shape[1:3] for p in fpn],
                                               model.anchor_sizes, model.aspect_ratios)
    props = proposal_lib.generate_proposals(
        anchors, jnp.concatenate([o.reshape(1, -1, 4) for o in inter["rpn_bbox"]], 1),
        jnp.concatenate([o.reshape(1, -1) for o in inter["rpn_cls"]], 1), s, counts,
        pre_nms_top_n=model.pre_nms_top_n, post_nms_top_n=model.post_nms_top_n,
        nms_threshold=model.rpn_nms_threshold)
    pasted = ops.paste_masks(out["masks"][0], out["boxes"][0], (h, w), valid=out["valid"][0])
    return out, inter, props._asdict(), pasted

  compiled = jax.jit(apply).lower(conv.variables, x, sizes).compile(
      compiler_options={"xla_backend_optimization_level": 0})
  return jax.tree.map(np.asarray, compiled(conv.variables, x, sizes))


def _match(theirs, ours, same=None):
  """Index into `ours` of each of `theirs`: a one-to-one assignment (least
  total max-coordinate difference; scipy's Hungarian solver, since the same
  box can appear twice, e.g. clipped to the image from two levels), among
  `same` [len(theirs), len(ours)] if given, each pair within BOX_ATOL."""
  d = np.abs(theirs[:, None, :] - ours[None, :, :]).max(-1).astype(np.float64)
  if same is not None:
    d = np.where(same, d, 1e9)
  rows, j = linear_sum_assignment(d)
  assert len(rows) == len(theirs)
  assert d[rows, j].max() <= BOX_ATOL, "a box has no counterpart"
  return j


def check_parity(module, conv, image, **overrides):
  theirs, raw, features = _torchvision_run(module, image)
  out, inter, props, pasted = _visionjax_run(conv, image, **overrides)

  rels = {}

  def close(name, ours, ref):
    rels[name] = max(rels.get(name, 0.0), max_rel(ours, ref))
    assert rels[name] <= RTOL, (name, rels[name])

  # Backbone + FPN, RPN head: per level.
  for ours, key in zip(inter["fpn"][0], ("0", "1", "2", "3", "pool")):
    close("fpn", ours, raw["fpn"][key].transpose(0, 2, 3, 1))
  for lvl in range(5):
    close("objectness", inter["rpn_cls"][lvl], raw["rpn"][0][lvl].transpose(0, 2, 3, 1))
    close("rpn deltas", inter["rpn_bbox"][lvl], raw["rpn"][1][lvl].transpose(0, 2, 3, 1))

  # Proposals.
  n_props = int(props["valid"].sum())
  their_props = raw["proposals"]
  assert n_props == len(their_props)
  our_props = props["boxes"][0, :n_props]
  jp = _match(their_props, our_props)
  np.testing.assert_allclose(our_props[jp], their_props, atol=BOX_ATOL, rtol=0)

  # Detections, matched one-to-one within a label.
  n = int(out["valid"].sum())
  assert n == len(theirs["scores"]) > 10
  boxes, scores, labels = out["boxes"][0, :n], out["scores"][0, :n], out["labels"][0, :n]
  jd = _match(theirs["boxes"], boxes, theirs["labels"][:, None] == labels[None])
  np.testing.assert_allclose(boxes[jd], theirs["boxes"], atol=BOX_ATOL, rtol=0)
  np.testing.assert_allclose(scores[jd], theirs["scores"], atol=SCORE_ATOL, rtol=0)
  np.testing.assert_array_equal(labels[jd], theirs["labels"])
  mask_diff = np.abs(pasted[:n][jd] - theirs["masks"][:, 0]).max()
  assert mask_diff <= MASK_ATOL

  # The heads on the same inputs: torchvision's box head on our proposals,
  # its mask head on our detection boxes (end to end, the RoIs differ by the
  # proposals' float noise, which RoIAlign passes on).
  logits, deltas, masks = _torchvision_heads(module, features, image.shape[1:], our_props,
                                             boxes)
  close("class logits", inter["cls_score"][0][0, :n_props], logits)
  close("box deltas", inter["bbox_pred"][0][0, :n_props], deltas)
  # The mask head runs on [B·D, 28, 28, K1] (batch and detections merged).
  close("mask logits", inter["mask_fcn_logits"][0][:n].transpose(0, 3, 1, 2), masks)
  print("max relative differences:", {k: f"{v:.1e}" for k, v in rels.items()})
  print(f"{n_props} proposals (max diff {np.abs(our_props[jp] - their_props).max():.1e} px), "
        f"{n} detections: box {np.abs(boxes[jd] - theirs['boxes']).max():.1e} px, score "
        f"{np.abs(scores[jd] - theirs['scores']).max():.1e}, pasted mask {mask_diff:.1e}; "
        f"{int((jd != np.arange(n)).sum())} detections in another order")


def test_maskrcnn_r18_twin_equals_torchvision_stage_by_stage_and_end_to_end():
  # 100×120 (not multiples of 32): torchvision pads to 128×128 and clips to
  # the unpadded size; ours gets image_sizes. Every proposal scores > 0,
  # so box_score_thresh 0 keeps random-weight detections.
  h, w = 100, 120
  module = _r18_twin(min_size=h, max_size=w, image_mean=MEAN, image_std=STD,
                     rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=200,
                     box_score_thresh=0.0, box_detections_per_img=100)
  conv = vw.from_torchvision("maskrcnn_resnet50_fpn", module)
  # The trunk picks visionjax's R18 entry, whose fields the twin has.
  assert conv.name == "maskrcnn_r18_fpn" and conv.model_kwargs == {}
  model = conv.model()
  assert (model.pre_nms_top_n, model.post_nms_top_n) == (1000, 200)
  image = np.random.default_rng(1).uniform(0, 1, (3, h, w)).astype(np.float32)
  check_parity(module, conv, image, box_score_threshold=0.0, detections_per_image=100)


@pytest.mark.slow
def test_maskrcnn_resnet50_fpn_equals_torchvision():
  h, w = 160, 224
  module = _r50(min_size=h, max_size=w, box_score_thresh=0.0)
  conv = vw.from_torchvision("maskrcnn_resnet50_fpn", module)
  assert conv.name == "maskrcnn_r50_fpn" and conv.model_kwargs == {}
  image = np.random.default_rng(2).uniform(0, 1, (3, h, w)).astype(np.float32)
  check_parity(module, conv, image, box_score_threshold=0.0)


def _old_names(state):
  """torchvision < 0.13 key spellings, as in COCO_V1's published file."""
  out = {}
  for k, v in state.items():
    for a, b in ((".conv.0.0.", ".conv."), ("_blocks.0.0.", "_blocks.0."),
                 ("_blocks.1.0.", "_blocks.1."), ("_blocks.2.0.", "_blocks.2."),
                 ("_blocks.3.0.", "_blocks.3.")):
      k = k.replace(a, b)
    if k.startswith("roi_heads.mask_head."):
      i = int(k.split(".")[2])
      k = f"roi_heads.mask_head.mask_fcn{i + 1}.{k.split('.')[-1]}"
    out[k] = v
  return out


def test_maskrcnn_coco_v1_registration_old_key_names_and_provenance():
  assert vwt.TORCHVISION_MODELS["maskrcnn_resnet50_fpn"] == "maskrcnn_r50_fpn"
  state = _r50().state_dict()
  old = _old_names(state)
  assert "rpn.head.conv.weight" in old and "roi_heads.mask_head.mask_fcn4.bias" in old
  assert "backbone.fpn.layer_blocks.3.weight" in old
  conv = vw.from_torchvision("maskrcnn_resnet50_fpn", old, weights="COCO_V1")
  assert conv.name == "maskrcnn_r50_fpn" and conv.model_kwargs == {}
  # Same arrays as from the new spellings (spot checks of each renamed kind).
  p = conv.variables["params"]
  np.testing.assert_array_equal(
      p["rpn_conv"]["kernel"], state["rpn.head.conv.0.0.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(p["fpn"]["layer_3"]["bias"],
                                state["backbone.fpn.layer_blocks.3.0.bias"].numpy())
  np.testing.assert_array_equal(p["mask_fcn4"]["bias"],
                                state["roi_heads.mask_head.3.0.bias"].numpy())
  prov = conv.provenance
  assert prov.weights == "MaskRCNN_ResNet50_FPN_Weights.COCO_V1"
  assert prov.url.endswith("maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth")
  assert prov.metrics["COCO-val2017"] == {"box_map": 37.9, "mask_map": 34.6}
  assert len(prov.categories) == 91 and prov.categories[0] == "__background__"
  assert any("image_sizes" in n for n in prov.notes)
  pre = conv.preprocessing
  assert pre.mean == MEAN and pre.std == STD and pre.resize_size == 800
  with pytest.raises(ValueError, match="old and the new name"):
    vw.from_torchvision("maskrcnn_resnet50_fpn",
                        {**state, "rpn.head.conv.weight": state["rpn.head.conv.0.0.weight"]})
