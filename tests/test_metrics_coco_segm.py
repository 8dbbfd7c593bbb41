"""COCO mask AP (visionjax.metrics.coco, segm) against pycocotools' COCOeval(iouType='segm').

Each dataset targets a case the protocol distinguishes for masks: crowd
regions (IoU = intersection / detection area, several detections absorbed),
empty images and images with detections but no ground truth, more detections
than maxDets in one (image, category), tiny and empty masks (1-pixel objects,
detections of area 0, areas on the 32² boundary), and heavily overlapping
masks with exact duplicates and score ties. Masks go in as compressed RLE
(bytes and str), uncompressed RLE (crowd, as COCO stores it) and bitmaps.
"""
import copy

import numpy as np
import pytest

from visionjax.metrics import _rle, coco

pycocotools = pytest.importorskip("pycocotools")
from coco_reference import assert_same, run_pycocotools  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402


def blob(rng, h, w, cx, cy, rx, ry, kind):
  """A rectangle or ellipse mask [h, w] uint8 (may be cut by the border)."""
  yy, xx = np.mgrid[:h, :w]
  if kind == 0:
    m = (np.abs(xx - cx) <= rx) & (np.abs(yy - cy) <= ry)
  else:
    m = ((xx - cx) / max(rx, 0.5)) ** 2 + ((yy - cy) / max(ry, 0.5)) ** 2 <= 1
  return m.astype(np.uint8)


def encode(m, rng, uncompressed=False):
  if uncompressed:  # column-major run lengths, starting with a 0-run
    flat = m.T.ravel()
    change = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    return {"size": list(m.shape), "counts": np.diff(np.r_[0, change]).tolist()}
  r = mask_utils.encode(np.asfortranarray(m))
  if rng.random() < 0.5:
    r["counts"] = r["counts"].decode("ascii")  # JSON files hold str
  return r


def jitter(rng, m, amount):
  """A detection near ground truth m: shifted by up to `amount` pixels, some pixels flipped."""
  dy, dx = rng.integers(-amount, amount + 1, 2)
  out = np.roll(np.roll(m, dy, 0), dx, 1)
  flip = rng.random(m.shape) < 0.02
  return np.where(flip, 1 - out, out).astype(np.uint8)


def make_dataset(seed, *, n_images=12, n_cats=3, crowd_frac=0.0, tiny_frac=0.0, dets_per_gt=2,
                 background=3, empty_frac=0.0, no_gt_frac=0.0, dup_frac=0.0, tie_scores=False,
                 empty_dets=0):
  rng = np.random.default_rng(seed)
  images = [{"id": int(i), "height": int(rng.integers(20, 60)), "width": int(rng.integers(20, 70))}
            for i in rng.permutation(np.arange(1, 4 * n_images, 4))[:n_images]]
  cat_ids = [int(c) for c in np.arange(n_cats) * 5 + 3]
  anns, dets, bitmaps = [], [], {}
  for im in images:
    h, w = im["height"], im["width"]
    u = rng.random()
    if u < empty_frac:
      continue                                     # nothing at all
    n_gt = 0 if u < empty_frac + no_gt_frac else int(rng.integers(1, 6))
    gts = []
    for _ in range(n_gt):
      tiny = rng.random() < tiny_frac
      r = rng.uniform(0, 1.2, 2) if tiny else rng.uniform(2, 15, 2)
      m = blob(rng, h, w, rng.uniform(-3, w + 3), rng.uniform(-3, h + 3), *r, rng.integers(2))
      crowd = int(rng.random() < crowd_frac)
      gts.append((m, int(rng.choice(cat_ids)), crowd))
      if rng.random() < dup_frac:
        gts.append((m.copy(), gts[-1][1], 0))      # exact duplicate: IoU ties
    for m, c, crowd in gts:
      area = float(m.sum()) if rng.random() < 0.7 else float(rng.choice([31, 32, 33, 96])) ** 2
      anns.append({"image_id": im["id"], "category_id": c, "iscrowd": crowd, "area": area,
                   "segmentation": encode(m, rng, uncompressed=bool(crowd)),
                   "bbox": [float(v) for v in mask_utils.toBbox(mask_utils.encode(
                       np.asfortranarray(m)))]})
      bitmaps[len(anns) - 1] = m
      for _ in range(int(rng.integers(0, dets_per_gt + 1))):
        cat = c if rng.random() < 0.85 else int(rng.choice(cat_ids))
        dets.append((im["id"], cat, jitter(rng, m, 1 if m.sum() < 20 else 2)))
    for _ in range(empty_dets):                    # detections with an empty mask (area 0)
      dets.append((im["id"], int(rng.choice(cat_ids)), np.zeros((h, w), np.uint8)))
    for _ in range(int(rng.integers(0, background + 1))):
      r = rng.uniform(0, 12, 2)
      dets.append((im["id"], int(rng.choice(cat_ids)),
                   blob(rng, h, w, rng.uniform(0, w), rng.uniform(0, h), *r, rng.integers(2))))
  for i, a in enumerate(anns):
    a["id"] = i + 1
  results = []
  for img, cat, m in dets:
    score = round(float(rng.random()), 1) if tie_scores else float(rng.random())
    results.append({"image_id": img, "category_id": cat, "score": score,
                    "segmentation": encode(m, rng)})
  gt = {"images": images, "annotations": anns,
        "categories": [{"id": c, "name": f"c{c}"} for c in cat_ids]}
  return gt, results, bitmaps, [m for _, _, m in dets]


CASES = {
    "crowd": dict(crowd_frac=0.35, dets_per_gt=4),
    "empty_images_and_no_gt": dict(empty_frac=0.3, no_gt_frac=0.3, background=5),
    "tiny_and_empty_masks": dict(tiny_frac=0.6, dets_per_gt=3, empty_dets=1),
    "overlapping_duplicates_ties": dict(dup_frac=0.4, dets_per_gt=4, tie_scores=True),
    "mixed": dict(crowd_frac=0.1, tiny_frac=0.2, empty_frac=0.1, no_gt_frac=0.1, dup_frac=0.1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_segm_matches_pycocotools(case):
  gt, dets, _, dt_bitmaps = make_dataset(sorted(CASES).index(case), **CASES[case])
  if case == "tiny_and_empty_masks":
    gt_area = mask_utils.area([a["segmentation"] for a in gt["annotations"]])
    assert np.sum(gt_area <= 2) >= 3 and np.sum(gt_area == 0) >= 1
    assert sum(m.sum() == 0 for m in dt_bitmaps) >= 3
  ours = coco.evaluate_coco(gt, dets, iou_type="segm")
  ev = run_pycocotools(gt, dets, "segm")
  assert_same(ours, ev)
  assert ev.stats[1] > 0.05  # not degenerate: detections do match (AP50)


def test_segm_in_several_updates_equals_one(monkeypatch):
  gt, dets, _, _ = make_dataset(9, **CASES["mixed"])
  ref = coco.evaluate_coco(gt, dets, iou_type="segm")
  monkeypatch.setattr(coco, "_SEGM_IMAGES_PER_UPDATE", 5)  # 12 images -> 3 updates
  ours = coco.evaluate_coco(gt, dets, iou_type="segm")
  np.testing.assert_array_equal(ours["precision"], ref["precision"])
  np.testing.assert_array_equal(ours["recall"], ref["recall"])
  bad = dets + [dict(dets[0], image_id=10_000)]  # an image id not in gt["images"]
  with pytest.raises(ValueError, match=r"dt_image_ids contains \[10000\]"):
    coco.evaluate_coco(gt, bad, iou_type="segm")


def test_segm_crowd_absorbs_detections_hand_checked():
  # One crowd region (10x10) and one object; three detections inside the crowd
  # are ignored (IoU vs crowd = |d ∩ crowd| / |d| = 1), not false positives.
  crowd = np.zeros((30, 30), np.uint8)
  crowd[0:10, 0:10] = 1
  obj = np.zeros((30, 30), np.uint8)
  obj[15:25, 15:25] = 1
  gt = {"images": [{"id": 1, "height": 30, "width": 30}], "categories": [{"id": 1}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 1, "area": 100.0,
             "segmentation": encode(crowd, np.random.default_rng(0), uncompressed=True)},
            {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 100.0,
             "segmentation": mask_utils.encode(np.asfortranarray(obj))}]}
  dets = []
  for i, (y, x) in enumerate([(0, 0), (2, 3), (5, 5)]):
    m = np.zeros((30, 30), np.uint8)
    m[y:y + 4, x:x + 4] = 1
    dets.append({"image_id": 1, "category_id": 1, "score": 0.9 - 0.1 * i,
                 "segmentation": mask_utils.encode(np.asfortranarray(m))})
  dets.append({"image_id": 1, "category_id": 1, "score": 0.5,
               "segmentation": mask_utils.encode(np.asfortranarray(obj))})
  ours = coco.evaluate_coco(gt, dets, iou_type="segm")
  assert ours["AP"] == pytest.approx(1.0)  # precision 1 at every recall: crowd hits ignored
  assert_same(ours, run_pycocotools(gt, dets, "segm"))


def test_segm_many_detections_beyond_max_dets():
  rng = np.random.default_rng(7)
  gt, _, bitmaps, _ = make_dataset(11, n_images=2, n_cats=1, dets_per_gt=0, background=0)
  dets = []
  for im in gt["images"]:
    h, w = im["height"], im["width"]
    gms = [bitmaps[i] for i, a in enumerate(gt["annotations"]) if a["image_id"] == im["id"]]
    for k in range(130):  # > 100 in one (image, category)
      m = jitter(rng, gms[k % len(gms)], 3) if gms and k % 3 == 0 else blob(
          rng, h, w, rng.uniform(0, w), rng.uniform(0, h), *rng.uniform(1, 8, 2), k % 2)
      dets.append({"image_id": im["id"], "category_id": gt["categories"][0]["id"],
                   "score": float(rng.random()), "segmentation": encode(m, rng)})
  for max_dets in ([1, 10, 100], [1, 5, 20]):
    ours = coco.evaluate_coco(gt, dets, iou_type="segm", max_dets=max_dets)
    assert_same(ours, run_pycocotools(gt, dets, "segm", maxDets=max_dets))


def test_bitmaps_and_padded_batches_equal_rle():
  gt, dets, bitmaps, dt_bitmaps = make_dataset(3, n_images=5, crowd_frac=0.2, tiny_frac=0.2)
  ref = coco.evaluate_coco(gt, dets, iou_type="segm")
  anns = gt["annotations"]
  cats = [c["id"] for c in gt["categories"]]
  state = coco.coco_init(cats)
  state = coco.coco_update_segm(
      state, image_ids=[im["id"] for im in gt["images"]],
      gt_image_ids=[a["image_id"] for a in anns], gt_masks=[bitmaps[i] for i in range(len(anns))],
      gt_category_ids=[a["category_id"] for a in anns], gt_areas=[a["area"] for a in anns],
      gt_iscrowd=[a["iscrowd"] for a in anns], dt_image_ids=[d["image_id"] for d in dets],
      dt_masks=dt_bitmaps, dt_scores=[d["score"] for d in dets],
      dt_category_ids=[d["category_id"] for d in dets])
  np.testing.assert_array_equal(coco.coco_compute(state)["precision"], ref["precision"])
  # Padded batches of one image each (images differ in size): class index = category order.
  state = coco.coco_init(cats)
  for im in gt["images"]:
    gi = [i for i, a in enumerate(anns) if a["image_id"] == im["id"]]
    di = [i for i, d in enumerate(dets) if d["image_id"] == im["id"]]
    shape = (im["height"], im["width"])

    def pad(items, n, shape=shape):
      out = np.zeros((1, n) + shape, np.uint8)
      for j, m in enumerate(items):
        out[0, j] = m
      return out

    g_n, d_n = len(gi) + 2, len(di) + 1
    vec = lambda vals, n, dtype: np.array([list(vals) + [0] * (n - len(vals))], dtype)
    state = coco.coco_update_segm_batch(
        state, image_ids=[im["id"]], gt_masks=pad([bitmaps[i] for i in gi], g_n),
        gt_classes=vec([cats.index(anns[i]["category_id"]) for i in gi], g_n, np.int64),
        gt_valid=vec([1] * len(gi), g_n, bool), gt_iscrowd=vec([anns[i]["iscrowd"] for i in gi],
                                                               g_n, np.int64),
        gt_areas=vec([anns[i]["area"] for i in gi], g_n, np.float64),
        dt_masks=pad([dt_bitmaps[i] for i in di], d_n),
        dt_scores=vec([dets[i]["score"] for i in di], d_n, np.float64),
        dt_classes=vec([cats.index(dets[i]["category_id"]) for i in di], d_n, np.int64),
        dt_valid=vec([1] * len(di), d_n, bool), class_to_category=cats)
  np.testing.assert_array_equal(coco.coco_compute(state)["precision"], ref["precision"])


def test_rle_decoding_and_pair_iou_match_mask_utils():
  rng = np.random.default_rng(5)
  h, w = 37, 41
  masks = [(rng.random((h, w)) < p).astype(np.uint8) for p in np.linspace(0, 1, 12)]
  masks.append(np.ones((h, w), np.uint8))
  masks.append(blob(rng, h, w, 20, 20, 9, 5, 1))
  rles = [mask_utils.encode(np.asfortranarray(m)) for m in masks]
  runs = _rle.from_rles(rles)
  np.testing.assert_array_equal(runs.area, mask_utils.area(rles))
  crowd = rng.random(len(masks)) < 0.5
  ref = mask_utils.iou(rles, rles[::-1], crowd[::-1].astype(np.uint8))
  d, g = np.meshgrid(np.arange(len(masks)), np.arange(len(masks)), indexing="ij")
  got = _rle.pair_iou(runs, _rle.from_bitmaps(np.stack(masks[::-1])), d.ravel(), g.ravel(),
                      crowd[::-1][g.ravel()])
  np.testing.assert_array_equal(got.reshape(d.shape), ref)
  # Large counts (several 5-bit chunks) and negative deltas, str and bytes.
  big = np.zeros((700, 900), np.uint8)
  big[3:690, 1:899] = 1
  big[100:101, 5:6] = 0
  rle = mask_utils.encode(np.asfortranarray(big))
  for counts in (rle["counts"], rle["counts"].decode("ascii")):
    runs = _rle.from_rles([{"size": rle["size"], "counts": counts}])
    ref_runs = _rle.from_bitmaps(big[None])
    np.testing.assert_array_equal(runs.starts, ref_runs.starts)
    np.testing.assert_array_equal(runs.ends, ref_runs.ends)
    assert runs.area[0] == big.sum()


def test_segm_bad_inputs_name_the_problem():
  gt, dets, _, _ = make_dataset(2, n_images=3)
  with pytest.raises(ValueError, match="iou_type='keypoints'"):
    coco.evaluate_coco(gt, dets, iou_type="keypoints")
  bad = copy.deepcopy(gt)
  bad["annotations"][0]["segmentation"] = [[0, 0, 5, 0, 5, 5]]
  with pytest.raises(ValueError, match="polygons"):
    coco.evaluate_coco(bad, dets, iou_type="segm")
  state = coco.coco_init([1])
  with pytest.raises(ValueError, match=r"mask of size \[4, 5\].*\[4, 6\]"):
    coco.coco_update_segm(state, gt_image_ids=[1], gt_masks=np.ones((1, 4, 6)),
                          gt_category_ids=[1], dt_image_ids=[1], dt_masks=np.ones((1, 4, 5)),
                          dt_scores=[1.0], dt_category_ids=[1])
  with pytest.raises(ValueError, match="dt_masks has 1 masks; expected 2"):
    coco.coco_update_segm(state, gt_image_ids=[1], gt_masks=np.ones((1, 4, 6)),
                          gt_category_ids=[1], dt_image_ids=[1, 1], dt_masks=np.ones((1, 4, 5)),
                          dt_scores=[1.0, 0.5], dt_category_ids=[1, 1])
  with pytest.raises(ValueError, match="counts sum to 5"):
    _rle.from_rles([{"size": [2, 3], "counts": [2, 3]}])
