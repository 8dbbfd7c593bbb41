"""Instance segmentation through the training spine: Mask R-CNN.

The model (:mod:`visionjax.models.maskrcnn`) samples its training RoIs from
the ground truth, so the step passes it targets (:meth:`model_inputs`, pixel
boxes of the network input, labels 1..K with the background at 0). The task
computes torchvision's five losses (:mod:`visionjax.detection.rcnn_targets`)
from its training outputs:

  L = L_rpn_objectness + L_rpn_box + L_classification + L_box + L_mask

each the per-image mean torchvision takes (over the image's sampled anchors,
sampled RoIs, positive RoIs' mask pixels), so ``loss`` is ``(Σ_images L,
#images)`` and exact over padded batches. (torchvision divides each batch sum
by the batch's count; with full samples, the usual case, that is the same.)

Batches (the instance-annotation contract): ``image`` [B, H, W, C],
``boxes`` [B, G, 4] normalized xyxy, ``box_labels`` int [B, G] (0..K-1),
``box_valid`` bool [B, G], ``instances`` int [B, H, W] (0 background, 1..254
instance id, 255 void) and ``box_instance`` int [B, G] (the id of box g's
mask in ``instances``; 0: no mask). The per-object masks are built on device:
``instances[b] == box_instance[b, g]``. A box without a mask (id 0) trains
the RPN and box head but not the mask head, and is left out of the mask AP's
ground truth.
Pipeline batches also carry ``content`` int [B, 2] (``uses_content``):
each image's (height, width) in the input before fitting's bottom/right
padding, which :meth:`model_inputs` passes to the model as ``image_sizes``
in training, evaluation and prediction (torchvision's ``image_sizes``).

Evaluation: the model's inference outputs (per-image padded detections with
``mask_size``² mask probabilities) are brought to host as they are (bounded
memory: B·D·M² floats, not B·D·H·W), pasted into the input image there
(``ops.paste_masks``, torchvision's ``paste_masks_in_image``), thresholded at
0.5, and scored with COCO ``segm`` and ``bbox`` AP (:mod:`visionjax.metrics.coco`,
equal to pycocotools) at the network input's resolution.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, ClassVar, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from visionjax.data import transforms
from visionjax.detection import rcnn_targets
from visionjax.metrics import coco
from visionjax.ops.boxes import denormalize_boxes
from visionjax.ops.masks import paste_masks
from visionjax.tasks import base

Batch = Mapping[str, Any]
_check = base.check

TRAIN_KEYS = ("objectness", "rpn_deltas", "anchors", "rpn_key", "rois", "class_logits",
              "box_deltas", "mask_logits")
INFERENCE_KEYS = ("boxes", "scores", "labels", "valid", "masks")
LOSS_NAMES = ("rpn_objectness", "rpn_box", "classification", "box", "mask")
VOID = 255


@functools.partial(jax.jit, static_argnames=("size",))
def _paste(masks, boxes, valid, size):
  """[B, D, M, M] probabilities at pixel boxes [B, D, 4] -> bool [B, D, H, W]."""
  return jax.vmap(lambda m, b, v: paste_masks(m, b, size, valid=v) > 0.5)(masks, boxes, valid)


@dataclasses.dataclass(frozen=True)
class EvalState:
  """Host state: COCO segm and bbox states, the next image id."""
  segm: coco.CocoState
  bbox: coco.CocoState
  next_id: int = 0


@dataclasses.dataclass(frozen=True)
class InstanceSegmentationTask(base.Task):
  """Instance segmentation with Mask R-CNN (module docstring).

  num_classes:      foreground classes K (the model adds the background).
  max_boxes:        boxes per image in a batch (padded; more are truncated).
  rpn_batch_size, rpn_positive_fraction, rpn_fg_iou, rpn_bg_iou: the RPN's
                    anchor sampling and matching (torchvision: 256, 0.5, 0.7,
                    0.3).
  mask_max_sampling_ratio: cap of the mask targets' adaptive RoIAlign
                    sampling (``rcnn_targets.mask_targets``; None: exact).
  draw_min_score:   the lowest score `draw_result` and `visualize` draw.
  """
  name: ClassVar[str] = "instance_segmentation"
  annotation: ClassVar[str] = "instances"
  # Fitting keeps the aspect ratio and pads bottom/right (masks undistorted).
  dense: ClassVar[bool] = True
  # Batches carry each image's content size: the model's image_sizes.
  uses_content: ClassVar[bool] = True
  metrics: ClassVar[tuple[str, ...]] = ("mask_ap", "mask_ap50", "mask_ap75", "box_ap",
                                        "box_ap50", "box_ap75", "num_images")
  num_classes: int
  max_boxes: int = 50
  rpn_batch_size: int = 256
  rpn_positive_fraction: float = 0.5
  rpn_fg_iou: float = 0.7
  rpn_bg_iou: float = 0.3
  mask_max_sampling_ratio: Optional[int] = None
  draw_min_score: float = 0.5

  def __post_init__(self):
    _check(self.num_classes >= 1, f"num_classes={self.num_classes}; expected >= 1")
    _check(self.max_boxes >= 1, f"max_boxes={self.max_boxes}; expected >= 1")
    _check(self.rpn_batch_size >= 1, f"rpn_batch_size={self.rpn_batch_size}; expected >= 1")
    _check(0 < self.rpn_positive_fraction <= 1,
           f"rpn_positive_fraction={self.rpn_positive_fraction}; expected in (0, 1]")
    _check(0 <= self.rpn_bg_iou <= self.rpn_fg_iou <= 1,
           f"rpn_bg_iou={self.rpn_bg_iou}, rpn_fg_iou={self.rpn_fg_iou}; expected "
           "0 <= bg <= fg <= 1")

  # ----------------------------------------------------------------- input
  def targets(self, example):
    """Boxes padded to ``max_boxes`` (``transforms.pad_boxes``) with their
    ``box_instance`` ids (padded with 0), and the ``instances`` map."""
    for key in ("instances", "box_instance"):
      if key not in example:
        raise ValueError(f"instance segmentation needs {key!r} in each example (the "
                         f"'instances' annotation); the example has {sorted(example)}")
    out = transforms.pad_boxes(example, self.max_boxes)
    out.pop("box_difficult", None)
    if "box_instance" not in out:
      n = tf.minimum(tf.shape(example["box_instance"])[0], self.max_boxes)
      ids = tf.pad(tf.cast(example["box_instance"][:n], tf.int32), [[0, self.max_boxes - n]])
      out["box_instance"] = tf.ensure_shape(ids, [self.max_boxes])
    inst = tf.cast(example["instances"], tf.int32)
    out["instances"] = inst[..., 0] if inst.shape.rank == 3 else inst
    return out

  def model_inputs(self, batch: Batch, *, train: bool = True) -> dict[str, Any]:
    """``image_sizes`` [B, 2] float (height, width) from ``batch['content']``
    when the batch has it (torchvision's ``ImageList.image_sizes``: the RPN
    clips proposals to it in training and inference, the box head its
    detections), so nothing is proposed or detected in fitting's padding;
    and in training the ground truth (``MaskRCNN(targets=...)``): pixel
    boxes of the input, labels 1..K (0 background), valid boxes of real
    examples."""
    h, w = batch["image"].shape[1:3]
    out = {}
    if "content" in batch:
      c = jnp.asarray(batch["content"]).astype(jnp.float32)
      full = jnp.array([h, w], jnp.float32)
      # Evaluation padding examples have content 0: the whole input (their
      # outputs are dropped; a 0 x 0 image would only clip everything away).
      out["image_sizes"] = jnp.where(jnp.all(c > 0, -1, keepdims=True), c, full)
    if train:
      out["targets"] = {"boxes": denormalize_boxes(batch["boxes"], (h, w)),
                        "labels": batch["box_labels"].astype(jnp.int32) + 1,
                        "valid": self._gt_valid(batch)}
    return out

  def _gt_valid(self, batch):
    v = batch["box_valid"].astype(bool)
    if "valid" in batch:
      v = v & batch["valid"].astype(bool)[:, None]
    return v

  # ---------------------------------------------------------------- checks
  def check_values(self, batch: Mapping[str, np.ndarray]) -> None:
    """Labels and coordinates of the real boxes; instance ids in 0..255 and
    box ids in 0..254."""
    box_valid = np.asarray(batch["box_valid"], bool)
    base.check_class_ids(batch, "box_labels", self.num_classes, where=box_valid)
    base.check_finite(batch, "boxes", where=box_valid)
    inst = np.asarray(batch["instances"])
    if inst.size and (inst.min() < 0 or inst.max() > VOID):
      bad = (inst < 0) | (inst > VOID)
      mask = base._where(batch, inst, None)
      base._first_bad("instances", inst, bad if mask is None else bad & mask,
                      "instance ids in [0, 254] or 255 (void)")
    ids = np.asarray(batch["box_instance"])
    bad = ((ids < 0) | (ids >= VOID)) & box_valid
    mask = base._where(batch, ids, None)
    base._first_bad("box_instance", ids, bad if mask is None else bad & mask,
                    "mask ids in [0, 254] (0: the box has no mask)")
    if "content" in batch:
      c = np.asarray(batch["content"])
      h, w = np.asarray(batch["instances"]).shape[1:3]
      bad = (c < 1) | (c > np.array([h, w]))
      mask = base._where(batch, c, None)
      base._first_bad("content", c, bad if mask is None else bad & mask,
                      f"(height, width) of the picture in [1, {h}] x [1, {w}]")

  def validate(self, batch: Batch, channels: int) -> None:
    base.validate_image(batch, channels)
    b, h, w = batch["image"].shape[:3]
    for key in ("boxes", "box_labels", "box_valid", "instances", "box_instance"):
      _check(key in batch, f"batch has no {key!r} (instance-segmentation batches need boxes, "
             f"box_labels, box_valid, instances, box_instance); keys are {sorted(batch)}")
    boxes = batch["boxes"]
    _check(boxes.ndim == 3 and boxes.shape[0] == b and boxes.shape[2] == 4,
           f"batch['boxes'] has shape {tuple(boxes.shape)}; expected [{b}, max_boxes, 4]")
    g = boxes.shape[1]
    for key in ("box_labels", "box_valid", "box_instance"):
      _check(tuple(batch[key].shape) == (b, g),
             f"batch[{key!r}] has shape {tuple(batch[key].shape)}; expected {(b, g)}")
    base.validate_int_field(batch, "box_labels", (b, g))
    base.validate_int_field(batch, "box_instance", (b, g))
    base.validate_int_field(batch, "instances", (b, h, w))
    if "content" in batch:  # optional: without it the model uses the whole input
      base.validate_int_field(batch, "content", (b, 2))

  def check_train_outputs(self, outputs) -> None:
    keys = set(outputs) if isinstance(outputs, Mapping) else set()
    _check(set(TRAIN_KEYS) <= keys,
           f"InstanceSegmentationTask needs the training outputs {TRAIN_KEYS} of a Mask R-CNN "
           f"called with targets (model_inputs); got {sorted(keys)}")
    k = outputs["class_logits"].shape[-1] - 1
    _check(k == self.num_classes, f"model predicts {k} foreground classes (+ background); "
           f"the task has num_classes={self.num_classes}")

  # -------------------------------------------------------------- training
  def _gt_masks(self, batch):
    """bool [B, G, H, W]: box g's mask (none where ``box_instance`` is 0)."""
    ids = batch["box_instance"].astype(jnp.int32)
    inst = batch["instances"].astype(jnp.int32)
    return (inst[:, None] == ids[:, :, None, None]) & (ids > 0)[:, :, None, None]

  def _losses(self, outputs, batch) -> dict[str, jax.Array]:
    """Per-image losses [B] (zero on padding examples) and [B] extras."""
    self.check_train_outputs(outputs)
    b = batch["boxes"].shape[0]
    valid = batch.get("valid", jnp.ones((b,), bool)).astype(bool)
    targets = self.model_inputs(batch)["targets"]
    key = jax.random.wrap_key_data(outputs["rpn_key"])

    def rpn_one(i, obj, deltas, gt, gv):
      # Keys by image index (fold_in), so an image's sample does not depend on
      # the batch size (padded and unpadded batches agree).
      r = rcnn_targets.rpn_loss(
          jax.random.fold_in(key, i), obj[None], deltas[None], outputs["anchors"], gt[None],
          gv[None], batch_size_per_image=self.rpn_batch_size,
          positive_fraction=self.rpn_positive_fraction, fg_iou_thresh=self.rpn_fg_iou,
          bg_iou_thresh=self.rpn_bg_iou)
      return r.objectness, r.box, r.count

    obj, rpn_box, rpn_n = jax.vmap(rpn_one)(jnp.arange(b), outputs["objectness"],
                                            outputs["rpn_deltas"], targets["boxes"],
                                            targets["valid"])
    rois = rcnn_targets.RoISample(**outputs["rois"])
    rois = rois._replace(valid=rois.valid & valid[:, None],
                         positive=rois.positive & valid[:, None])
    per_image = lambda f: jax.vmap(lambda *a: f(*[x[None] for x in a]))

    def fast_one(logits, deltas, *fields):
      r = rcnn_targets.fastrcnn_loss(logits, deltas, rcnn_targets.RoISample(*fields))
      return r.classification, r.box, r.count

    cls, box, roi_n = per_image(fast_one)(outputs["class_logits"], outputs["box_deltas"],
                                          *rois)
    mask_logits = outputs["mask_logits"]
    p, m = mask_logits.shape[1], mask_logits.shape[2]
    gt_masks = self._gt_masks(batch)
    matches = rois.matches[:, :p]
    has_mask = jnp.take_along_axis(batch["box_instance"] > 0, matches, axis=1)
    mask_valid = rois.positive[:, :p] & has_mask
    mt = rcnn_targets.mask_targets(gt_masks, rois.boxes[:, :p], matches, mask_valid, m,
                                   max_sampling_ratio=self.mask_max_sampling_ratio)
    mask_sum, mask_n = per_image(rcnn_targets.maskrcnn_loss)(
        mask_logits, rois.labels[:, :p], mt, mask_valid)
    mean = lambda s, n: jnp.where(valid, s / jnp.maximum(n, 1), 0.0)
    losses = {"rpn_objectness": mean(obj, rpn_n), "rpn_box": mean(rpn_box, rpn_n),
              "classification": mean(cls, roi_n), "box": mean(box, roi_n),
              "mask": mean(mask_sum, mask_n)}
    pred = jnp.argmax(outputs["class_logits"], -1)
    losses["roi_correct"] = jnp.sum((pred == rois.labels) & rois.valid, 1).astype(jnp.float32)
    losses["rois"] = jnp.sum(rois.valid, 1).astype(jnp.float32)
    losses["positives"] = jnp.sum(rois.positive, 1).astype(jnp.float32)
    losses["images"] = valid.astype(jnp.float32)
    return losses

  def loss(self, outputs, batch):
    """(Σ_images Σ_parts L_part, #images): the step divides."""
    parts = self._losses(outputs, batch)
    return sum(jnp.sum(parts[k]) for k in LOSS_NAMES), jnp.sum(parts["images"])

  def train_sums(self, outputs, batch):
    return {f"{k}_sum": jnp.sum(v) for k, v in self._losses(outputs, batch).items()}

  def summarize_train(self, sums) -> dict[str, float]:
    n = max(float(sums["images_sum"]), 1.0)
    out = {f"{k}_loss": float(sums[f"{k}_sum"]) / n for k in LOSS_NAMES}
    out["roi_accuracy"] = float(sums["roi_correct_sum"]) / max(float(sums["rois_sum"]), 1.0)
    out["positive_rois_per_image"] = float(sums["positives_sum"]) / n
    return out

  # ------------------------------------------------------------ evaluation
  def _check_inference(self, outputs):
    keys = set(outputs) if isinstance(outputs, Mapping) else set()
    _check(set(INFERENCE_KEYS) <= keys,
           f"InstanceSegmentationTask needs the inference outputs {INFERENCE_KEYS} of a Mask "
           f"R-CNN (train=False); got {sorted(keys)}")

  def postprocess(self, outputs) -> dict[str, jax.Array]:
    """Padded detections: ``boxes`` [B, D, 4] pixel xyxy of the input,
    ``scores``, ``classes`` (0..K-1), ``valid`` [B, D], ``masks`` [B, D, M, M]
    probabilities inside each box (the model does the NMS)."""
    self._check_inference(outputs)
    return {"boxes": outputs["boxes"], "scores": outputs["scores"],
            "classes": jnp.maximum(outputs["labels"] - 1, 0), "valid": outputs["valid"],
            "masks": outputs["masks"]}

  def eval_sums(self, outputs, batch):
    b = batch["boxes"].shape[0]
    return {"num_images": jnp.sum(batch.get("valid", jnp.ones((b,), bool)).astype(jnp.float32))}

  def eval_examples(self, outputs, batch) -> dict[str, jax.Array]:
    d = self.postprocess(outputs)
    b = batch["boxes"].shape[0]
    return {"dt_boxes": d["boxes"], "dt_scores": d["scores"], "dt_classes": d["classes"],
            "dt_valid": d["valid"], "dt_masks": d["masks"], "gt_boxes": batch["boxes"],
            "gt_labels": batch["box_labels"], "gt_valid": batch["box_valid"].astype(bool),
            "gt_instance": batch["box_instance"], "instances": batch["instances"],
            "valid": batch.get("valid", jnp.ones((b,), bool)).astype(bool)}

  def eval_init(self, image_size) -> EvalState:
    cats = list(range(self.num_classes))
    return EvalState(coco.coco_init(cats), coco.coco_init(cats))

  def eval_update(self, state: EvalState, examples) -> EvalState:
    """COCO segm and bbox matching of one batch, at the input's pixels."""
    ex = {k: np.asarray(v) for k, v in examples.items()}
    keep = ex["valid"].astype(bool)
    ex = {k: v[keep] for k, v in ex.items()}
    n = int(keep.sum())
    if n == 0:
      return state
    h, w = ex["instances"].shape[1:3]
    ids = np.arange(state.next_id, state.next_id + n)
    dt_masks = np.asarray(_paste(ex["dt_masks"], ex["dt_boxes"], ex["dt_valid"], (h, w)))
    gt_ids = ex["gt_instance"]
    gt_masks = (ex["instances"][:, None] == gt_ids[:, :, None, None]) & \
        (gt_ids > 0)[:, :, None, None]
    dt = dict(dt_scores=ex["dt_scores"], dt_classes=ex["dt_classes"], dt_valid=ex["dt_valid"])
    segm = coco.coco_update_segm_batch(
        state.segm, image_ids=ids, gt_masks=gt_masks, gt_classes=ex["gt_labels"],
        gt_valid=ex["gt_valid"] & (gt_ids > 0), dt_masks=dt_masks, **dt)
    scale = np.array([w, h, w, h], np.float64)
    bbox = coco.coco_update_batch(
        state.bbox, image_ids=ids, gt_boxes=ex["gt_boxes"] * scale, gt_classes=ex["gt_labels"],
        gt_valid=ex["gt_valid"], dt_boxes=ex["dt_boxes"], box_format="xyxy", **dt)
    return EvalState(segm, bbox, state.next_id + n)

  def summarize(self, sums, state: Optional[EvalState] = None) -> dict[str, Any]:
    out = {"num_images": float(sums["num_images"])}
    if state is not None:
      s, b = coco.coco_compute(state.segm), coco.coco_compute(state.bbox)
      out.update(mask_ap=s["AP"], mask_ap50=s["AP50"], mask_ap75=s["AP75"], box_ap=b["AP"],
                 box_ap50=b["AP50"], box_ap75=b["AP75"],
                 mask_ap_per_class=[None if np.isnan(x) else float(x)
                                    for x in s["per_class_ap"]])
    else:
      out.update({k: -1.0 for k in self.metrics if k != "num_images"})
    return out

  # -------------------------------------------------------- your own images
  def inference_outputs(self, outputs):
    return self.postprocess(outputs)

  def to_result(self, out, *, class_names, content, size):
    """Detections at the original ``size``: pixel boxes, and masks pasted
    there (bool [N, H, W]). The image filled the input's top-left ``content``
    (nh, nw) (aspect kept, padding at the bottom/right), so input pixels
    scale by ``size / content``."""
    keep = np.asarray(out["valid"], bool)
    nh, nw = (int(v) for v in content)
    h, w = (int(v) for v in size)
    scale = np.array([w / nw, h / nh, w / nw, h / nh], np.float32)
    boxes = np.asarray(out["boxes"], np.float32).reshape(-1, 4) * scale
    # Predictor tells the model the content size (image_sizes), so its boxes
    # lie in [0, content]: the clip only absorbs float32 rounding of the
    # scale (nw · w / nw may exceed w by an ulp). The drop of boxes wholly
    # outside the picture is for outputs of a model called without
    # image_sizes (its boxes are clipped to the whole padded input); this
    # method is public. The masks are pasted with the boxes the model
    # predicted them for; _paste drops what falls outside the picture.
    clipped = np.clip(boxes, 0.0, np.array([w, h, w, h], np.float32))
    keep = keep & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    # All D padded slots at once: one compile per output size, whatever the
    # number of detections.
    masks = np.asarray(_paste(np.asarray(out["masks"], np.float32)[None], boxes[None],
                              keep[None], (h, w)))[0][keep]
    boxes = clipped
    classes = np.asarray(out["classes"])[keep].astype(np.int32)
    return {"boxes": boxes[keep], "classes": classes,
            "names": [class_names[c] for c in classes],
            "scores": np.asarray(out["scores"], np.float32)[keep], "masks": masks}

  def draw_result(self, image, result, class_names):
    """Each instance's mask in its own colour, then its box, class and score."""
    from visionjax import viz
    keep = np.asarray(result["scores"]) >= self.draw_min_score
    masks = np.asarray(result["masks"], bool)[keep]
    label = np.zeros(image.shape[:2], np.int32)
    for i, m in enumerate(masks):  # later (lower-score) instances under earlier ones
      label = np.where(m & (label == 0), i + 1, label)
    img = viz.draw_masks(image, label, len(masks) + 1, background=0)
    return viz.draw_boxes(img, result["boxes"][keep], result["classes"][keep],
                          result["scores"][keep], class_names, normalized=False)

  def visualize(self, images, batch, predictions, class_names, path):
    """Ground-truth instances (left) and predicted instances with boxes,
    classes and scores (right), one row per image."""
    from visionjax import viz
    from visionjax.viz.grid import image_grid
    n = len(images)
    h, w = images.shape[1:3]
    pred = {k: np.asarray(v)[:n] for k, v in predictions.items()}
    panels, titles = [], []
    inst = np.asarray(batch["instances"][:n])
    for i in range(n):
      gt = np.where(inst[i] == VOID, 0, inst[i])
      panels.append(viz.draw_masks(images[i], gt, int(gt.max()) + 1, background=0))
      titles.append("ground truth")
      result = self.to_result({k: v[i] for k, v in pred.items()}, class_names=class_names,
                              content=(h, w), size=(h, w))
      panels.append(self.draw_result(images[i], result, class_names))
      titles.append(f"{int((result['scores'] >= self.draw_min_score).sum())} instances")
    fig = image_grid(panels, titles, cols=2, panel_width=2.5)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
