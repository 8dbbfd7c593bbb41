"""Benchmark: visionjax COCO bbox and segm evaluation vs pycocotools on the same data.

Synthetic COCO-val-sized data: 5,000 images, ~37,000 ground-truth boxes
(1% crowd, COCO-like size mix), ~175,000 detections over 80 classes (jittered
true positives, duplicates, class confusions and background false positives).
Both evaluators get identical Python objects; times include parsing/indexing
(pycocotools: COCO index + loadRes + evaluate + accumulate + summarize;
visionjax: evaluate_coco). Results are checked to be identical.

segm: every box becomes the ellipse inscribed in it (clipped to the image),
as a compressed RLE, for ground truth (area = its pixel count) and
detections alike; same matching problem at mask level.

  python benchmarks/coco_eval.py [--images 5000] [--repeats 3] [--skip-pycocotools]
                                 [--iou-type bbox|segm|both]
"""
import argparse
import contextlib
import copy
import io
import time

import numpy as np

from visionjax.metrics import coco


def synthetic_coco(n_images=5000, n_classes=80, gt_per_image=7.4, dt_per_image=35.0, seed=0):
  rng = np.random.default_rng(seed)
  images = [{"id": i + 1, "width": 640, "height": 480} for i in range(n_images)]
  categories = [{"id": c + 1, "name": f"class{c + 1}"} for c in range(n_classes)]
  class_p = rng.dirichlet(np.full(n_classes, 0.7))       # unbalanced like COCO
  anns, dets = [], []
  for im in images:
    n_gt = rng.poisson(gt_per_image)
    side = np.exp(rng.uniform(np.log(6), np.log(400), n_gt))
    aspect = np.exp(rng.normal(0, 0.5, n_gt))
    w = np.minimum(side * aspect, 630)
    h = np.minimum(side / aspect, 470)
    x = rng.uniform(0, 640 - w)
    y = rng.uniform(0, 480 - h)
    cls = rng.choice(n_classes, n_gt, p=class_p) + 1
    crowd = rng.random(n_gt) < 0.01
    for j in range(n_gt):
      anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": int(cls[j]),
                   "bbox": [float(x[j]), float(y[j]), float(w[j]), float(h[j])],
                   "area": float(w[j] * h[j] * rng.uniform(0.55, 0.9)),   # mask area < box
                   "iscrowd": int(crowd[j])})
    n_dt = rng.poisson(dt_per_image)
    # ~60% of detections near a ground truth (several per object), rest background.
    n_near = min(int(n_dt * 0.6), 4 * n_gt) if n_gt else 0
    src = rng.integers(0, max(n_gt, 1), n_near)
    jit = rng.normal(0, 0.12, (n_near, 4))
    bx = np.stack([x[src] + jit[:, 0] * w[src], y[src] + jit[:, 1] * h[src],
                   w[src] * np.exp(jit[:, 2]), h[src] * np.exp(jit[:, 3])], 1) if n_near else \
        np.zeros((0, 4))
    dcls = np.where(rng.random(n_near) < 0.85, cls[src] if n_near else 0,
                    rng.choice(n_classes, n_near, p=class_p) + 1)
    score_near = np.clip(rng.beta(4, 2, n_near), 1e-3, 1)
    n_bg = n_dt - n_near
    bw = np.exp(rng.uniform(np.log(6), np.log(300), n_bg))
    bh = bw * np.exp(rng.normal(0, 0.5, n_bg))
    bg = np.stack([rng.uniform(0, 600, n_bg), rng.uniform(0, 440, n_bg), bw, bh], 1)
    bcls = rng.choice(n_classes, n_bg, p=class_p) + 1
    score_bg = np.clip(rng.beta(1.2, 5, n_bg), 1e-3, 1)
    for b, c, s in zip(np.concatenate([bx, bg]), np.concatenate([dcls, bcls]),
                       np.concatenate([score_near, score_bg])):
      dets.append({"image_id": im["id"], "category_id": int(c),
                   "bbox": [float(v) for v in b], "score": round(float(s), 3)})
  return {"images": images, "annotations": anns, "categories": categories}, dets


def ellipse_rle(box, h, w):
  """Compressed RLE of the ellipse inscribed in an xywh box (pixel centres
  inside), clipped to the h×w image; built column by column, no bitmap."""
  from pycocotools import mask as mask_utils
  x, y, bw, bh = box
  cx, cy, rx, ry = x + bw / 2, y + bh / 2, max(bw / 2, 1e-3), max(bh / 2, 1e-3)
  cols = np.arange(max(int(np.floor(x)), 0), min(int(np.ceil(x + bw)), w))
  t = 1 - ((cols + 0.5 - cx) / rx) ** 2
  half = ry * np.sqrt(np.maximum(t, 0))
  y0 = np.maximum(np.ceil(cy - half - 0.5), 0).astype(np.int64)
  y1 = np.minimum(np.floor(cy + half - 0.5), h - 1).astype(np.int64)
  ok = (t > 0) & (y1 >= y0)
  starts = cols[ok] * h + y0[ok]
  ends = cols[ok] * h + y1[ok] + 1
  bounds = np.concatenate([[0], np.stack([starts, ends], 1).ravel(), [h * w]])
  counts = np.diff(bounds).tolist()
  return mask_utils.frPyObjects([{"counts": counts, "size": [h, w]}], h, w)[0]


def to_segm(gt, dets):
  """The bbox dataset as masks (see the module docstring)."""
  from pycocotools import mask as mask_utils
  size = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
  anns = []
  for a in gt["annotations"]:
    rle = ellipse_rle(a["bbox"], *size[a["image_id"]])
    rle["counts"] = rle["counts"].decode("ascii")
    anns.append(dict(a, segmentation=rle, area=float(mask_utils.area(rle))))
  out = []
  for d in dets:
    rle = ellipse_rle(d["bbox"], *size[d["image_id"]])
    rle["counts"] = rle["counts"].decode("ascii")
    out.append({k: v for k, v in d.items() if k != "bbox"} | {"segmentation": rle})
  return dict(gt, annotations=anns), out


def run_pycocotools(gt, dets, iou_type="bbox"):
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval
  gt, dets = copy.deepcopy(gt), copy.deepcopy(dets)   # pycocotools mutates its inputs
  t0 = time.perf_counter()
  with contextlib.redirect_stdout(io.StringIO()):
    cg = COCO()
    cg.dataset = gt
    cg.createIndex()
    cd = cg.loadRes(dets)
    ev = COCOeval(cg, cd, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return time.perf_counter() - t0, ev


def compare(gt, dets, iou_type, repeats, skip_reference):
  print(f"--- {iou_type} ---")
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    ours = coco.evaluate_coco(gt, dets, iou_type=iou_type)
    times.append(time.perf_counter() - t0)
  t_ours = min(times)
  print(f"visionjax evaluate_coco({iou_type}): {t_ours:.3f} s (best of {repeats}; all: "
        f"{', '.join(f'{t:.3f}' for t in times)})")
  print("visionjax stats:   " + " ".join(f"{v:.4f}" for v in ours["stats"]))
  if skip_reference:
    return
  t_ref, ev = run_pycocotools(gt, dets, iou_type)
  print(f"pycocotools COCOeval({iou_type}): {t_ref:.3f} s")
  print("pycocotools stats: " + " ".join(f"{v:.4f}" for v in ev.stats))
  d_prec = np.max(np.abs(ours["precision"] - ev.eval["precision"]))
  d_rec = np.max(np.abs(ours["recall"] - ev.eval["recall"]))
  d_stats = np.max(np.abs(ours["stats"] - ev.stats))
  print(f"max |difference|: precision {d_prec:.3g}, recall {d_rec:.3g}, stats {d_stats:.3g}"
        f" -> {'IDENTICAL' if max(d_prec, d_rec, d_stats) == 0 else 'DIFFERENT'}")
  print(f"speed-up vs pycocotools ({iou_type}): {t_ref / t_ours:.1f}x"
        + (" (target >= 10x)" if iou_type == "bbox" else ""))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--images", type=int, default=5000)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--skip-pycocotools", action="store_true")
  ap.add_argument("--iou-type", choices=("bbox", "segm", "both"), default="both")
  args = ap.parse_args()
  gt, dets = synthetic_coco(args.images)
  n_crowd = sum(a["iscrowd"] for a in gt["annotations"])
  print(f"data: {len(gt['images'])} images, {len(gt['annotations'])} gt boxes ({n_crowd} crowd),"
        f" {len(dets)} detections, {len(gt['categories'])} classes")
  if args.iou_type in ("bbox", "both"):
    compare(gt, dets, "bbox", args.repeats, args.skip_pycocotools)
  if args.iou_type in ("segm", "both"):
    t0 = time.perf_counter()
    gt_m, dets_m = to_segm(gt, dets)
    print(f"(masks built in {time.perf_counter() - t0:.1f} s, not timed below)")
    compare(gt_m, dets_m, "segm", args.repeats, args.skip_pycocotools)


if __name__ == "__main__":
  main()
