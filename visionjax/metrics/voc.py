"""PASCAL VOC detection AP (VOC devkit ``VOCevaldet`` / ``VOCap`` definition).

Per class, detections of all images are visited in order of decreasing
confidence (stable: ties keep input order, as MATLAB's ``sort``). Each is
compared with every ground-truth box of its image and class::

  iw = min(x2) - max(x1) + o,  ih = min(y2) - max(y1) + o   (o = pixel_offset)
  IoU = iw·ih / ((w_d + o)(h_d + o) + (w_g + o)(h_g + o) - iw·ih), only if iw, ih > 0

and assigned to the box of maximum IoU (first on ties). If that IoU >=
``iou_threshold`` (0.5): a *difficult* box makes the detection ignored (no TP,
no FP); otherwise it is a TP if the box was not detected before, else a FP
(duplicate). IoU below the threshold: FP. Then ``rec = cumsum(tp) / npos``
(npos = non-difficult boxes), ``prec = cumsum(tp) / (cumsum(tp) + cumsum(fp))``:

* all-point AP (VOC2010+): ``mrec = [0, rec, 1]``, ``mpre = [0, prec, 0]``,
  ``mpre`` made non-increasing from the right, ``AP = Σ (mrec_i - mrec_{i-1})·mpre_i``
  over the points where recall changes;
* 11-point AP (VOC2007): ``AP = 1/11 Σ_{t ∈ {0, .1, …, 1}} max(prec[rec >= t])``
  (0 when empty); the thresholds are ``np.arange(0, 1.1, 0.1)`` like the widely
  used Python port (3·0.1 = 0.30000000000000004: a recall of exactly 0.3 does not
  reach that threshold there either).

``pixel_offset=1`` (default) is the devkit's convention for integer pixel
coordinates; use 0 for continuous coordinates. Ignored (difficult-matched)
detections are dropped from the ranked list, which leaves both APs unchanged.
A class with no non-difficult ground truth has AP NaN and is left out of mAP.

Streaming: matching depends only on detections of the same image, so
:func:`voc_update` matches each batch at once and keeps (score, tp) per
detection; :func:`voc_compute` ranks them globally. Each image must come in
a single update.
"""
from __future__ import annotations

import dataclasses

import numpy as np

ELEVEN_POINTS = np.arange(0.0, 1.1, 0.1)


def voc_ap(recall, precision, *, use_07_metric: bool = False) -> float:
  """AP from a ranked list's recall [N] and precision [N] (see module doc)."""
  rec = np.asarray(recall, np.float64)
  prec = np.asarray(precision, np.float64)
  if rec.shape != prec.shape or rec.ndim != 1:
    raise ValueError(f"recall/precision have shapes {rec.shape}/{prec.shape}; expected equal [N]")
  if use_07_metric:
    ap = 0.0
    for t in ELEVEN_POINTS:
      reached = prec[rec >= t]
      ap += (reached.max() if reached.size else 0.0) / 11.0
    return float(ap)
  mrec = np.concatenate([[0.0], rec, [1.0]])
  mpre = np.concatenate([[0.0], prec, [0.0]])
  mpre = np.maximum.accumulate(mpre[::-1])[::-1]
  i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
  return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


@dataclasses.dataclass(frozen=True)
class _Chunk:
  image_ids: np.ndarray
  label: np.ndarray      # [D] class of each kept (non-ignored) detection
  score: np.ndarray      # [D]
  tp: np.ndarray         # [D] bool (False = FP)
  npos: np.ndarray       # [C] non-difficult ground truth per class


@dataclasses.dataclass(frozen=True)
class VocState:
  """Streaming VOC state (host-side, immutable)."""
  num_classes: int
  iou_threshold: float = 0.5
  pixel_offset: float = 1.0
  chunks: tuple = ()


def voc_init(num_classes: int, *, iou_threshold: float = 0.5,
             pixel_offset: float = 1.0) -> VocState:
  """Empty state for classes 0 .. num_classes - 1."""
  if num_classes < 1:
    raise ValueError(f"num_classes={num_classes}; expected >= 1")
  return VocState(int(num_classes), float(iou_threshold), float(pixel_offset))


def _check(x, dtype, tail, name, n=None):
  x = np.asarray(x, dtype)
  if x.ndim != 1 + len(tail) or x.shape[1:] != tail or (n is not None and x.shape[0] != n):
    want = ", ".join(["N" if n is None else str(n)] + [str(t) for t in tail])
    raise ValueError(f"{name} has shape {x.shape}; expected [{want}]")
  return x


def voc_update(state: VocState, *, gt_image_ids, gt_boxes, gt_labels, dt_image_ids, dt_boxes,
               dt_scores, dt_labels, gt_difficult=None, image_ids=None) -> VocState:
  """Matches one batch of images (xyxy boxes, integer labels) and records it.

  Shapes: gt_* [G] / [G, 4], dt_* [D] / [D, 4]; ``gt_difficult`` bool [G]
  (default False). ``image_ids``: the images of this batch (default: all ids
  seen in gt/dt); every image must come in exactly one update.
  """
  c = state.num_classes
  gi = _check(gt_image_ids, np.int64, (), "gt_image_ids")
  g = gi.shape[0]
  gb = _check(gt_boxes, np.float64, (4,), "gt_boxes", g)
  gl = _check(gt_labels, np.int64, (), "gt_labels", g)
  gd = np.zeros(g, bool) if gt_difficult is None else _check(gt_difficult, bool, (),
                                                             "gt_difficult", g)
  di = _check(dt_image_ids, np.int64, (), "dt_image_ids")
  d = di.shape[0]
  db = _check(dt_boxes, np.float64, (4,), "dt_boxes", d)
  ds = _check(dt_scores, np.float64, (), "dt_scores", d)
  dl = _check(dt_labels, np.int64, (), "dt_labels", d)
  for name, lab in (("gt_labels", gl), ("dt_labels", dl)):
    if lab.size and (lab.min() < 0 or lab.max() >= c):
      bad = np.unique(lab[(lab < 0) | (lab >= c)])[:5].tolist()
      raise ValueError(f"{name} has values outside [0, {c}): {bad}")
  imgs = np.union1d(gi, di) if image_ids is None else np.unique(np.asarray(image_ids, np.int64))
  if image_ids is not None and (np.setdiff1d(gi, imgs).size or np.setdiff1d(di, imgs).size):
    raise ValueError("gt_image_ids/dt_image_ids contain images not listed in image_ids")

  npos = np.bincount(gl[~gd], minlength=c)
  # Groups (image, class); ground truth in input order within a group.
  ggroup = np.searchsorted(imgs, gi) * c + gl
  gorder = np.argsort(ggroup, kind="stable")
  ggroup, gb, gd = ggroup[gorder], gb[gorder], gd[gorder]
  dgroup = np.searchsorted(imgs, di) * c + dl
  start = np.searchsorted(ggroup, dgroup, side="left")
  count = np.searchsorted(ggroup, dgroup, side="right") - start

  # All (detection, gt) pairs of the same group, detection-major.
  pair_dt = np.repeat(np.arange(d), count)
  pair_gt = start[pair_dt] + np.arange(pair_dt.size) - np.repeat(np.cumsum(count) - count, count)
  o = state.pixel_offset
  bb, bg = db[pair_dt], gb[pair_gt]
  iw = np.minimum(bb[:, 2], bg[:, 2]) - np.maximum(bb[:, 0], bg[:, 0]) + o
  ih = np.minimum(bb[:, 3], bg[:, 3]) - np.maximum(bb[:, 1], bg[:, 1]) + o
  ua = ((bb[:, 2] - bb[:, 0] + o) * (bb[:, 3] - bb[:, 1] + o) +
        (bg[:, 2] - bg[:, 0] + o) * (bg[:, 3] - bg[:, 1] + o) - iw * ih)
  ok = (iw > 0) & (ih > 0)
  with np.errstate(divide="ignore", invalid="ignore"):
    ov = np.where(ok, iw * ih / np.where(ok, ua, 1.0), -np.inf)

  ovmax = np.full(d, -np.inf)
  jmax = np.full(d, -1)
  if pair_dt.size:
    seg = np.flatnonzero(count > 0)
    seg_start = np.cumsum(count) - count
    best = np.maximum.reduceat(ov, seg_start[seg])
    # First gt reaching the maximum (the devkit updates only on a strict '>').
    rows = np.where(ov == np.repeat(best, count[seg]), np.arange(ov.size), ov.size)
    first = np.minimum.reduceat(rows, seg_start[seg])
    ovmax[seg] = best
    jmax[seg] = np.where(np.isfinite(best), pair_gt[np.minimum(first, ov.size - 1)], -1)
  hit = (ovmax >= state.iou_threshold) & (jmax >= 0)
  difficult = hit & gd[np.maximum(jmax, 0)]
  # In confidence order (stable), the first detection on each gt is the TP.
  order = np.lexsort((np.arange(d), -ds))
  cand = order[hit[order] & ~difficult[order]]
  _, first_idx = np.unique(jmax[cand], return_index=True)
  tp = np.zeros(d, bool)
  tp[cand[first_idx]] = True
  keep = ~difficult
  chunk = _Chunk(imgs, dl[keep], ds[keep], tp[keep], npos)
  return dataclasses.replace(state, chunks=state.chunks + (chunk,))


def voc_update_batch(state: VocState, *, image_ids, gt_boxes, gt_labels, gt_valid, dt_boxes,
                     dt_scores, dt_labels, dt_valid, gt_difficult=None) -> VocState:
  """:func:`voc_update` from padded arrays [B, G, ...] / [B, N, ...] with
  ``gt_valid``/``dt_valid`` masks (e.g. NMS output); pulls JAX arrays to host."""
  image_ids = np.asarray(image_ids, np.int64)
  gv = np.asarray(gt_valid, bool)
  dv = np.asarray(dt_valid, bool)
  if gv.shape[:1] != image_ids.shape or dv.shape[:1] != image_ids.shape:
    raise ValueError(f"gt_valid/dt_valid have shapes {gv.shape}/{dv.shape}; expected leading "
                     f"dimension {image_ids.shape[0]} (len(image_ids))")
  return voc_update(
      state, image_ids=image_ids,
      gt_image_ids=np.broadcast_to(image_ids[:, None], gv.shape)[gv],
      gt_boxes=np.asarray(gt_boxes, np.float64)[gv], gt_labels=np.asarray(gt_labels)[gv],
      gt_difficult=None if gt_difficult is None else np.asarray(gt_difficult, bool)[gv],
      dt_image_ids=np.broadcast_to(image_ids[:, None], dv.shape)[dv],
      dt_boxes=np.asarray(dt_boxes, np.float64)[dv], dt_scores=np.asarray(dt_scores)[dv],
      dt_labels=np.asarray(dt_labels)[dv])


def voc_compute(state: VocState, *, use_07_metric: bool = False) -> dict:
  """Returns ``{'ap': float64 [C] (NaN: no non-difficult gt), 'map': float}``."""
  chunks = state.chunks
  if chunks:
    uniq, cnt = np.unique(np.concatenate([ch.image_ids for ch in chunks]), return_counts=True)
    if np.any(cnt > 1):
      raise ValueError(f"images {uniq[cnt > 1][:5].tolist()} were given in more than one update")
  cat = lambda f, e: np.concatenate([getattr(ch, f) for ch in chunks]) if chunks else e
  label = cat("label", np.zeros(0, np.int64))
  score = cat("score", np.zeros(0))
  tp = cat("tp", np.zeros(0, bool))
  npos = sum((ch.npos for ch in chunks), np.zeros(state.num_classes, np.int64))
  # Stable ranking by confidence: ties keep the order detections were given.
  order = np.lexsort((np.arange(score.size), -score))
  label, tp = label[order], tp[order]
  ap = np.full(state.num_classes, np.nan)
  for k in range(state.num_classes):
    if npos[k] == 0:
      continue
    t = tp[label == k]
    tps = np.cumsum(t)
    fps = np.cumsum(~t)
    ap[k] = voc_ap(tps / npos[k], tps / np.maximum(tps + fps, 1), use_07_metric=use_07_metric)
  valid = ~np.isnan(ap)
  return {"ap": ap, "map": float(ap[valid].mean()) if valid.any() else float("nan")}
