"""COCO ``segmentation`` -> instance masks (`visionjax.data.coco_masks` and the
``coco_json`` own-data builder), against pycocotools: ``frPyObjects`` +
``merge`` + ``decode`` for polygons, and ``COCO.annToMask`` (the COCO API's
own decoding of each annotation) for a whole prepared dataset."""
import contextlib
import io
import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
import pytest
from spine_fixtures import tiny_config

from visionjax.data import coco_masks, pipeline
from visionjax.data.own_data import OwnDataError


def _reference_polygons(polygons, h, w):
  return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))) > 0


POLYGONS = {
    "triangle": [[2.0, 3.0, 17.5, 6.2, 8.1, 14.9]],
    "concave_l": [[1, 1, 6, 1, 6, 10, 14, 10, 14, 14, 1, 14]],
    "star": [[10, 0.5, 12.2, 7, 19, 7, 13.5, 11, 15.6, 18, 10, 13.8, 4.4, 18, 6.5, 11,
              1, 7, 7.8, 7]],
    "tiny_subpixel": [[5.1, 5.1, 5.6, 5.2, 5.3, 5.7]],
    "tiny_one_pixel": [[7.5, 7.5, 8.5, 7.5, 8.5, 8.5, 7.5, 8.5]],
    "thin_sliver": [[0, 0, 19.9, 0.4, 19.9, 0.6]],
    "past_the_edges": [[-3.2, -2, 25, 4, 22, 19.5, -1, 22]],
    "two_parts": [[1, 1, 5, 1, 5, 5, 1, 5], [9.3, 9.1, 15.8, 9.6, 12.2, 15.4]],
    "duplicate_vertices": [[3, 3, 3, 3, 12, 4, 12, 4, 8, 13]],
    "many_vertices": [np.round(np.c_[10 + 8 * np.cos(np.linspace(0, 6.2, 40)),
                                     9 + 6 * np.sin(np.linspace(0, 6.2, 40))], 2)
                      .reshape(-1).tolist()],
}


@pytest.mark.parametrize("name", sorted(POLYGONS))
def test_polygons_rasterize_as_pycocotools(name):
  polygons = POLYGONS[name]
  for h, w in ((20, 20), (17, 23)):
    got = coco_masks.segmentation_mask(polygons, h, w)
    np.testing.assert_array_equal(got, _reference_polygons(polygons, h, w),
                                  err_msg=f"{name} {h}x{w}")


def test_random_polygons_rasterize_as_pycocotools():
  rng = np.random.default_rng(0)
  for _ in range(300):
    h, w = (int(v) for v in rng.integers(1, 30, 2))
    k = int(rng.integers(3, 9))
    if rng.random() < 0.5:  # anywhere, often self-intersecting
      xy = rng.uniform(-2, [w + 2, h + 2], (k, 2))
    else:  # small, around one point
      xy = rng.uniform(0, [w, h]) + rng.uniform(-1.5, 1.5, (k, 2))
    poly = [np.round(xy, 2).reshape(-1).tolist()]
    np.testing.assert_array_equal(coco_masks.segmentation_mask(poly, h, w),
                                  _reference_polygons(poly, h, w), err_msg=str((h, w, poly)))


def test_rle_compressed_and_uncompressed_decode_as_pycocotools():
  rng = np.random.default_rng(1)
  for h, w, p in ((9, 13, 0.3), (1, 1, 1.0), (6, 4, 0.0), (31, 17, 0.6)):
    m = np.asfortranarray(rng.random((h, w)) < p).astype(np.uint8)
    compressed = mask_utils.encode(m)  # counts: bytes
    as_text = {"size": [h, w], "counts": compressed["counts"].decode()}
    flat = m.reshape(-1, order="F")  # uncompressed: run lengths, background first
    edges = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    runs = np.diff(np.r_[0, edges]).tolist()
    uncompressed = {"size": [h, w], "counts": runs}
    ref = mask_utils.decode(mask_utils.frPyObjects(uncompressed, h, w)) > 0
    np.testing.assert_array_equal(ref, m > 0)  # the hand-made runs are right
    for segm in (compressed, as_text, uncompressed):
      np.testing.assert_array_equal(coco_masks.segmentation_mask(segm, h, w), m > 0)


def test_bad_segmentations_say_what_is_wrong():
  with pytest.raises(ValueError, match=r"RLE size \[4, 5\] differs .* \[5, 4\]"):
    coco_masks.segmentation_mask({"size": [4, 5], "counts": [20]}, 5, 4)
  with pytest.raises(ValueError, match="counts sum to 19; expected .* 20"):
    coco_masks.segmentation_mask({"size": [5, 4], "counts": [10, 9]}, 5, 4)
  with pytest.raises(ValueError, match="segmentation is a str"):
    coco_masks.segmentation_mask("polygon", 5, 4)
  # Degenerate polygons (< 3 points, odd length) are skipped, as detectron2 does.
  assert coco_masks.segmentation_mask([[1, 1, 3, 3], [1, 2, 3]], 5, 4) is None


# ------------------------------------------------------- the coco_json builder
H, W = 24, 32
CATEGORIES = [{"id": 5, "name": "cup"}, {"id": 2, "name": "pen"}]


def _rle_text(m):
  r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
  return {"size": list(r["size"]), "counts": r["counts"].decode()}


def write_coco_instances(root):
  """One split with polygons, compressed and uncompressed RLE, a crowd
  region, overlapping objects and an object without segmentation."""
  blob = np.zeros((H, W), bool)
  blob[3:9, 20:29] = True
  blob[5, 22] = False  # a hole: not a polygon
  crowd = np.zeros((H, W), bool)
  crowd[14:22, 0:12] = True
  runs = np.diff(np.r_[0, np.flatnonzero(np.diff(np.r_[0, crowd.reshape(-1, order="F"),
                                                        1 - crowd.reshape(-1, order="F")[-1]]))])
  anns = [
      # 1: concave polygon; 2: overlaps 1 (drawn later: wins the overlap)
      dict(id=11, category_id=5, segmentation=[[2, 2, 12, 2, 12, 6, 6, 6, 6, 12, 2, 12]],
           bbox=[2, 2, 10, 10], iscrowd=0),
      dict(id=12, category_id=2, segmentation=[[5, 4, 16, 4, 16, 9, 5, 9]],
           bbox=[5, 4, 11, 5], iscrowd=0),
      dict(id=13, category_id=2, segmentation=_rle_text(blob), bbox=[20, 3, 9, 6], iscrowd=0),
      # crowd, uncompressed RLE as COCO stores crowds; an object drawn over it
      dict(id=14, category_id=5, segmentation={"size": [H, W], "counts": runs.tolist()},
           bbox=[0, 14, 12, 8], iscrowd=1),
      dict(id=15, category_id=5, segmentation=[[8, 16, 14, 16, 14, 20, 8, 20]],
           bbox=[8, 16, 6, 4], iscrowd=0),
      dict(id=16, category_id=2, bbox=[25, 15, 4, 4], iscrowd=0),  # box only
      dict(id=17, category_id=2, segmentation=[[1, 1, 2, 2]], bbox=[1, 1, 1, 1], iscrowd=0),
  ]
  for a in anns:
    a.update(image_id=1, area=float(a["bbox"][2] * a["bbox"][3]))
  os.makedirs(os.path.join(root, "train"))
  Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(os.path.join(root, "train", "a.png"))
  dataset = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
             "annotations": anns, "categories": CATEGORIES}
  os.makedirs(os.path.join(root, "annotations"))
  with open(os.path.join(root, "annotations", "instances_train.json"), "w") as f:
    json.dump(dataset, f)
  return dataset


def test_coco_json_instances_match_the_coco_api(tmp_path):
  dataset = write_coco_instances(str(tmp_path / "coco"))
  config = tiny_config(str(tmp_path / "tfds"), "detection", **{
      "dataset.name": "coco_json", "dataset.path": str(tmp_path / "coco"),
      "dataset.eval_split": "train"})
  data = pipeline.resolve(config.dataset)
  assert data.class_names("instances") == ("pen", "cup")  # category ids 2, 5
  [ex] = pipeline.examples(data, "train", count=2)
  # Reference: the COCO API's annToMask per annotation, composed as the
  # builder documents: crowds first as void (255), then the other objects
  # with a mask in annotation order, ids 1, 2, ..., later ones on top.
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
  expected = np.zeros((H, W), np.int32)
  ids, next_id = [], 1
  anns = dataset["annotations"]
  for a in anns:
    if a["iscrowd"]:
      expected[coco.annToMask(a) > 0] = 255
  for a in anns:
    usable = "segmentation" in a and a["id"] != 17  # 17: a 2-point polygon, skipped
    if a["iscrowd"] or not usable:
      ids.append(0)
      continue
    expected[coco.annToMask(a) > 0] = next_id
    ids.append(next_id)
    next_id += 1
  assert ids == [1, 2, 3, 0, 4, 0, 0]
  np.testing.assert_array_equal(ex["instances"], expected)
  np.testing.assert_array_equal(ex["box_instance"], ids)
  np.testing.assert_array_equal(ex["box_difficult"], [a["iscrowd"] == 1 for a in anns])
  # Object 1 lost its overlap with object 2, and object 4 sits on the crowd.
  assert 0 < (ex["instances"] == 1).sum() < (coco.annToMask(anns[0]) > 0).sum()
  assert (ex["instances"] == 255).any() and (ex["instances"][16:20, 8:14] == 4).all()


def test_coco_json_bad_segmentation_names_the_annotation(tmp_path):
  root = str(tmp_path / "coco")
  dataset = write_coco_instances(root)
  dataset["annotations"][2]["segmentation"] = {"size": [H, W + 1], "counts": "PQ1"}
  with open(os.path.join(root, "annotations", "instances_train.json"), "w") as f:
    json.dump(dataset, f)
  config = tiny_config(str(tmp_path / "tfds"), "detection", **{
      "dataset.name": "coco_json", "dataset.path": root})
  data = pipeline.resolve(config.dataset)
  with pytest.raises(OwnDataError, match=r"image id 1 annotation id 13: bad segmentation "
                                         r"\(RLE size \[24, 33\] differs"):
    data.prepare()
