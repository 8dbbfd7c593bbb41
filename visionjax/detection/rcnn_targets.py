"""Training targets and losses of Faster/Mask R-CNN (torchvision's), static shapes.

Boxes are pixel xyxy (``visionjax.detection.proposals``). Everything is a
fixed-size computation on padded inputs with ``valid`` masks, jit- and
vmap-safe; losses are returned as sums with the count torchvision divides
by, so ``sum / count`` over a batch is torchvision's value for that batch
(the package's "sums, not means" rule).

* :func:`match_quality`: torchvision's ``Matcher`` on a [G, N] quality
  (IoU) matrix: each prediction takes its best ground truth (first on ties);
  quality below ``low`` -> -1 (background), in ``[low, high)`` -> -2
  (ignored); with ``allow_low_quality_matches`` every prediction that is, for
  some ground truth, among its highest-quality predictions (ties included,
  even when that highest quality is 0) gets its best ground truth back.
* :func:`sample_balanced`: ``BalancedPositiveNegativeSampler``: at most
  ``int(S·fraction)`` random positives, then random negatives up to S in
  all, as S static slots (positives first, padding slots ``valid=False``).
  The random subset is drawn with a JAX key (uniform over subsets of the
  right size, like ``torch.randperm``, but not the same draw).
* RPN (:func:`rpn_targets`, :func:`rpn_loss`): Matcher(0.7, 0.3, low-quality
  matches) of anchors against ground truth; sampler (256, 0.5); objectness
  BCE averaged over the sampled anchors and smooth-L1 (beta 1/9) of the
  positives' deltas (``BoxCoder((1, 1, 1, 1))``) divided by the same count
  (``RegionProposalNetwork.compute_loss``).
* Box head (:func:`sample_rois`, :func:`fastrcnn_loss`): ground-truth boxes
  appended to the proposals; Matcher(0.5, 0.5); sampler (512, 0.25); class
  targets (0 = background), deltas with ``BoxCoder((10, 10, 5, 5))``;
  cross-entropy over the sampled RoIs and smooth-L1 (beta 1/9) of each
  positive's own-class deltas divided by the number of sampled RoIs.
* Mask head (:func:`mask_targets`, :func:`maskrcnn_loss`): each positive
  RoI's matched ground-truth mask cropped to M×M by RoIAlign
  (``project_masks_on_boxes``: ``roi_align(mask, box, M, spatial_scale=1,
  sampling_ratio=-1, aligned=False)``) and the per-pixel BCE of the matched
  class's mask logits, averaged over the positive RoIs' M·M pixels.

Differences from torchvision: ground-truth masks come padded to the batch's
image size, so a box reaching past an image's own content samples the zero
padding where torchvision clamps to the mask's last row/column; adaptive
RoIAlign sampling is capped at ``max_sampling_ratio`` (``ops.roi``).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from visionjax.detection.proposals import encode_boxes
from visionjax.detection.rcnn import BOX_WEIGHTS
from visionjax.losses import sigmoid_binary_cross_entropy, smooth_l1_loss, softmax_cross_entropy
from visionjax.ops.boxes import box_iou, check_boxes
from visionjax.ops.roi import roi_align_indexed

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2
RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def match_quality(quality, high_threshold: float, low_threshold: float, *,
                  allow_low_quality_matches: bool = False, gt_valid=None, pred_valid=None):
  """torchvision ``Matcher`` (see the module docstring) with padding.

  Args:
    quality: [G, N] (ground truth × predictions), e.g. IoU.
    gt_valid: optional bool [G]; padding rows never match.
    pred_valid: optional bool [N]; padding predictions come out -2 (ignored).

  Returns: int32 [N]: ground-truth index, -1 (below ``low_threshold``) or -2.
  """
  if low_threshold > high_threshold:
    raise ValueError(f"match_quality: low_threshold={low_threshold} > high_threshold="
                     f"{high_threshold}; expected low <= high")
  q = jnp.asarray(quality)
  if q.ndim != 2:
    raise ValueError(f"match_quality: quality has shape {q.shape}; expected [G, N]")
  g, n = q.shape
  gv = jnp.ones((g,), bool) if gt_valid is None else jnp.asarray(gt_valid, bool)
  pv = jnp.ones((n,), bool) if pred_valid is None else jnp.asarray(pred_valid, bool)
  if gv.shape != (g,) or pv.shape != (n,):
    raise ValueError(f"match_quality: gt_valid {gv.shape} / pred_valid {pv.shape}; expected "
                     f"({g},) / ({n},) for quality {q.shape}")
  if g == 0:
    return jnp.where(pv, BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS).astype(jnp.int32)
  q = jnp.where(gv[:, None], q, -jnp.inf)
  vals = jnp.max(q, axis=0)
  best = jnp.argmax(q, axis=0).astype(jnp.int32)
  matches = jnp.where(vals < low_threshold, BELOW_LOW_THRESHOLD,
                      jnp.where(vals < high_threshold, BETWEEN_THRESHOLDS, best))
  if allow_low_quality_matches:
    per_gt = jnp.max(jnp.where(pv[None, :], q, -jnp.inf), axis=1)          # [G]
    tie = gv[:, None] & pv[None, :] & (q == per_gt[:, None])
    matches = jnp.where(jnp.any(tie, axis=0), best, matches)
  return jnp.where(pv, matches, BETWEEN_THRESHOLDS).astype(jnp.int32)


class Sample(NamedTuple):
  """S sampled elements: ``index`` int32 [S] (positives first, then
  negatives; 0 in padding slots), ``valid`` bool [S], ``positive`` bool [S]."""
  index: jax.Array
  valid: jax.Array
  positive: jax.Array


def _static_sample_sizes(batch_size_per_image, positive_fraction):
  if not isinstance(batch_size_per_image, int) or batch_size_per_image < 1:
    raise ValueError(f"batch_size_per_image={batch_size_per_image!r}; expected an int >= 1")
  if not 0.0 <= positive_fraction <= 1.0:
    raise ValueError(f"positive_fraction={positive_fraction!r}; expected a number in [0, 1]")
  return batch_size_per_image, int(batch_size_per_image * positive_fraction)


def sample_balanced(key, labels, batch_size_per_image: int, positive_fraction: float) -> Sample:
  """``BalancedPositiveNegativeSampler`` for one image, S static slots.

  labels int [N]: >= 1 positive, 0 negative, < 0 ignored. Takes
  ``num_pos = min(#positive, int(S·fraction))`` positives and
  ``min(#negative, S - num_pos)`` negatives, each a uniformly random subset
  (the largest of independent uniform keys).
  """
  s, pmax = _static_sample_sizes(batch_size_per_image, positive_fraction)
  labels = jnp.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"sample_balanced: labels has shape {labels.shape}; expected [N]")
  n = labels.shape[0]
  pos = labels >= 1
  neg = labels == 0
  num_pos = jnp.minimum(jnp.sum(pos), pmax)
  num_neg = jnp.minimum(jnp.sum(neg), s - num_pos)
  kp, kn = jax.random.split(key)
  # top_k of uniform keys: a uniform random subset, ranked before the -1 of
  # the other elements (lax.top_k, not a full sort of N).
  _, pos_idx = jax.lax.top_k(jnp.where(pos, jax.random.uniform(kp, (n,)), -1.0),
                             max(1, min(pmax, n)))
  _, neg_idx = jax.lax.top_k(jnp.where(neg, jax.random.uniform(kn, (n,)), -1.0),
                             max(1, min(s, n)))
  slot = jnp.arange(s)
  is_pos = slot < num_pos
  j = slot - num_pos
  is_neg = ~is_pos & (j < num_neg)
  idx = jnp.where(is_pos, pos_idx[jnp.clip(slot, 0, pos_idx.shape[0] - 1)],
                  neg_idx[jnp.clip(j, 0, neg_idx.shape[0] - 1)])
  valid = is_pos | is_neg
  return Sample(jnp.where(valid, idx, 0).astype(jnp.int32), valid, is_pos)


def _gt(gt_boxes, gt_valid, fn):
  gt = check_boxes(gt_boxes, "gt_boxes")
  if gt.ndim != 2:
    raise ValueError(f"{fn}: gt_boxes has shape {gt.shape}; expected [G, 4] (vmap for batches)")
  gv = jnp.asarray(gt_valid, bool)
  if gv.shape != gt.shape[:1]:
    raise ValueError(f"{fn}: gt_valid has shape {gv.shape}; expected ({gt.shape[0]},)")
  return gt, gv


def _matched_boxes(gt, matches):
  if gt.shape[0] == 0:  # static: no ground-truth slots at all
    return jnp.zeros(matches.shape + (4,), gt.dtype)
  return gt[jnp.maximum(matches, 0)]


class RPNTargets(NamedTuple):
  """Per anchor: ``labels`` int32 [A] (1 object, 0 background, -1 ignored),
  ``matches`` int32 [A] (:func:`match_quality`), ``deltas`` [A, 4] (the
  matched box encoded against the anchor)."""
  labels: jax.Array
  matches: jax.Array
  deltas: jax.Array


def rpn_targets(anchors, gt_boxes, gt_valid, *, fg_iou_thresh: float = 0.7,
                bg_iou_thresh: float = 0.3,
                weights: Sequence[float] = RPN_BOX_WEIGHTS) -> RPNTargets:
  """``RegionProposalNetwork.assign_targets_to_anchors`` + ``box_coder.encode``
  for one image: anchors [A, 4], gt_boxes [G, 4], gt_valid bool [G]. With no
  valid ground truth every anchor is background."""
  anchors = check_boxes(anchors, "anchors")
  gt, gv = _gt(gt_boxes, gt_valid, "rpn_targets")
  m = match_quality(box_iou(gt, anchors), fg_iou_thresh, bg_iou_thresh,
                    allow_low_quality_matches=True, gt_valid=gv)
  labels = jnp.where(m >= 0, 1, jnp.where(m == BELOW_LOW_THRESHOLD, 0, -1)).astype(jnp.int32)
  deltas = encode_boxes(_matched_boxes(gt, m), anchors, weights)
  return RPNTargets(labels, m, deltas)


class RPNLoss(NamedTuple):
  """Batch sums: ``objectness`` (BCE) and ``box`` (smooth-L1) over the
  sampled anchors, and ``count`` (sampled anchors); torchvision's losses are
  ``objectness / count`` and ``box / count``. ``targets`` (:class:`RPNTargets`,
  [B, A]) and ``sample`` (:class:`Sample`, [B, S]) for inspection."""
  objectness: jax.Array
  box: jax.Array
  count: jax.Array
  targets: RPNTargets
  sample: Sample


def _keys(key, b):
  return jax.random.split(key, b)


def rpn_loss(key, objectness, deltas, anchors, gt_boxes, gt_valid, *,
             batch_size_per_image: int = 256, positive_fraction: float = 0.5,
             fg_iou_thresh: float = 0.7, bg_iou_thresh: float = 0.3, beta: float = 1.0 / 9,
             weights: Sequence[float] = RPN_BOX_WEIGHTS) -> RPNLoss:
  """RPN training loss (``compute_loss``) of a batch.

  Args:
    key: PRNG key for the sampling (split per image).
    objectness: [B, A] logits; deltas: [B, A, 4]; anchors: [A, 4] or [B, A, 4].
    gt_boxes: [B, G, 4] pixel xyxy; gt_valid: bool [B, G].
  """
  objectness = jnp.asarray(objectness)
  deltas = jnp.asarray(deltas)
  if objectness.ndim != 2 or deltas.shape != objectness.shape + (4,):
    raise ValueError(f"rpn_loss: objectness {objectness.shape} and deltas {deltas.shape}; "
                     "expected [B, A] and [B, A, 4]")
  b, a = objectness.shape
  anchors = jnp.asarray(anchors)
  if anchors.shape not in ((a, 4), (b, a, 4)):
    raise ValueError(f"rpn_loss: anchors has shape {anchors.shape}; expected ({a}, 4) or "
                     f"({b}, {a}, 4)")
  anchors = jnp.broadcast_to(anchors, (b, a, 4))
  tg = jax.vmap(lambda an, g, v: rpn_targets(an, g, v, fg_iou_thresh=fg_iou_thresh,
                                             bg_iou_thresh=bg_iou_thresh, weights=weights))(
      anchors, jnp.asarray(gt_boxes), jnp.asarray(gt_valid, bool))
  sample = jax.vmap(lambda k, l: sample_balanced(k, l, batch_size_per_image,
                                                 positive_fraction))(_keys(key, b), tg.labels)
  take = jax.vmap(lambda x, i: x[i])
  obj_sum, count = sigmoid_binary_cross_entropy(
      take(objectness, sample.index), take(tg.labels, sample.index).clip(0, 1),
      where=sample.valid, reduction="sum_and_count")
  box_sum = smooth_l1_loss(take(deltas, sample.index), take(tg.deltas, sample.index),
                           beta=beta, where=sample.positive, reduction="sum")
  return RPNLoss(obj_sum, box_sum, count, tg, sample)


class RoISample(NamedTuple):
  """S sampled RoIs per image (positives first; torchvision's
  ``select_training_samples``): ``boxes`` [..., S, 4] pixel xyxy,
  ``labels`` int32 [..., S] (0 background), ``matches`` int32 [..., S]
  (matched ground truth, 0 for background as torchvision's clamped index),
  ``deltas`` [..., S, 4] regression targets, ``valid`` / ``positive`` bool
  [..., S]. Positives all lie in the first ``int(S·fraction)`` slots."""
  boxes: jax.Array
  labels: jax.Array
  matches: jax.Array
  deltas: jax.Array
  valid: jax.Array
  positive: jax.Array


def sample_rois(key, proposals, proposal_valid, gt_boxes, gt_labels, gt_valid, *,
                batch_size_per_image: int = 512, positive_fraction: float = 0.25,
                fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5,
                weights: Sequence[float] = BOX_WEIGHTS) -> RoISample:
  """Box-head training RoIs of a batch (see the module docstring).

  Args:
    key: PRNG key (split per image).
    proposals: [B, P, 4] pixel xyxy; proposal_valid: bool [B, P].
    gt_boxes: [B, G, 4]; gt_labels: int [B, G] in 1..K-1; gt_valid: bool [B, G].

  Returns: :class:`RoISample` of [B, S] with S = ``batch_size_per_image``.
  """
  # Targets are constants: torchvision detaches the proposals, and the
  # sampled boxes must carry no gradient into the RPN.
  proposals = jax.lax.stop_gradient(check_boxes(proposals, "proposals"))
  gt_boxes = jax.lax.stop_gradient(check_boxes(gt_boxes, "gt_boxes"))
  if proposals.ndim != 3 or gt_boxes.ndim != 3 or proposals.shape[0] != gt_boxes.shape[0]:
    raise ValueError(f"sample_rois: proposals {proposals.shape} and gt_boxes {gt_boxes.shape}; "
                     "expected [B, P, 4] and [B, G, 4]")
  gt_labels = jnp.asarray(gt_labels)
  if gt_labels.shape != gt_boxes.shape[:2]:
    raise ValueError(f"sample_rois: gt_labels has shape {gt_labels.shape}; expected "
                     f"{gt_boxes.shape[:2]}")
  _static_sample_sizes(batch_size_per_image, positive_fraction)

  def one(k, props, pvalid, gt, labels, gvalid):
    gt, gvalid = _gt(gt, gvalid, "sample_rois")
    boxes = jnp.concatenate([props, gt.astype(props.dtype)])             # [P + G, 4]
    bvalid = jnp.concatenate([jnp.asarray(pvalid, bool), gvalid])
    m = match_quality(box_iou(gt, boxes), fg_iou_thresh, bg_iou_thresh, gt_valid=gvalid,
                      pred_valid=bvalid)
    safe = jnp.maximum(m, 0)
    cls = (labels[safe] if gt.shape[0] else jnp.zeros_like(m)).astype(jnp.int32)
    cls = jnp.where(m >= 0, cls, jnp.where(m == BELOW_LOW_THRESHOLD, 0, -1))
    s = sample_balanced(k, cls, batch_size_per_image, positive_fraction)
    rois = boxes[s.index]
    matched = jnp.where(s.positive, safe[s.index], 0)
    deltas = encode_boxes(_matched_boxes(gt, matched), rois, weights)
    return RoISample(jnp.where(s.valid[:, None], rois, 0.0),
                     jnp.where(s.valid, cls[s.index], 0), matched.astype(jnp.int32),
                     jnp.where(s.positive[:, None], deltas, 0.0), s.valid, s.positive)

  return jax.vmap(one)(_keys(key, proposals.shape[0]), proposals,
                       jnp.asarray(proposal_valid, bool), gt_boxes, gt_labels,
                       jnp.asarray(gt_valid, bool))


class FastRCNNLoss(NamedTuple):
  """Batch sums over the sampled RoIs: ``classification`` (cross-entropy),
  ``box`` (smooth-L1 of positives) and ``count`` (sampled RoIs); torchvision's
  ``fastrcnn_loss`` is ``(classification / count, box / count)``."""
  classification: jax.Array
  box: jax.Array
  count: jax.Array


def fastrcnn_loss(class_logits, box_deltas, rois: RoISample, *,
                  beta: float = 1.0 / 9) -> FastRCNNLoss:
  """Box-head loss: class_logits [B, S, K], box_deltas [B, S, K, 4] or
  [B, S, K·4] computed on ``rois`` (:func:`sample_rois`)."""
  class_logits = jnp.asarray(class_logits)
  if class_logits.ndim != 3 or class_logits.shape[:2] != rois.labels.shape:
    raise ValueError(f"fastrcnn_loss: class_logits has shape {class_logits.shape}; expected "
                     f"{rois.labels.shape + ('K',)}")
  b, s, k = class_logits.shape
  box_deltas = jnp.asarray(box_deltas)
  if box_deltas.size != b * s * k * 4:
    raise ValueError(f"fastrcnn_loss: box_deltas has shape {box_deltas.shape}; expected "
                     f"({b}, {s}, {k}, 4) or ({b}, {s}, {k * 4})")
  box_deltas = box_deltas.reshape(b, s, k, 4)
  cls_sum, count = softmax_cross_entropy(class_logits, rois.labels, where=rois.valid,
                                         reduction="sum_and_count")
  own = jnp.take_along_axis(box_deltas, jnp.maximum(rois.labels, 0)[..., None, None], axis=2)
  box_sum = smooth_l1_loss(own[:, :, 0], rois.deltas, beta=beta, where=rois.positive,
                           reduction="sum")
  return FastRCNNLoss(cls_sum, box_sum, count)


def mask_targets(gt_masks, boxes, matches, valid, mask_size: int, *,
                 max_sampling_ratio=None):
  """``project_masks_on_boxes`` for a batch: each RoI's matched ground-truth
  mask cropped and resized to ``mask_size``² by RoIAlign.

  gt_masks [B, G, H, W] (0/1, the padded image's pixels), boxes [B, R, 4],
  matches int [B, R] into G, valid bool [B, R] -> float32 [B, R, M, M]
  (zeros for invalid RoIs).

  ``max_sampling_ratio``: torchvision samples adaptively, ``ceil(box / M)``
  points per bin and axis; the default cap ``ceil(H / M)`` is exact for any
  box in the image but costs ``(2·M·cap)²`` gathered cells per RoI (measured
  on the 2-core CPU, B=2, 128 RoIs, 256² masks, M=28: 0.69 s per call at the
  default cap 10, 0.089 s at 4, 0.019 s at 2). A smaller cap samples boxes
  larger than ``cap·M`` pixels more coarsely than torchvision.
  """
  gt_masks = jnp.asarray(gt_masks)
  if gt_masks.ndim != 4:
    raise ValueError(f"mask_targets: gt_masks has shape {gt_masks.shape}; expected [B, G, H, W]")
  out = roi_align_indexed(gt_masks[..., None].astype(jnp.float32), boxes, matches, mask_size,
                          spatial_scale=1.0, sampling_ratio=-1, aligned=False, valid=valid,
                          max_sampling_ratio=max_sampling_ratio)
  return out[..., 0]


def maskrcnn_loss(mask_logits, labels, targets, valid):
  """Mask loss (``maskrcnn_loss``) as ``(sum, count)``: BCE with logits of
  each valid RoI's own-class channel against its M×M target, summed over
  the valid RoIs' pixels; ``count`` = valid RoIs · M².

  mask_logits [B, R, M, M, K] (the mask head's NHWC output), labels int
  [B, R] (the RoIs' classes), targets [B, R, M, M] (:func:`mask_targets`),
  valid bool [B, R] (positive RoIs).
  """
  mask_logits = jnp.asarray(mask_logits)
  targets = jnp.asarray(targets)
  if mask_logits.ndim != 5 or mask_logits.shape[:4] != targets.shape:
    raise ValueError(f"maskrcnn_loss: mask_logits {mask_logits.shape} and targets "
                     f"{targets.shape}; expected [B, R, M, M, K] and [B, R, M, M]")
  labels = jnp.asarray(labels)
  idx = jnp.broadcast_to(jnp.maximum(labels, 0)[..., None, None, None], targets.shape + (1,))
  logits = jnp.take_along_axis(mask_logits, idx, axis=-1)[..., 0]
  where = jnp.broadcast_to(jnp.asarray(valid, bool)[..., None, None], targets.shape)
  return sigmoid_binary_cross_entropy(logits, targets, where=where, reduction="sum_and_count")
