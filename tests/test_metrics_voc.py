"""visionjax.metrics.voc against a loop-by-loop transcription of the VOC devkit
(VOCevaldet.m + VOCap.m / the VOC2007 11-point rule) and hand-computed cases."""
import numpy as np
import pytest

from visionjax.metrics import voc


def devkit_reference(gts, dets, num_classes, use_07, minoverlap=0.5):
  """Plain transcription of VOCevaldet: gts = {img: [(box, label, difficult)]},
  dets = [(img, box, label, score)] in file order."""
  aps = []
  for cls in range(num_classes):
    gt = {img: [[np.array(b, float), bool(dif), False] for b, l, dif in objs if l == cls]
          for img, objs in gts.items()}
    npos = sum(not o[1] for objs in gt.values() for o in objs)
    cd = [d for d in dets if d[2] == cls]
    conf = np.array([d[3] for d in cd])
    si = np.argsort(-conf, kind="stable")            # MATLAB sort is stable
    tp, fp = np.zeros(len(cd)), np.zeros(len(cd))
    for rank, di in enumerate(si):
      img, bb = cd[di][0], np.array(cd[di][1], float)
      ovmax, jmax = -np.inf, -1
      for j, (bbgt, _, _) in enumerate(gt.get(img, [])):
        bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
        iw, ih = bi[2] - bi[0] + 1, bi[3] - bi[1] + 1
        if iw > 0 and ih > 0:
          ua = ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) +
                (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1) - iw * ih)
          ov = iw * ih / ua
          if ov > ovmax:
            ovmax, jmax = ov, j
      if ovmax >= minoverlap:
        obj = gt[img][jmax]
        if not obj[1]:
          if not obj[2]:
            tp[rank] = 1
            obj[2] = True
          else:
            fp[rank] = 1
      else:
        fp[rank] = 1
    if npos == 0:
      aps.append(np.nan)
      continue
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / npos
    with np.errstate(invalid="ignore"):
      prec = tp / (fp + tp)                          # NaN where nothing counted yet
    if use_07:
      ap = 0.0
      for t in np.arange(0, 1.1, 0.1):
        p = prec[rec >= t]
        p = p[~np.isnan(p)]                          # MATLAB max ignores NaN
        ap += (p.max() if p.size else 0) / 11
    else:
      mrec = np.concatenate([[0], rec, [1]])
      mpre = np.concatenate([[0], prec, [0]])
      for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = np.nanmax([mpre[i], mpre[i + 1]])
      idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
      ap = np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx])
    aps.append(ap)
  return np.array(aps)


def random_voc(seed, n_images=30, num_classes=5):
  rng = np.random.default_rng(seed)
  gts, dets = {}, []
  for img in range(n_images):
    objs = []
    for _ in range(rng.integers(0, 6)):
      x, y = rng.integers(0, 300, 2)
      w, h = rng.integers(5, 150, 2)
      objs.append(([x, y, x + w, y + h], int(rng.integers(0, num_classes - 1)),
                   bool(rng.random() < 0.15)))
    gts[img] = objs
    for box, lab, _ in objs:
      for _ in range(rng.integers(0, 3)):
        jit = rng.integers(-12, 13, 4)
        dets.append((img, list(np.array(box) + jit), lab if rng.random() < 0.9 else
                     int(rng.integers(0, num_classes)), float(rng.integers(0, 10)) / 10))
    for _ in range(rng.integers(0, 4)):
      x, y = rng.integers(0, 300, 2)
      dets.append((img, [x, y, x + rng.integers(5, 100), y + rng.integers(5, 100)],
                   int(rng.integers(0, num_classes)), float(rng.integers(0, 10)) / 10))
  return gts, dets


def run_ours(gts, dets, num_classes, use_07, batches=1):
  imgs = sorted(gts)
  state = voc.voc_init(num_classes)
  for part in np.array_split(np.array(imgs), batches):
    ps = set(part.tolist())
    g = [(img, o) for img in part for o in gts[img]]
    dd = [d for d in dets if d[0] in ps]
    state = voc.voc_update(
        state, image_ids=part, gt_image_ids=[i for i, _ in g],
        gt_boxes=np.array([o[0] for _, o in g], float).reshape(-1, 4),
        gt_labels=[o[1] for _, o in g], gt_difficult=[o[2] for _, o in g],
        dt_image_ids=[d[0] for d in dd],
        dt_boxes=np.array([d[1] for d in dd], float).reshape(-1, 4),
        dt_scores=[d[3] for d in dd], dt_labels=[d[2] for d in dd])
  return voc.voc_compute(state, use_07_metric=use_07)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("use_07", [False, True])
def test_matches_devkit_transcription(seed, use_07):
  gts, dets = random_voc(seed)
  ref = devkit_reference(gts, dets, 5, use_07)
  out = run_ours(gts, dets, 5, use_07)
  np.testing.assert_allclose(out["ap"], ref, atol=1e-12)
  assert np.isnan(out["ap"][-1])                    # class 4 never has ground truth
  assert out["map"] == pytest.approx(np.nanmean(ref), abs=1e-12)
  assert any(o[2] for objs in gts.values() for o in objs)   # difficult objects present


def test_streaming_batches_equal_one_shot():
  gts, dets = random_voc(4)
  # Batching changes the order detections arrive in: score ties are then
  # ranked differently, so compare on tie-free scores.
  rng = np.random.default_rng(0)
  dets = [(i, b, l, float(rng.random())) for i, b, l, _ in dets]
  a = run_ours(gts, dets, 5, False, batches=1)
  b = run_ours(gts, dets, 5, False, batches=4)
  np.testing.assert_allclose(a["ap"], b["ap"], atol=1e-12)


def test_voc_ap_hand_computed():
  # Ranked list TP, FP, TP with npos = 2: rec = [.5, .5, 1], prec = [1, .5, 2/3].
  rec, prec = np.array([.5, .5, 1.]), np.array([1., .5, 2 / 3])
  assert voc.voc_ap(rec, prec) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
  # 11-point: t = 0 .. .5 -> 1 (6 points), t = .6 .. 1 -> 2/3 (5 points).
  assert voc.voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_difficult_and_duplicate_hand_case():
  # One image: a regular and a difficult object of class 0.
  gts = {0: [([0, 0, 9, 9], 0, False), ([50, 50, 59, 59], 0, True)]}
  dets = [(0, [50, 50, 59, 59], 0, 0.95),   # on the difficult box: ignored
          (0, [0, 0, 9, 9], 0, 0.9),        # TP
          (0, [0, 0, 9, 9], 0, 0.8)]        # duplicate: FP
  out = run_ours(gts, dets, 1, False)
  assert out["ap"][0] == pytest.approx(1.0)  # rec reaches 1 at precision 1
  ref = devkit_reference(gts, dets, 1, False)
  assert ref[0] == pytest.approx(1.0)


def test_pixel_offset_changes_iou():
  # Boxes [0,0,9,9] and [5,0,14,9]: with +1 (10x10 pixels) IoU = 50/150 = 1/3;
  # detection at IoU exactly 0.5 under the devkit convention: [0,0,9,9] vs [0,0,9,19]
  # -> 100/200 = 0.5 (>= 0.5, so TP).
  state = voc.voc_init(1)
  state = voc.voc_update(state, gt_image_ids=[0], gt_boxes=[[0, 0, 9, 9]], gt_labels=[0],
                         dt_image_ids=[0], dt_boxes=[[0, 0, 9, 19]], dt_scores=[1.0],
                         dt_labels=[0])
  assert voc.voc_compute(state)["ap"][0] == pytest.approx(1.0)
  state0 = voc.voc_init(1, pixel_offset=0.0)   # continuous: 81/171 < 0.5 -> FP
  state0 = voc.voc_update(state0, gt_image_ids=[0], gt_boxes=[[0, 0, 9, 9]], gt_labels=[0],
                          dt_image_ids=[0], dt_boxes=[[0, 0, 9, 19]], dt_scores=[1.0],
                          dt_labels=[0])
  assert voc.voc_compute(state0)["ap"][0] == 0.0


def test_padded_batch_and_errors():
  gts, dets = random_voc(6, n_images=4)
  ref = run_ours(gts, dets, 5, False)
  G, N = 8, 40
  gb, gl = np.zeros((4, G, 4)), np.zeros((4, G), int)
  gv, gd = np.zeros((4, G), bool), np.zeros((4, G), bool)
  db, ds = np.zeros((4, N, 4)), np.zeros((4, N))
  dl, dv = np.zeros((4, N), int), np.zeros((4, N), bool)
  for i in range(4):
    for j, (b, l, dif) in enumerate(gts[i]):
      gb[i, j], gl[i, j], gv[i, j], gd[i, j] = b, l, True, dif
    for j, d in enumerate([d for d in dets if d[0] == i]):
      db[i, j], ds[i, j], dl[i, j], dv[i, j] = d[1], d[3], d[2], True
  state = voc.voc_update_batch(voc.voc_init(5), image_ids=np.arange(4), gt_boxes=gb,
                               gt_labels=gl, gt_valid=gv, gt_difficult=gd, dt_boxes=db,
                               dt_scores=ds, dt_labels=dl, dt_valid=dv)
  np.testing.assert_allclose(voc.voc_compute(state)["ap"], ref["ap"], atol=1e-12)
  with pytest.raises(ValueError, match="outside"):
    voc.voc_update(voc.voc_init(2), gt_image_ids=[0], gt_boxes=[[0, 0, 1, 1]], gt_labels=[2],
                   dt_image_ids=[], dt_boxes=np.zeros((0, 4)), dt_scores=[], dt_labels=[])
