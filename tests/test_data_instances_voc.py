"""VOC / SBD instance masks (`visionjax.data.voc_segmentation`) on fixtures in
the real formats: palettized ``SegmentationObject`` PNGs and SBD's MATLAB
``GTinst`` structs (written with ``scipy.io.savemat``, read back with
``loadmat`` as the real files are). The reference is what the fixtures drew:
each object's rectangle, class and position in the XML.
"""
import fixtures_data as F
import numpy as np
import pytest
from scipy.io import savemat
import tensorflow_datasets as tfds

from visionjax.data import datasets, pipeline
from visionjax.data import voc_segmentation as vs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  return F.real_datasets(tmp_path_factory)


def _expected_objects(t):
  """ids 1..K, 0-based classes and (ymin, xmin, ymax, xmax) boxes of the
  drawn rectangles (0-based inclusive rows/cols -> half-open extent / size)."""
  h, w = t["instances"].shape
  boxes = [[o["rows"][0] / h, o["cols"][0] / w, (o["rows"][1] + 1) / h,
            (o["cols"][1] + 1) / w] for o in t["objects"]]
  return (np.arange(1, len(t["objects"]) + 1), np.array([o["cls"] - 1 for o in t["objects"]]),
          np.array(boxes, np.float32))


def _check(ex, t):
  np.testing.assert_array_equal(ex["instance_mask"][..., 0], t["instances"])
  ids, labels, boxes = _expected_objects(t)
  np.testing.assert_array_equal(ex["objects"]["id"], ids)
  np.testing.assert_array_equal(ex["objects"]["label"], labels)
  np.testing.assert_allclose(ex["objects"]["bbox"], boxes, atol=1e-6)


def test_voc_instances_come_from_segmentation_object(built):
  truth = built["truth"]["voc2012"]
  b = datasets.get_builder(F.data_config(built, "voc_segmentation/2012",
                                         "segmentation").dataset)
  assert str(b.info.version) == "1.1.0"
  seen = 0
  for split in ("train", "validation"):
    for ex in tfds.as_numpy(b.as_dataset(split=split)):
      t = truth[ex["image/filename"].decode()[:-4]]
      assert 255 in t["instances"]  # the void border is kept as read
      _check(ex, t)
      seen += 1
  assert seen == 5


def test_sbd_instances_come_from_gtinst(built):
  voc, sbd = built["truth"]["voc2012"], built["truth"]["sbd"]
  b = datasets.get_builder(F.data_config(built, "voc_segmentation/2012_sbd",
                                         "segmentation").dataset)
  got = {ex["image/filename"].decode()[:-4]: ex
         for ex in tfds.as_numpy(b.as_dataset(split="train"))}
  assert {len(t["objects"]) for t in sbd.values()} == {1, 2}  # scalar Categories too
  for k, t in sbd.items():
    _check(got[k], t)
    # Two instances of one class: one class in the mask, two ids.
    assert len(set(np.unique(t["mask"])) - {0}) == 1
  for k in {k for k, v in voc.items() if v["split"] == "train"}:
    _check(got[k], voc[k])  # VOC's SegmentationObject wins, as its class mask


def test_canonical_voc_example_has_instances_boxes_and_ids(built):
  truth = built["truth"]["voc2012"]
  c = F.data_config(built, "voc_segmentation/2012", "segmentation")
  data = pipeline.resolve(c.dataset)
  assert data.num_classes("instances") == 20
  assert data.class_names("instances") == datasets.VOC_CLASSES
  for ex in pipeline.examples(data, "validation", count=3):
    match = [t for t in truth.values() if t["split"] == "val"
             and np.array_equal(t["mask"], ex["mask"])]
    assert len(match) == 1
    t = match[0]
    assert ex["instances"].dtype == np.int32 and ex["box_instance"].dtype == np.int32
    np.testing.assert_array_equal(ex["instances"], t["instances"])
    ids, labels, boxes = _expected_objects(t)
    np.testing.assert_array_equal(ex["box_instance"], ids)
    np.testing.assert_array_equal(ex["box_labels"], labels)
    np.testing.assert_allclose(ex["boxes"], boxes[:, [1, 0, 3, 2]], atol=1e-6)  # xyxy
    assert not ex["box_difficult"].any()


def _write_gtinst(path, ids, categories):
  bounds = np.empty((len(categories), 1), object)
  for i in range(len(categories)):
    bounds[i, 0] = np.zeros((1, 1))
  savemat(path, {"GTinst": {"Segmentation": ids.astype(np.uint8), "Boundaries": bounds,
                            "Categories": np.array(categories, np.uint8).reshape(-1, 1)}})


def test_sbd_reader_handles_no_instance_and_names_a_bad_file(tmp_path):
  ids = np.zeros((6, 7), np.uint8)
  _write_gtinst(tmp_path / "none.mat", ids, [])
  got, cats = vs.sbd_instances(str(tmp_path / "none.mat"))
  assert got.shape == (6, 7) and len(cats) == 0
  objects = vs.instance_objects(got, lambda i, on: 0)
  assert objects["bbox"].shape == (0, 4) and len(objects["id"]) == 0
  ids[1:3, 2:5] = 2
  _write_gtinst(tmp_path / "bad.mat", ids, [4])
  with pytest.raises(ValueError, match=r"bad\.mat.*instance id 2.*lists 1 instances"):
    vs.sbd_instances(str(tmp_path / "bad.mat"))


def test_voc_object_class_is_the_majority_of_its_class_pixels():
  ids = np.array([[1, 1, 1, 0], [1, 1, 255, 0], [0, 0, 0, 0]], np.uint8)
  mask = np.array([[5, 5, 5, 0], [7, 5, 255, 0], [255, 255, 0, 0]], np.uint8)
  objects = vs.instance_objects(ids, vs._majority_class(mask, "x.png"))
  # By hand: object 1 covers classes 5, 5, 5, 7, 5 -> class 5 (0-based 4);
  # its pixel extent is rows 0-1, cols 0-2 of a 3 x 4 map.
  np.testing.assert_array_equal(objects["id"], [1])
  np.testing.assert_array_equal(objects["label"], [4])
  np.testing.assert_allclose(objects["bbox"], [[0, 0, 2 / 3, 3 / 4]])
  ids[2, :2] = 2  # an object over void pixels only
  with pytest.raises(ValueError, match=r"x\.png: object 2 covers no class pixel"):
    vs.instance_objects(ids, vs._majority_class(mask, "x.png"))
