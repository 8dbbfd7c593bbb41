"""visionjax.metrics.coco against pycocotools' COCOeval on randomized datasets.

The datasets are built to hit every case the protocol distinguishes: crowd
regions, all area ranges (with annotation areas that differ from box areas and
values exactly on the 32²/96² boundaries), more than 100 detections for one
(image, category), score ties, IoU ties (duplicate ground truth), images with
no ground truth, images with no detections, categories with no ground truth,
and detections of categories that are not evaluated.
"""
import numpy as np
import pytest

from visionjax.metrics import coco

pycocotools = pytest.importorskip("pycocotools")
from coco_reference import assert_same, run_pycocotools  # noqa: E402


def make_dataset(seed, n_images=40, n_cats=6, crowd_frac=0.08, tie_scores=False):
  rng = np.random.default_rng(seed)
  images = [{"id": int(i), "width": 640, "height": 480} for i in rng.permutation(
      np.arange(1, 3 * n_images, 3))[:n_images]]
  # Category ids not contiguous; the last one never has ground truth.
  cat_ids = [int(c) for c in (np.arange(n_cats) * 7 + 2)]
  categories = [{"id": c, "name": f"c{c}"} for c in cat_ids]
  anns, dets = [], []
  sizes = np.array([4, 16, 31, 32, 33, 50, 95, 96, 97, 150, 300])
  for im in images:
    n_gt = int(rng.integers(0, 9)) if rng.random() > 0.15 else 0
    for _ in range(n_gt):
      w, h = rng.choice(sizes) * rng.uniform(0.7, 1.3, 2)
      x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
      area = float(w * h) if rng.random() < 0.5 else float(rng.choice(sizes)) ** 2
      anns.append({"image_id": im["id"], "category_id": int(rng.choice(cat_ids[:-1])),
                   "bbox": [float(x), float(y), float(w), float(h)], "area": area,
                   "iscrowd": int(rng.random() < crowd_frac)})
      if rng.random() < 0.1:  # exact duplicate ground truth -> IoU ties
        anns.append(dict(anns[-1], bbox=list(anns[-1]["bbox"])))
  for i, a in enumerate(anns):
    a["id"] = i + 1
  by_img = {}
  for a in anns:
    by_img.setdefault(a["image_id"], []).append(a)
  for im in images:
    if rng.random() < 0.1:
      continue  # image without detections
    for a in by_img.get(im["id"], []):
      for _ in range(int(rng.integers(0, 4))):
        x, y, w, h = a["bbox"]
        jit = rng.normal(0, 0.15, 4) * np.array([w, h, w, h])
        cat = a["category_id"] if rng.random() < 0.9 else int(rng.choice(cat_ids))
        dets.append({"image_id": im["id"], "category_id": cat,
                     "bbox": [float(x + jit[0]), float(y + jit[1]), float(max(w + jit[2], 1)),
                              float(max(h + jit[3], 1))]})
    for _ in range(int(rng.integers(0, 8))):  # background false positives
      w, h = rng.choice(sizes) * rng.uniform(0.7, 1.3, 2)
      dets.append({"image_id": im["id"], "category_id": int(rng.choice(cat_ids + [999])),
                   "bbox": [float(rng.uniform(0, 600)), float(rng.uniform(0, 440)), float(w),
                            float(h)]})
  # One (image, category) with more than 100 detections: max-dets truncation.
  im0 = images[0]["id"]
  for _ in range(130):
    dets.append({"image_id": im0, "category_id": cat_ids[0],
                 "bbox": [float(rng.uniform(0, 100)), float(rng.uniform(0, 100)),
                          float(rng.uniform(10, 120)), float(rng.uniform(10, 120))]})
  for d in dets:
    d["score"] = float(rng.integers(1, 6) / 5) if tie_scores else float(rng.random())
  gt = {"images": images, "annotations": anns, "categories": categories}
  return gt, dets


@pytest.mark.parametrize("seed,tie_scores", [(0, False), (1, True), (2, False), (3, True)])
def test_matches_pycocotools_randomized(seed, tie_scores):
  gt, dets = make_dataset(seed, tie_scores=tie_scores)
  ev = run_pycocotools(gt, dets)
  ours = coco.evaluate_coco(gt, dets)
  assert_same(ours, ev)
  # The data really covers the protocol's cases.
  assert any(a["iscrowd"] for a in gt["annotations"])
  assert np.all(ours["precision"][:, :, -1] == -1)          # category without gt
  assert ours["stats"][0] > 0.05
  n = {}
  for d in dets:
    n[(d["image_id"], d["category_id"])] = n.get((d["image_id"], d["category_id"]), 0) + 1
  assert max(n.values()) > 100


def test_per_class_ap_matches_pycocotools():
  gt, dets = make_dataset(5)
  ev = run_pycocotools(gt, dets)
  ours = coco.evaluate_coco(gt, dets)
  p = ev.eval["precision"][:, :, :, 0, -1]
  for k in range(p.shape[2]):
    s = p[:, :, k]
    expected = np.mean(s[s > -1]) if np.any(s > -1) else np.nan
    np.testing.assert_allclose(ours["per_class_ap"][k], expected, atol=1e-6)
  assert np.isnan(ours["per_class_ap"][-1])


def test_custom_params_and_stats_quirk():
  # max_dets without 100: pycocotools' stats[0] looks for maxDets == 100
  # (its _summarize default) and reports -1, while AP50 uses maxDets[2].
  gt, dets = make_dataset(7)
  ev = run_pycocotools(gt, dets, maxDets=[1, 5, 20], iouThrs=np.array([0.3, 0.5, 0.75]))
  ours = coco.evaluate_coco(gt, dets, max_dets=(1, 5, 20), iou_thresholds=[0.3, 0.5, 0.75])
  assert_same(ours, ev)
  assert ours["stats"][0] == -1 and ours["stats"][1] > 0


def test_streaming_batches_equal_one_shot():
  gt, dets = make_dataset(11)
  ref = coco.evaluate_coco(gt, dets)
  rng = np.random.default_rng(0)
  img_ids = np.array([im["id"] for im in gt["images"]])
  rng.shuffle(img_ids)
  state = coco.coco_init([c["id"] for c in gt["categories"]])
  states = []
  for batch in np.array_split(img_ids, 7):
    bs = set(batch.tolist())
    ga = [a for a in gt["annotations"] if a["image_id"] in bs]
    dd = [d for d in dets if d["image_id"] in bs]
    s = coco.coco_update(
        coco.coco_init([c["id"] for c in gt["categories"]]), image_ids=batch,
        gt_image_ids=[a["image_id"] for a in ga], gt_boxes=np.array(
            [a["bbox"] for a in ga]).reshape(-1, 4),
        gt_category_ids=[a["category_id"] for a in ga], gt_areas=[a["area"] for a in ga],
        gt_iscrowd=[a["iscrowd"] for a in ga], dt_image_ids=[d["image_id"] for d in dd],
        dt_boxes=np.array([d["bbox"] for d in dd]).reshape(-1, 4),
        dt_scores=[d["score"] for d in dd], dt_category_ids=[d["category_id"] for d in dd])
    states.append(s)
  state = coco.coco_merge(state, *states)
  out = coco.coco_compute(state)
  np.testing.assert_array_equal(out["precision"], ref["precision"])
  np.testing.assert_array_equal(out["stats"], ref["stats"])
  with pytest.raises(ValueError, match="more than one update"):
    coco.coco_compute(coco.coco_merge(state, states[0]))


def test_padded_batch_update_equals_flat():
  # xyxy padded arrays, as a detector + NMS would produce them.
  gt, dets = make_dataset(13, n_images=6)
  ref = coco.evaluate_coco(gt, dets)
  cats = [c["id"] for c in gt["categories"]]
  imgs = [im["id"] for im in gt["images"]]
  G, N = 20, 200
  shape = (len(imgs),)
  gb, gc, gv, ga, gcr = (np.zeros(shape + (G, 4)), np.zeros(shape + (G,), int),
                         np.zeros(shape + (G,), bool), np.zeros(shape + (G,)),
                         np.zeros(shape + (G,), int))
  db, ds, dc, dv = (np.zeros(shape + (N, 4)), np.zeros(shape + (N,)), np.zeros(shape + (N,), int),
                    np.zeros(shape + (N,), bool))
  for b, im in enumerate(imgs):
    for j, a in enumerate([a for a in gt["annotations"] if a["image_id"] == im]):
      x, y, w, h = a["bbox"]
      gb[b, j] = [x, y, x + w, y + h]
      gc[b, j], gv[b, j], ga[b, j], gcr[b, j] = a["category_id"], True, a["area"], a["iscrowd"]
    for j, d in enumerate([d for d in dets if d["image_id"] == im]):
      x, y, w, h = d["bbox"]
      db[b, j] = [x, y, x + w, y + h]
      ds[b, j], dc[b, j], dv[b, j] = d["score"], d["category_id"], True
  state = coco.coco_update_batch(coco.coco_init(cats), image_ids=imgs, gt_boxes=gb,
                                 gt_classes=gc, gt_valid=gv, gt_areas=ga, gt_iscrowd=gcr,
                                 dt_boxes=db, dt_scores=ds, dt_classes=dc, dt_valid=dv)
  out = coco.coco_compute(state)
  # xyxy -> xywh round trip may change the last bit of w/h: compare to 1e-9.
  np.testing.assert_allclose(out["precision"], ref["precision"], atol=1e-9)
  np.testing.assert_allclose(out["stats"], ref["stats"], atol=1e-9)


def test_hand_computed_small_case():
  # One image, one category, 2 gt; detections: exact hit (0.9), duplicate of
  # the same gt (0.8) and a miss (0.7).  At every IoU threshold the PR curve is
  # (P=1, R=.5), (P=.5, R=.5), (P=1/3, R=.5): AP = 0.5·(51/101) for R < .5 …
  gt = {"images": [{"id": 1}], "categories": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                         "area": 100, "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10],
                         "area": 100, "iscrowd": 0}]}
  dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
          {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},
          {"image_id": 1, "category_id": 1, "bbox": [100, 100, 5, 5], "score": 0.7}]
  out = coco.evaluate_coco(gt, dets)
  # recall thresholds 0.00..0.50 (51 of 101) reached with precision 1.
  assert out["AP"] == pytest.approx(51 / 101)
  assert out["AP50"] == pytest.approx(51 / 101)
  assert out["AR100"] == pytest.approx(0.5)
  assert out["AR1"] == pytest.approx(0.5)
  assert out["APs"] == pytest.approx(51 / 101) and out["APm"] == -1 and out["APl"] == -1


def test_crowd_region_absorbs_detections():
  # A crowd gt covering the image: detections inside it are ignored (neither
  # TP nor FP), so the single regular gt's detection gives AP = 1.
  gt = {"images": [{"id": 1}], "categories": [{"id": 3}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 100, 100],
                         "area": 10000, "iscrowd": 1},
                        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [200, 200, 20, 20],
                         "area": 400, "iscrowd": 0}]}
  dets = [{"image_id": 1, "category_id": 3, "bbox": [10 * i, 10, 8, 8], "score": 0.9}
          for i in range(5)] + [{"image_id": 1, "category_id": 3, "bbox": [200, 200, 20, 20],
                                 "score": 0.5}]
  out = coco.evaluate_coco(gt, dets)
  assert out["AP"] == pytest.approx(1.0)
  ev = run_pycocotools(gt, dets)
  assert_same(out, ev)


def test_no_detections_at_all():
  gt, _ = make_dataset(3)
  out = coco.evaluate_coco(gt, [])
  assert out["AP"] == 0.0 and out["AR100"] == 0.0
  assert np.all(out["precision"][:, :, :-1, 0] == 0)


def test_bad_input_errors():
  state = coco.coco_init([1, 2])
  with pytest.raises(ValueError, match="gt_boxes has shape"):
    coco.coco_update(state, gt_image_ids=[1], gt_boxes=np.zeros((1, 3)), gt_category_ids=[1],
                     dt_image_ids=[], dt_boxes=np.zeros((0, 4)), dt_scores=[],
                     dt_category_ids=[])
  with pytest.raises(ValueError, match="not in image_ids"):
    coco.coco_update(state, image_ids=[1], gt_image_ids=[1], gt_boxes=np.zeros((1, 4)),
                     gt_category_ids=[1], dt_image_ids=[5], dt_boxes=np.zeros((1, 4)),
                     dt_scores=[1.0], dt_category_ids=[1])


def test_iou_exactly_on_threshold_matches():
  # IoU = 100/200 = 0.5 exactly: a match at t=0.50 only (pycocotools tests
  # iou >= t). AP50 = 1, AP@[.5:.95] = 1/10; the 0.75 box (IoU 150/200) adds
  # thresholds .55 ... .75.
  gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                         "area": 100, "iscrowd": 0},
                        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 15],
                         "area": 150, "iscrowd": 0}]}
  dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.9},
          {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.8}]
  out = coco.evaluate_coco(gt, dets)
  assert out["AP50"] == pytest.approx(1.0)
  # t = .75: the 0.9 detection (IoU .5) is a FP, the 0.8 one a TP -> precision
  # 1/2 up to R = .5.
  assert out["AP75"] == pytest.approx(0.5 * 51 / 101)
  # Same for t = .55 ... .75 (5 thresholds); t >= .8 finds nothing.
  assert out["AP"] == pytest.approx((1 + 5 * 0.5 * 51 / 101) / 10)
  assert_same(out, run_pycocotools(gt, dets))
