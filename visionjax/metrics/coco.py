"""COCO box and mask evaluation (``COCOeval``'s 'bbox' and 'segm'), vectorised.

Produces the same ``precision`` [T, R, K, A, M], ``recall`` [T, K, A, M] and
12 summary ``stats`` as ``pycocotools.cocoeval.COCOeval`` (pycocotools is a
test dependency only; nothing here imports it), but with NumPy operations that
act on all (image, category) pairs at once instead of Python loops per
detection.

Streaming use in an eval loop::

  state = coco_init(category_ids)
  for batch in loader:
    ...                                   # model -> padded detections
    state = coco_update_batch(state, image_ids=..., gt_boxes=..., ...)
  result = coco_compute(state)            # dict: 'stats', 'AP', 'AP50', ...

Masks: :func:`coco_update_segm` / :func:`coco_update_segm_batch` (bitmaps or
RLE), or ``evaluate_coco(..., iou_type='segm')``. The two protocols differ
only in the IoU (``_pairwise_iou`` for boxes, ``_rle.pair_iou`` for masks)
and in the detection area used for the area ranges (box w·h, or mask pixel
count as pycocotools' ``loadRes`` sets it); matching and accumulation are
shared.

Every image's ground truth and detections must arrive in one update (matching
is per image); images may come in any order and any batch size. States of
different hosts merge with :func:`coco_merge`.

Protocol (what pycocotools does, reproduced exactly):

* Categories: ``category_ids`` given to :func:`coco_init` (pycocotools: every
  category of the ground-truth file). Ground truth and detections of other
  categories are dropped. Categories without non-ignored ground truth in an
  area range get precision/recall -1 there and are left out of the means.
* Per (image, category): detections sorted by score (stable, so ties keep
  input order) and truncated to ``max_dets[-1]`` — the cap is per image *per
  category*, as in pycocotools. IoU as ``maskUtils.iou`` for boxes (xywh,
  float64, no +1), with crowd ground truth using the detection's area as the
  union; for masks as ``maskUtils.iou``: pixel intersection over union (over
  the detection's pixel count for crowd), 0 when they do not intersect.
* Ground truth is ignored for an area range if ``iscrowd`` or its ``area``
  (the annotation field, not the box area) lies outside [lo, hi]
  (inclusive). Greedy matching per IoU threshold t (clamped to 1 - 1e-10): a
  detection takes, among the ground truths still available (unmatched, or
  crowd) with IoU >= t, a non-ignored one if any exists, choosing the highest
  IoU and, on equal IoU, the *last* one in annotation order (pycocotools'
  loop replaces the best match on ``>=``). Matching an ignored ground truth
  makes the detection ignored; an unmatched detection whose area (w·h) lies
  outside the range is ignored.
* Accumulation per (category, area, maxDet): detections of all images sorted
  by score (stable; ties ordered by image id then rank in the image),
  ``pr = tp / (tp + fp + eps)`` with eps = ``np.spacing(1)``, made monotone,
  then sampled at the 101 recall thresholds with ``searchsorted(side='left')``
  (0 beyond the last reached recall).
* Summary: ``stats`` follow ``COCOeval.summarize`` including its quirks:
  ``stats[0]`` (AP) always uses the maxDets value 100 (``_summarize``'s
  default) while stats[1:6] and [8:12] use ``max_dets[2]``; AP50/AP75 look the
  thresholds up by exact float equality; a mean over nothing is -1.

Known, documented differences from pycocotools (none for valid COCO data):

* pycocotools records a match as the matched ground truth's ``id`` and tests
  ``dtm == 0`` for "unmatched", so a ground-truth annotation with id 0 is
  silently treated as unmatched there; here matches are booleans and ids are
  not needed.
* pycocotools overwrites an annotation's ``ignore`` field with ``iscrowd``;
  here only ``iscrowd`` exists (same result).
* pycocotools' ``loadRes`` refuses an empty result list; here no detections is
  valid and gives AP 0 for categories with ground truth.
* segm: a detection mask whose size differs from a ground-truth mask of its
  image raises ValueError (pycocotools sets that IoU to -1); polygon
  segmentations are not rasterized here (``evaluate_coco`` raises; convert
  them with ``pycocotools.mask.frPyObjects``).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from visionjax.metrics import _rle

DEFAULT_IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1,
                                     endpoint=True)
DEFAULT_REC_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1,
                                     endpoint=True)
DEFAULT_AREA_RANGES = ((0 ** 2, 1e5 ** 2), (0 ** 2, 32 ** 2), (32 ** 2, 96 ** 2),
                       (96 ** 2, 1e5 ** 2))
DEFAULT_AREA_LABELS = ("all", "small", "medium", "large")
DEFAULT_MAX_DETS = (1, 10, 100)

_SEGM_IMAGES_PER_UPDATE = 250   # evaluate_coco(iou_type='segm'): images per update

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
              "ARl")


@dataclasses.dataclass(frozen=True)
class CocoParams:
  """Evaluation parameters (defaults = ``pycocotools`` ``Params('bbox')``)."""
  category_ids: np.ndarray
  iou_thresholds: np.ndarray
  rec_thresholds: np.ndarray
  max_dets: tuple
  area_ranges: np.ndarray
  area_labels: tuple


@dataclasses.dataclass(frozen=True)
class _Chunk:
  """Per-update matching results; only detections within max_dets[-1] per
  (image, category) are kept."""
  image_ids: np.ndarray     # [I] images covered by this update
  dt_image: np.ndarray      # [D] image id
  dt_cat: np.ndarray        # [D] category index
  dt_score: np.ndarray      # [D] float64
  dt_rank: np.ndarray       # [D] rank within its (image, category) by score
  dt_matched: np.ndarray    # [D, T, A] bool
  dt_ignored: np.ndarray    # [D, T, A] bool
  npig: np.ndarray          # [K, A] number of non-ignored ground truths


@dataclasses.dataclass(frozen=True)
class CocoState:
  """Streaming evaluation state: parameters plus per-update chunks.

  Immutable; :func:`coco_update` returns a new state. Host-side (NumPy).
  """
  params: CocoParams
  chunks: tuple = ()


def coco_init(category_ids: Sequence[int], *, iou_thresholds=None, rec_thresholds=None,
              max_dets: Sequence[int] = DEFAULT_MAX_DETS, area_ranges=None,
              area_labels: Optional[Sequence[str]] = None) -> CocoState:
  """Creates an empty state for the given categories (sorted, as pycocotools).

  ``area_ranges`` [A, 2] and ``area_labels`` [A] default to all/small/medium/
  large; ``max_dets`` is sorted (as ``COCOeval.evaluate`` does).
  """
  cats = np.unique(np.asarray(category_ids, np.int64))
  if cats.size != len(category_ids) or cats.ndim != 1:
    raise ValueError(f"category_ids must be a 1-D list of unique ids; got {category_ids!r}")
  iou = DEFAULT_IOU_THRESHOLDS if iou_thresholds is None else np.asarray(iou_thresholds,
                                                                         np.float64)
  rec = DEFAULT_REC_THRESHOLDS if rec_thresholds is None else np.asarray(rec_thresholds,
                                                                         np.float64)
  areas = np.asarray(DEFAULT_AREA_RANGES if area_ranges is None else area_ranges, np.float64)
  if areas.ndim != 2 or areas.shape[1] != 2:
    raise ValueError(f"area_ranges has shape {areas.shape}; expected [A, 2]")
  labels = (DEFAULT_AREA_LABELS if area_labels is None and area_ranges is None
            else tuple(area_labels or ()))
  if len(labels) != len(areas):
    raise ValueError(f"area_labels has {len(labels)} entries; expected {len(areas)} "
                     "(one per area range)")
  dets = tuple(sorted(int(m) for m in max_dets))
  if not dets or dets[0] < 1:
    raise ValueError(f"max_dets={max_dets!r}; expected positive ints")
  if iou.ndim != 1 or rec.ndim != 1 or np.any(np.diff(rec) < 0):
    raise ValueError("iou_thresholds and rec_thresholds must be 1-D; rec_thresholds sorted")
  params = CocoParams(cats, iou, rec, dets, areas, labels)
  return CocoState(params)


def coco_merge(*states: CocoState) -> CocoState:
  """Merges states built with the same parameters (e.g. from several hosts)."""
  first = states[0]
  for s in states[1:]:
    if not _same_params(s.params, first.params):
      raise ValueError("cannot merge COCO states with different parameters")
  return CocoState(first.params, tuple(c for s in states for c in s.chunks))


def _same_params(a: CocoParams, b: CocoParams) -> bool:
  return all(np.array_equal(getattr(a, f.name), getattr(b, f.name))
             for f in dataclasses.fields(CocoParams))


def _as(x, dtype, shape_tail, name, n=None):
  x = np.asarray(x, dtype)
  if x.shape[1:] != shape_tail or x.ndim != 1 + len(shape_tail):
    tail = "".join(", " + str(s) for s in shape_tail)
    raise ValueError(f"{name} has shape {x.shape}; expected [N{tail}]")
  if n is not None and x.shape[0] != n:
    raise ValueError(f"{name} has {x.shape[0]} rows; expected {n} to match the other arrays")
  return x


def _to_xywh(boxes, box_format):
  if box_format == "xywh":
    return boxes
  if box_format == "xyxy":
    return np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0],
                     boxes[:, 3] - boxes[:, 1]], axis=1)
  raise ValueError(f"box_format={box_format!r}; expected 'xywh' (COCO) or 'xyxy'")


def coco_update(state: CocoState, *, gt_image_ids, gt_boxes, gt_category_ids, dt_image_ids,
                dt_boxes, dt_scores, dt_category_ids, gt_areas=None, gt_iscrowd=None,
                image_ids=None, box_format: str = "xywh") -> CocoState:
  """Matches one batch of images and returns the state with its results added.

  Args (host arrays; G ground truths, D detections):
    gt_image_ids: int [G]; gt_boxes: float [G, 4]; gt_category_ids: int [G].
    gt_areas: float [G] annotation areas (COCO's ``area`` field, used for the
      small/medium/large ranges); default: box w·h.
    gt_iscrowd: bool/int [G]; default all 0.
    dt_image_ids: int [D]; dt_boxes: float [D, 4]; dt_scores: float [D];
      dt_category_ids: int [D].
    image_ids: the images of this batch (images without ground truth count:
      their detections are false positives); default: every image id that
      appears in the ground truth or detections. Each image must be given in
      exactly one update.
    box_format: 'xywh' (COCO) or 'xyxy' for both gt_boxes and dt_boxes.
  """
  gt_img = _as(gt_image_ids, np.int64, (), "gt_image_ids")
  dt_img = _as(dt_image_ids, np.int64, (), "dt_image_ids")
  gt_box = _to_xywh(_as(gt_boxes, np.float64, (4,), "gt_boxes", gt_img.size), box_format)
  dt_box = _to_xywh(_as(dt_boxes, np.float64, (4,), "dt_boxes", dt_img.size), box_format)
  return _update(state, image_ids, gt_img, gt_category_ids, gt_iscrowd,
                 gt_box[:, 2] * gt_box[:, 3] if gt_areas is None else gt_areas, dt_img,
                 dt_scores, dt_category_ids, dt_box[:, 2] * dt_box[:, 3],
                 lambda d, g, crowd: _pairwise_iou(dt_box[d], gt_box[g], crowd))


def _update(state, image_ids, gt_img, gt_category_ids, gt_iscrowd, gt_areas, dt_img, dt_scores,
            dt_category_ids, dt_area, iou_fn) -> CocoState:
  """Shared by the bbox and segm updates: checks the per-annotation arrays and
  matches. ``iou_fn(d, g, crowd)`` gives the IoU of detections ``d`` with
  ground truths ``g`` (indices into the inputs) given g's crowd flags."""
  p = state.params
  g, d = gt_img.shape[0], dt_img.shape[0]
  gt_cat = _as(gt_category_ids, np.int64, (), "gt_category_ids", g)
  gt_area = _as(gt_areas, np.float64, (), "gt_areas", g)
  crowd = (np.zeros(g, bool) if gt_iscrowd is None
           else _as(gt_iscrowd, np.int64, (), "gt_iscrowd", g) != 0)
  dt_score = _as(dt_scores, np.float64, (), "dt_scores", d)
  dt_cat = _as(dt_category_ids, np.int64, (), "dt_category_ids", d)
  if image_ids is None:
    imgs = np.union1d(gt_img, dt_img)
  else:
    imgs = np.unique(np.asarray(image_ids, np.int64))
    for name, ids in (("gt_image_ids", gt_img), ("dt_image_ids", dt_img)):
      missing = np.setdiff1d(ids, imgs)
      if missing.size:
        raise ValueError(f"{name} contains {missing[:5].tolist()} not in image_ids of this "
                         "update")
  chunk = _match(p, imgs, gt_img, gt_cat, gt_area, crowd, dt_img, dt_score, dt_cat,
                 np.asarray(dt_area, np.float64), iou_fn)
  return CocoState(p, state.chunks + (chunk,))


def coco_update_batch(state: CocoState, *, image_ids, gt_boxes, gt_classes, gt_valid, dt_boxes,
                      dt_scores, dt_classes, dt_valid, gt_iscrowd=None, gt_areas=None,
                      class_to_category=None, box_format: str = "xyxy") -> CocoState:
  """:func:`coco_update` from padded per-image arrays (e.g. model outputs).

  Shapes: ``image_ids`` [B]; ``gt_boxes`` [B, G, 4], ``gt_classes`` [B, G],
  ``gt_valid`` [B, G] (False = padding), optional ``gt_iscrowd``/``gt_areas``
  [B, G]; ``dt_boxes`` [B, N, 4], ``dt_scores`` [B, N], ``dt_classes`` [B, N],
  ``dt_valid`` [B, N] (e.g. the mask from :func:`visionjax.ops.nms`).
  ``class_to_category`` [num_classes] maps contiguous class indices to
  category ids (default: identity). JAX arrays are pulled to host.
  """
  f = _flatten_batch(image_ids, gt_valid, dt_valid, gt_classes, dt_classes, gt_iscrowd,
                     gt_areas, class_to_category)
  gv, dv = f.pop("gt_valid"), f.pop("dt_valid")
  return coco_update(state, gt_boxes=np.asarray(gt_boxes, np.float64)[gv],
                     dt_boxes=np.asarray(dt_boxes, np.float64)[dv],
                     dt_scores=np.asarray(dt_scores, np.float64)[dv], box_format=box_format, **f)


def _flatten_batch(image_ids, gt_valid, dt_valid, gt_classes, dt_classes, gt_iscrowd, gt_areas,
                   class_to_category):
  """Per-annotation arrays (keyword arguments of the updates) from padded ones."""
  image_ids = np.asarray(image_ids, np.int64)
  b = image_ids.shape[0]
  gv = np.asarray(gt_valid, bool)
  dv = np.asarray(dt_valid, bool)
  if gv.ndim != 2 or gv.shape[0] != b or dv.ndim != 2 or dv.shape[0] != b:
    raise ValueError(f"gt_valid/dt_valid have shapes {gv.shape}/{dv.shape}; expected [B, G] "
                     f"and [B, N] with B = {b} (len(image_ids))")
  mapping = None if class_to_category is None else np.asarray(class_to_category, np.int64)

  def cats(x, valid):
    x = np.asarray(x, np.int64)[valid]
    return x if mapping is None else mapping[x]

  return dict(
      gt_valid=gv, dt_valid=dv, image_ids=image_ids,
      gt_image_ids=np.broadcast_to(image_ids[:, None], gv.shape)[gv],
      dt_image_ids=np.broadcast_to(image_ids[:, None], dv.shape)[dv],
      gt_category_ids=cats(gt_classes, gv), dt_category_ids=cats(dt_classes, dv),
      gt_areas=None if gt_areas is None else np.asarray(gt_areas, np.float64)[gv],
      gt_iscrowd=None if gt_iscrowd is None else np.asarray(gt_iscrowd)[gv])


def coco_update_segm(state: CocoState, *, gt_image_ids, gt_masks, gt_category_ids, dt_image_ids,
                     dt_masks, dt_scores, dt_category_ids, gt_areas=None, gt_iscrowd=None,
                     image_ids=None) -> CocoState:
  """:func:`coco_update` for instance masks (``COCOeval(iouType='segm')``).

  Masks: an array [N, H, W] (nonzero = foreground), a list of 2-D arrays
  (images may differ in size), or a list of COCO RLE dicts (``'size'`` and
  compressed or uncompressed ``'counts'``). Ground truth G, detections D.
  IoU as pycocotools' ``maskUtils.iou``; a detection's area (for the area
  ranges) is its pixel count, as ``loadRes`` sets it. ``gt_areas`` default:
  the masks' pixel counts (COCO files carry their own ``area``, which is
  what pycocotools uses). A detection and a ground truth of one image must
  have the same mask size (ValueError otherwise; pycocotools gives IoU -1).
  """
  gt_img = _as(gt_image_ids, np.int64, (), "gt_image_ids")
  dt_img = _as(dt_image_ids, np.int64, (), "dt_image_ids")
  gm = _rle.from_any(gt_masks, "gt_masks")
  dm = _rle.from_any(dt_masks, "dt_masks")
  for name, m, n in (("gt_masks", gm, gt_img.size), ("dt_masks", dm, dt_img.size)):
    if len(m) != n:
      raise ValueError(f"{name} has {len(m)} masks; expected {n} to match the image ids")
  return _update(state, image_ids, gt_img, gt_category_ids, gt_iscrowd,
                 gm.area if gt_areas is None else gt_areas, dt_img, dt_scores, dt_category_ids,
                 dm.area, lambda d, g, crowd: _rle.pair_iou(dm, gm, d, g, crowd))


def coco_update_segm_batch(state: CocoState, *, image_ids, gt_masks, gt_classes, gt_valid,
                           dt_masks, dt_scores, dt_classes, dt_valid, gt_iscrowd=None,
                           gt_areas=None, class_to_category=None) -> CocoState:
  """:func:`coco_update_segm` from padded per-image arrays (e.g. model outputs).

  Shapes as :func:`coco_update_batch`, with masks instead of boxes:
  ``gt_masks`` [B, G, H, W] and ``dt_masks`` [B, N, H, W], nonzero =
  foreground (threshold probabilities first, e.g. ``> 0.5``). All images of
  the batch share H×W; pixels outside an image's content should be 0.
  """
  f = _flatten_batch(image_ids, gt_valid, dt_valid, gt_classes, dt_classes, gt_iscrowd,
                     gt_areas, class_to_category)
  gv, dv = f.pop("gt_valid"), f.pop("dt_valid")
  gm, dm = np.asarray(gt_masks), np.asarray(dt_masks)
  if gm.shape[:2] != gv.shape or dm.shape[:2] != dv.shape or gm.ndim != 4 or dm.ndim != 4:
    raise ValueError(f"gt_masks/dt_masks have shapes {gm.shape}/{dm.shape}; expected "
                     f"[B, G, H, W] and [B, N, H, W] with [B, G] = {gv.shape}, "
                     f"[B, N] = {dv.shape}")
  return coco_update_segm(state, gt_masks=gm[gv], dt_masks=dm[dv],
                          dt_scores=np.asarray(dt_scores, np.float64)[dv], **f)


def _group_starts(sorted_keys, keys):
  """For sorted ``sorted_keys``: (start, count) of each of ``keys``."""
  start = np.searchsorted(sorted_keys, keys, side="left")
  end = np.searchsorted(sorted_keys, keys, side="right")
  return start, end - start


def _pairwise_iou(dbox, gbox, crowd):
  """IoU of detection/gt pairs exactly as pycocotools' ``bbIou`` (xywh, float64).

  Same operation order so results are bit-identical: w = min(x+w) - max(x),
  intersection 0 unless w > 0 and h > 0, union = da + ga - i or da for crowd.
  """
  w = (np.minimum(dbox[:, 2] + dbox[:, 0], gbox[:, 2] + gbox[:, 0]) -
       np.maximum(dbox[:, 0], gbox[:, 0]))
  h = (np.minimum(dbox[:, 3] + dbox[:, 1], gbox[:, 3] + gbox[:, 1]) -
       np.maximum(dbox[:, 1], gbox[:, 1]))
  da = dbox[:, 2] * dbox[:, 3]
  ga = gbox[:, 2] * gbox[:, 3]
  inter = w * h
  union = np.where(crowd, da, da + ga - inter)
  ok = (w > 0) & (h > 0)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def _match(p: CocoParams, imgs, gt_img, gt_cat, gt_area, crowd, dt_img, dt_score, dt_cat,
           dt_area, iou_fn) -> _Chunk:
  """Greedy COCO matching for every (image, category) of one update at once.

  ``dt_area`` [D]: the detection areas for the area ranges (box w·h or mask
  pixels); ``iou_fn(d, g, crowd)``: IoU of detection/ground-truth pairs,
  by index into this update's inputs (``gt_src``/``dt_src`` keep track).
  """
  k = p.category_ids.size
  t_n, a_n = p.iou_thresholds.size, p.area_ranges.shape[0]
  max_det = p.max_dets[-1]
  # Dense category index; drop annotations of categories not evaluated.
  gcat = np.searchsorted(p.category_ids, gt_cat)
  gkeep = (gcat < k) & (p.category_ids[np.minimum(gcat, k - 1)] == gt_cat)
  dcat = np.searchsorted(p.category_ids, dt_cat)
  dkeep = (dcat < k) & (p.category_ids[np.minimum(dcat, k - 1)] == dt_cat)
  gt_src, dt_src = np.arange(gt_img.size), np.arange(dt_img.size)
  gt_img, gt_src, gcat, gt_area, crowd = (x[gkeep] for x in (gt_img, gt_src, gcat, gt_area,
                                                             crowd))
  dt_img, dt_src, dt_area, dt_score, dcat = (x[dkeep] for x in (dt_img, dt_src, dt_area,
                                                                dt_score, dcat))

  # Group key (image, category); images dense within this update.
  ggroup = np.searchsorted(imgs, gt_img) * k + gcat
  dgroup = np.searchsorted(imgs, dt_img) * k + dcat

  # Ground truth in annotation order inside each group (stable sort).
  gorder = np.argsort(ggroup, kind="stable")
  ggroup, gt_src, gt_area, crowd = ggroup[gorder], gt_src[gorder], gt_area[gorder], crowd[gorder]
  gcat = gcat[gorder]

  # Detections by group, then score descending, ties in input order; keep the
  # first max_dets[-1] per group.
  dorder = np.lexsort((np.arange(dgroup.size), -dt_score, dgroup))
  dgroup, dt_src, dt_area, dt_score, dcat, dt_img = (x[dorder] for x in (
      dgroup, dt_src, dt_area, dt_score, dcat, dt_img))
  first = np.searchsorted(dgroup, dgroup, side="left")
  rank = np.arange(dgroup.size) - first
  keep = rank < max_det
  dgroup, dt_src, dt_area, dt_score, dcat, dt_img, rank = (x[keep] for x in (
      dgroup, dt_src, dt_area, dt_score, dcat, dt_img, rank))
  n_dt = dgroup.size

  lo, hi = p.area_ranges[:, 0], p.area_ranges[:, 1]
  gt_ignored = crowd[:, None] | (gt_area[:, None] < lo) | (gt_area[:, None] > hi)   # [G, A]
  dt_outside = (dt_area[:, None] < lo) | (dt_area[:, None] > hi)                     # [D, A]

  npig = np.zeros((k, a_n), np.int64)
  np.add.at(npig, gcat, (~gt_ignored).astype(np.int64))

  matched = np.zeros((n_dt, t_n, a_n), bool)
  dt_ign = np.zeros((n_dt, t_n, a_n), bool)
  gstart, gcount = _group_starts(ggroup, dgroup)
  if n_dt and ggroup.size:
    # Pairs (detection, gt of the same group), ordered by detection rank, then
    # group, then gt annotation order: each rank is one contiguous slice in
    # which every group has at most one detection, so one vectorised step per
    # rank reproduces the sequential greedy loop of all groups at once.
    by_rank = np.lexsort((dgroup, rank))
    counts = gcount[by_rank]
    pair_dt = np.repeat(by_rank, counts)
    offs = np.arange(pair_dt.size) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_gt = gstart[pair_dt] + offs
    pair_iou = iou_fn(dt_src[pair_dt], gt_src[pair_gt], crowd[pair_gt])
    pair_rank = rank[pair_dt]
    thr = np.minimum(p.iou_thresholds, 1 - 1e-10)
    gt_taken = np.zeros((ggroup.size, t_n, a_n), bool)
    bounds = np.searchsorted(pair_rank, np.arange(max_det + 1), side="left")
    for r in range(max_det):
      s, e = bounds[r], bounds[r + 1]
      if s == e:
        continue
      _match_rank(pair_dt[s:e], pair_gt[s:e], pair_iou[s:e], thr, crowd, gt_ignored, gt_taken,
                  matched, dt_ign)
  dt_ign |= ~matched & dt_outside[:, None, :]
  return _Chunk(imgs, dt_img, dcat, dt_score, rank, matched, dt_ign, npig)


def _match_rank(pdt, pgt, piou, thr, crowd, gt_ignored, gt_taken, matched, dt_ign):
  """One greedy step for every group's detection of a given rank (in place).

  Rows are (detection, gt) pairs grouped by detection. pycocotools' inner loop
  over gts sorted "non-ignored first" amounts to: among available gts with
  IoU >= t, prefer non-ignored ones, then the highest IoU, then the last in
  annotation order.
  """
  n = pdt.size
  seg = np.flatnonzero(np.r_[True, pdt[1:] != pdt[:-1]])
  seg_id = np.cumsum(np.r_[False, pdt[1:] != pdt[:-1]])
  avail = ~gt_taken[pgt] | crowd[pgt][:, None, None]                          # [n, T, A]
  elig = avail & (piou[:, None, None] >= thr[None, :, None])
  regular = ~gt_ignored[pgt][:, None, :]                                       # [n, 1, A]
  any_regular = np.logical_or.reduceat(elig & regular, seg, axis=0)           # [S, T, A]
  elig &= regular == any_regular[seg_id]
  iou_m = np.where(elig, piou[:, None, None], -1.0)
  best = np.maximum.reduceat(iou_m, seg, axis=0)
  pick = elig & (iou_m == best[seg_id])
  row = np.where(pick, np.arange(n)[:, None, None], -1)
  last = np.maximum.reduceat(row, seg, axis=0)                                 # [S, T, A]
  s_idx, t_idx, a_idx = np.nonzero(last >= 0)
  rows = last[s_idx, t_idx, a_idx]
  g = pgt[rows]
  d = pdt[seg[s_idx]]
  gt_taken[g, t_idx, a_idx] = True
  matched[d, t_idx, a_idx] = True
  dt_ign[d, t_idx, a_idx] = gt_ignored[g, a_idx]


def _concat(state: CocoState):
  p = state.params
  t_n, a_n = p.iou_thresholds.size, p.area_ranges.shape[0]
  chunks = state.chunks
  if chunks:
    all_imgs = np.concatenate([c.image_ids for c in chunks])
    uniq, cnt = np.unique(all_imgs, return_counts=True)
    if np.any(cnt > 1):
      raise ValueError(f"images {uniq[cnt > 1][:5].tolist()} were given in more than one "
                       "update; each image's ground truth and detections must come together")
  cat = lambda f, empty: (np.concatenate([getattr(c, f) for c in chunks]) if chunks else empty)
  return dict(
      img=cat("dt_image", np.zeros(0, np.int64)), cat=cat("dt_cat", np.zeros(0, np.int64)),
      score=cat("dt_score", np.zeros(0)), rank=cat("dt_rank", np.zeros(0, np.int64)),
      matched=cat("dt_matched", np.zeros((0, t_n, a_n), bool)),
      ignored=cat("dt_ignored", np.zeros((0, t_n, a_n), bool)),
      npig=sum((c.npig for c in chunks), np.zeros((p.category_ids.size, a_n), np.int64)))


def _accumulate(p: CocoParams, data):
  """precision [T, R, K, A, M] and recall [T, K, A, M] as COCOeval.accumulate."""
  k_n = p.category_ids.size
  t_n, r_n, a_n, m_n = (p.iou_thresholds.size, p.rec_thresholds.size, p.area_ranges.shape[0],
                        len(p.max_dets))
  precision = -np.ones((t_n, r_n, k_n, a_n, m_n))
  recall = -np.ones((t_n, k_n, a_n, m_n))
  # Global order: category, score descending, then image id and rank (the
  # order pycocotools' stable sort leaves ties in after concatenating images).
  order = np.lexsort((data["rank"], data["img"], -data["score"], data["cat"]))
  cat = data["cat"][order]
  rank = data["rank"][order]
  matched = data["matched"][order]
  ignored = data["ignored"][order]
  npig = data["npig"]
  n_buckets = r_n + 2
  for m_i, max_det in enumerate(p.max_dets):
    sel = np.flatnonzero(rank < max_det)
    c_sel = cat[sel]
    n = sel.size
    nd = np.bincount(c_sel, minlength=k_n)                      # detections per category
    seg_end = np.cumsum(nd)
    seg_start = seg_end - nd
    for a_i in range(a_n):
      mt = matched[sel, :, a_i].T                               # [T, n]
      ig = ignored[sel, :, a_i].T
      tp = (mt & ~ig).astype(np.int64)
      fp = (~mt & ~ig).astype(np.int64)
      # Cumulative sums restarted at every category: global cumsum minus the
      # exclusive prefix at the segment start (integers, exact).
      tp_cum = np.cumsum(tp, axis=1)
      fp_cum = np.cumsum(fp, axis=1)
      tp_sum = (tp_cum - (tp_cum - tp)[:, seg_start[c_sel]]).astype(float)
      fp_sum = (fp_cum - (fp_cum - fp)[:, seg_start[c_sel]]).astype(float)
      n_pos = npig[:, a_i].astype(float)
      has_gt = n_pos > 0
      rc = tp_sum / np.where(has_gt, n_pos, 1.0)[c_sel][None, :]
      pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
      # pycocotools samples the monotone envelope (suffix max of pr) at the
      # first detection whose recall reaches each threshold r_j. With
      # c_i = #{j : r_j <= rc_i} (non-decreasing within a category) that is
      # q_j = max{pr_i : c_i > j}: take the max of pr per bucket (cat, c) and
      # a reverse cumulative max over the few buckets. Comparisons only, so
      # the result is bit-identical.
      c = np.searchsorted(p.rec_thresholds, rc, side="right")   # [T, n] in 0..R
      key = (np.arange(t_n)[:, None] * k_n + c_sel[None, :]) * n_buckets + c
      buckets = np.zeros(t_n * k_n * n_buckets)
      if n:
        flat_key = key.ravel()
        starts = np.flatnonzero(np.r_[True, flat_key[1:] != flat_key[:-1]])
        buckets[flat_key[starts]] = np.maximum.reduceat(pr.ravel(), starts)
      buckets = buckets.reshape(t_n, k_n, n_buckets)
      env = np.maximum.accumulate(buckets[..., ::-1], axis=2)[..., ::-1]
      q = env[:, :, 1:r_n + 1]                                   # buckets > j
      last = np.maximum(seg_end - 1, 0)
      rec = np.where(nd[None, :] > 0, rc[:, last] if n else 0.0, 0.0)
      precision[:, :, :, a_i, m_i] = np.where(has_gt[None, :, None], q, -1.0).transpose(0, 2, 1)
      recall[:, :, a_i, m_i] = np.where(has_gt[None, :], rec, -1.0)
  return precision, recall


def _summarize(p: CocoParams, precision, recall, ap: bool, iou_thr=None, area="all",
               max_det=100):
  """One ``COCOeval.summarize`` entry: mean of the entries > -1, else -1."""
  a_idx = [i for i, lbl in enumerate(p.area_labels) if lbl == area]
  m_idx = [i for i, m in enumerate(p.max_dets) if m == max_det]
  s = precision if ap else recall
  if iou_thr is not None:
    s = s[np.where(iou_thr == p.iou_thresholds)[0]]
  s = s[..., a_idx, :][..., m_idx]
  s = s[s > -1]
  return float(np.mean(s)) if s.size else -1.0


def coco_compute(state: CocoState) -> dict:
  """Accumulates and summarises; returns a dict of host values.

  Keys: ``'precision'`` [T, R, K, A, M] and ``'recall'`` [T, K, A, M] (equal to
  ``COCOeval.eval``'s), ``'stats'`` [12] (``COCOeval.stats``; None unless
  there are at least 3 max_dets values), the 12 named entries of
  :data:`STAT_NAMES` ('AP', 'AP50', ..., 'ARl'), ``'per_class_ap'`` [K]
  (AP@[.50:.95], area 'all' if present else the first range, the largest
  max_dets; NaN for categories without ground truth) and ``'category_ids'``.
  """
  p = state.params
  precision, recall = _accumulate(p, _concat(state))
  out = {"precision": precision, "recall": recall, "category_ids": p.category_ids}
  a0 = p.area_labels.index("all") if "all" in p.area_labels else 0
  pc = precision[:, :, :, a0, -1]
  with np.errstate(invalid="ignore"):
    valid = pc > -1
    out["per_class_ap"] = np.where(valid.any(axis=(0, 1)),
                                   np.where(valid, pc, 0).sum(axis=(0, 1)) /
                                   np.maximum(valid.sum(axis=(0, 1)), 1), np.nan)
  if len(p.max_dets) >= 3:
    m = p.max_dets
    specs = [(True, None, "all", 100), (True, .5, "all", m[2]), (True, .75, "all", m[2]),
             (True, None, "small", m[2]), (True, None, "medium", m[2]),
             (True, None, "large", m[2]), (False, None, "all", m[0]),
             (False, None, "all", m[1]), (False, None, "all", m[2]),
             (False, None, "small", m[2]), (False, None, "medium", m[2]),
             (False, None, "large", m[2])]
    stats = np.array([_summarize(p, precision, recall, *s) for s in specs])
    out["stats"] = stats
    out.update({name: float(v) for name, v in zip(STAT_NAMES, stats)})
  else:
    out["stats"] = None
  return out


def evaluate_coco(gt_dataset: dict, detections: Sequence[dict], *, iou_type: str = "bbox",
                  **params) -> dict:
  """One-shot evaluation from COCO-format Python objects.

  Args:
    gt_dataset: a COCO ground-truth dict with 'images', 'annotations'
      ('image_id', 'category_id', 'bbox' xywh or, for 'segm', 'segmentation'
      as an RLE dict; optional 'area', 'iscrowd') and 'categories'.
    detections: COCO results: dicts with 'image_id', 'category_id', 'score'
      and 'bbox' (xywh) or 'segmentation' (RLE). Every image_id must be in
      gt_dataset['images'].
    iou_type: 'bbox' or 'segm' (as ``COCOeval``'s ``iouType``). Polygon
      segmentations are not rasterized here (ValueError): convert them with
      ``pycocotools.mask.frPyObjects`` first.
    **params: forwarded to :func:`coco_init`.

  Returns: :func:`coco_compute`'s dict.
  """
  if iou_type not in ("bbox", "segm"):
    raise ValueError(f"iou_type={iou_type!r}; expected 'bbox' or 'segm'")
  anns = gt_dataset.get("annotations", [])
  image_ids = np.array([im["id"] for im in gt_dataset["images"]], np.int64)
  cats = [c["id"] for c in gt_dataset["categories"]]
  common = dict(
      image_ids=image_ids, gt_image_ids=np.array([a["image_id"] for a in anns], np.int64),
      gt_category_ids=np.array([a["category_id"] for a in anns], np.int64),
      gt_iscrowd=np.array([a.get("iscrowd", 0) for a in anns], np.int64),
      dt_image_ids=np.array([d["image_id"] for d in detections], np.int64),
      dt_scores=np.array([d["score"] for d in detections], np.float64),
      dt_category_ids=np.array([d["category_id"] for d in detections], np.int64))
  state = coco_init(cats, **params)
  if iou_type == "segm":
    # Updates of a few hundred images each: decoded runs of every mask of a
    # COCO-sized set at once would be GBs of temporaries (and slower).
    gt_area = np.array([a.get("area", np.nan) for a in anns], np.float64)
    g_order = np.argsort(common["gt_image_ids"], kind="stable")
    d_order = np.argsort(common["dt_image_ids"], kind="stable")
    g_sorted = common["gt_image_ids"][g_order]
    d_sorted = common["dt_image_ids"][d_order]
    imgs = np.unique(image_ids)
    starts = list(range(0, imgs.size, _SEGM_IMAGES_PER_UPDATE)) or [0]
    for k, lo in enumerate(starts):
      batch = imgs[lo:lo + _SEGM_IMAGES_PER_UPDATE]
      # Id ranges tile the integers, so an annotation of an unknown image
      # lands in some update, which rejects it.
      g0 = 0 if k == 0 else np.searchsorted(g_sorted, batch[0])
      d0 = 0 if k == 0 else np.searchsorted(d_sorted, batch[0])
      last = k == len(starts) - 1
      g1 = g_sorted.size if last else np.searchsorted(g_sorted, imgs[starts[k + 1]])
      d1 = d_sorted.size if last else np.searchsorted(d_sorted, imgs[starts[k + 1]])
      gi, di = g_order[g0:g1], d_order[d0:d1]
      gm = _rle.from_rles([anns[i]["segmentation"] for i in gi])
      state = coco_update_segm(
          state, image_ids=batch, gt_image_ids=common["gt_image_ids"][gi], gt_masks=gm,
          gt_category_ids=common["gt_category_ids"][gi], gt_iscrowd=common["gt_iscrowd"][gi],
          gt_areas=np.where(np.isnan(gt_area[gi]), gm.area, gt_area[gi]),
          dt_image_ids=common["dt_image_ids"][di],
          dt_masks=_rle.from_rles([detections[i]["segmentation"] for i in di]),
          dt_scores=common["dt_scores"][di], dt_category_ids=common["dt_category_ids"][di])
    return coco_compute(state)
  gt_box = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
  gt_area = np.array([a["area"] if "area" in a else a["bbox"][2] * a["bbox"][3] for a in anns],
                     np.float64)
  dt_box = np.array([d["bbox"] for d in detections], np.float64).reshape(-1, 4)
  state = coco_update(state, gt_boxes=gt_box, gt_areas=gt_area, dt_boxes=dt_box, **common)
  return coco_compute(state)
