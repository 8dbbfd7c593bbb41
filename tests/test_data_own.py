"""Your own data (`visionjax.data.own_data`): each layout decodes to the
fixture's hand-computed labels, masks and boxes, trains a few steps through
the real loop to final_metrics.json, and bad inputs fail with one line
naming the file."""
import json
import os
import shutil

import fixtures_own_data as F
import ml_collections
import numpy as np
from PIL import Image
import pytest
from spine_fixtures import tiny_config

from visionjax.data import pipeline
from visionjax.data.own_formats import OwnDataError
from visionjax.train import loop


def _config(tmp_path, task, name, root, **overrides):
  return tiny_config(str(tmp_path / "tfds"), task, **{
      "dataset.name": name, "dataset.path": str(root), "batch_size": 8,
      "eval_batch_size": 8, "num_train_steps": 2, "num_visualizations": 0, **overrides})


def _canonical(data, split):
  """{filename: canonical example (NumPy)} of one split."""
  data.prepare()
  ds = data.builders[0].as_dataset(split=split)
  out = {}
  for ex in ds:
    name = ex["image/filename"].numpy().decode()
    out[name] = {k: v.numpy() for k, v in data.adapter.canonical(ex).items()}
  return out


def _train(config, wd):
  metrics = loop.train_and_evaluate(config, str(wd))
  with open(os.path.join(wd, "final_metrics.json")) as f:
    saved = json.load(f)
  for key in metrics:  # the same metrics path as the built-in data
    assert saved[key] == metrics[key], key
  return metrics


def test_image_folder_with_a_split_fraction(tmp_path):
  root = tmp_path / "pets"
  truth = F.write_image_folder(str(root))
  config = _config(tmp_path, "classification", "image_folder", root, **{
      "dataset.image_size": (32, 32), "dataset.train_split": "train[:75%]",
      "dataset.eval_split": "train[75%:]"})
  exp = loop.build(config)
  assert exp.class_names == ("cat", "dog", "fox")
  got = _canonical(exp.data, "train")
  assert sorted(got) == sorted(truth)  # notes.txt is not an image
  for name, (cls, pixels) in truth.items():
    assert got[name]["label"] == ("cat", "dog", "fox").index(cls), name
    if pixels is not None:  # PNG and BMP: exact; JPEG: lossy
      np.testing.assert_array_equal(got[name]["image"], pixels, err_msg=name)
    else:
      assert got[name]["image"].shape == Image.open(root / name).size[::-1] + (3,)
  # The fraction: 9 + 3 of the 12, disjoint.
  train, held = (set(_canonical(exp.data, s)) for s in ("train[:75%]", "train[75%:]"))
  assert len(train) == 9 and len(held) == 3 and not train & held
  m = _train(config, tmp_path / "wd")
  assert m["num_examples"] == 3 and 0.0 <= m["accuracy"] <= 1.0


def test_image_folder_with_split_folders_and_classes_txt(tmp_path):
  root = tmp_path / "pets"
  truth = {}
  for split in ("train", "test"):
    truth.update({f"{split}/{k}": v for k, v in F.write_image_folder(str(root / split)).items()})
    os.remove(root / split / "notes.txt")
  (root / "classes.txt").write_text("fox\ncat\ndog\nowl\n")  # its order, not sorted
  dc = ml_collections.ConfigDict(dict(name="image_folder", path=str(root),
                                      data_dir=str(tmp_path / "tfds")))
  data = pipeline.resolve(dc)
  assert data.class_names("label") == ("fox", "cat", "dog", "owl")
  for split in ("train", "test"):
    got = _canonical(data, split)
    assert len(got) == 12
    for name, ex in got.items():
      assert ex["label"] == ("fox", "cat", "dog").index(truth[name][0]), name


def test_mask_folder_palette_and_class_id_pngs(tmp_path):
  root = tmp_path / "streets"
  truth = F.write_mask_folder(str(root))
  config = _config(tmp_path, "segmentation", "mask_folder", root, **{
      "dataset.image_size": (16, 24), "dataset.ignore_value": F.MASK_IGNORE})
  exp = loop.build(config)
  assert exp.class_names == F.MASK_CLASSES
  for split in ("train", "test"):
    got = _canonical(exp.data, split)
    assert len(got) == len([k for k in truth if k.startswith(split)])
    for name, ex in got.items():
      key = f"{split}/{os.path.splitext(os.path.basename(name))[0]}"
      np.testing.assert_array_equal(ex["mask"], truth[key], err_msg=name)
  m = _train(config, tmp_path / "wd")
  assert 0.0 <= m["miou"] <= 1.0 and len(m["iou_per_class"]) == 3


def _check_boxes(got, truth):
  assert sorted(got) == sorted(truth)
  for name, t in truth.items():
    np.testing.assert_allclose(got[name]["boxes"], np.reshape(t["boxes"], (-1, 4)), atol=1e-6,
                               err_msg=name)
    np.testing.assert_array_equal(got[name]["box_labels"], t["labels"], err_msg=name)
    np.testing.assert_array_equal(got[name]["box_difficult"], t["difficult"], err_msg=name)


def test_coco_json_detection(tmp_path):
  root = tmp_path / "coco"
  truth = F.write_coco(str(root))
  config = _config(tmp_path, "detection", "coco_json", root, **{
      "dataset.image_size": (32, 32), "model.name": "ssd_lite",
      "task_kwargs.max_boxes": 3, "task_kwargs.pre_nms_top_k": 20,
      "task_kwargs.max_detections": 20})
  config.model.encoder_kwargs = {"stage_sizes": (1, 1, 1), "widths": (8, 8, 16),
                                 "stem_width": 8}
  exp = loop.build(config)
  assert exp.class_names == ("cat", "dog")  # category ids 3, 7 sorted
  got = {**_canonical(exp.data, "train"), **_canonical(exp.data, "test")}
  _check_boxes({os.path.basename(k): v for k, v in got.items()}, truth)
  m = _train(config, tmp_path / "wd")
  assert m["num_images"] == 3 and 0.0 <= m["map50"] <= 1.0


def test_voc_xml_localization(tmp_path):
  root = tmp_path / "voc"
  truth = F.write_voc(str(root))
  config = _config(tmp_path, "localization", "voc_xml", root, **{
      "dataset.image_size": (32, 32), "model.name": "resnet18_localizer"})
  config.model.encoder_kwargs = {"stage_sizes": (1, 1, 1, 1), "widths": (4, 8, 8, 16),
                                 "stem_width": 4}
  exp = loop.build(config)
  assert exp.class_names == ("bird", "dog")
  train, test = _canonical(exp.data, "train"), _canonical(exp.data, "test")
  assert len(train) == 8 and len(test) == 3  # dog_train.txt is not a split
  _check_boxes({os.path.splitext(os.path.basename(k))[0]: v
                for k, v in {**train, **test}.items()}, truth)
  m = _train(config, tmp_path / "wd")
  assert m["num_examples"] == 3 and 0.0 <= m["mean_iou"] <= 1.0


def test_data_dir_inside_the_dataset_folder_is_not_a_change(tmp_path):
  root = tmp_path / "pets"
  F.write_image_folder(str(root))
  dc = ml_collections.ConfigDict(dict(name="image_folder", path=str(root),
                                      data_dir=str(root / "prepared")))
  pipeline.resolve(dc).prepare()
  assert pipeline.resolve(dc).class_names("label") == ("cat", "dog", "fox")


def test_prepared_copy_serves_without_the_source_and_refuses_a_changed_one(tmp_path):
  root = tmp_path / "voc"
  F.write_voc(str(root))
  dc = ml_collections.ConfigDict(dict(name="voc_xml", path=str(root),
                                      data_dir=str(tmp_path / "tfds")))
  pipeline.resolve(dc).prepare()
  moved = tmp_path / "elsewhere"
  shutil.move(root, moved)
  data = pipeline.resolve(dc)  # e.g. predicting on another machine
  assert data.class_names("boxes") == ("bird", "dog")
  assert data.builders[0].info.splits["test"].num_examples == 3
  shutil.move(moved, root)
  with open(root / "Annotations" / "img0.xml", "a") as f:
    f.write("\n")
  with pytest.raises(OwnDataError, match=r"voc changed \(a file added, removed or resized\) "
                     r"since it was prepared into .*own_voc_xml.*\(25 files then, 25 now\); "
                     r"delete that folder"):
    pipeline.resolve(dc)


# ------------------------------------------------------------------ bad input
def _broken(tmp_path, layout, writer, breaks, **dc):
  root = tmp_path / "data"
  writer(str(root))
  breaks(root)
  config = ml_collections.ConfigDict(dict(name=layout, path=str(root),
                                          data_dir=str(tmp_path / "tfds"), **dc))
  pipeline.resolve(config).prepare()


def _write(path, text):
  with open(path, "w") as f:
    f.write(text)


def _png(path, array):
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


BAD = {
    "image without mask": (
        "mask_folder", F.write_mask_folder,
        lambda r: os.remove(r / "masks/train/03.png"),
        r"images/train/03\.png: image has no mask; expected .*masks/train/03\.png$"),
    "mask without image": (
        "mask_folder", F.write_mask_folder,
        lambda r: os.remove(r / "images/test/00.jpg"),
        r"masks/test/00\.png: mask has no image; expected .*images/test/00\.<jpg"),
    "mask of another size": (
        "mask_folder", F.write_mask_folder,
        lambda r: _png(r / "masks/train/02.png", np.zeros((16, 19))),
        r"masks/train/02\.png: mask is 19x16 but its image .*images/train/02\.jpg is 20x16; "
        r"expected the same size$"),
    "unknown class id in a mask": (
        "mask_folder", F.write_mask_folder,
        lambda r: _png(r / "masks/test/02.png", np.full((16, 20), 3)),
        r"masks/test/02\.png: unknown class id 3; expected 0\.\.2 \(classes\.txt\) or 9 "
        r"\(ignore\)$"),
    "colour mask": (
        "mask_folder", F.write_mask_folder,
        lambda r: _png(r / "masks/train/00.png", np.zeros((16, 20, 3))),
        r"masks/train/00\.png: mask is a 'RGB' image; expected a palette \('P'\) or "
        r"single-channel \('L'\) PNG"),
    "unreadable image": (
        "image_folder", F.write_image_folder,
        lambda r: _write(r / "dog/3.jpg", "not a JPEG"),
        r"dog/3\.jpg: unreadable image \(UnidentifiedImageError: .*\); expected a JPEG, PNG"),
    "truncated image": (
        "image_folder", F.write_image_folder,
        lambda r: (r / "cat/0.png").write_bytes((r / "cat/0.png").read_bytes()[:200]),
        r"cat/0\.png: unreadable image \(OSError: .*\); expected a JPEG, PNG"),
    "folder not in classes.txt": (
        "image_folder", F.write_image_folder,
        lambda r: _write(r / "classes.txt", "cat\ndog\n"),
        r"fox: unknown class name 'fox'; .*classes\.txt lists \['cat', 'dog'\]$"),
    "unknown COCO category": (
        "coco_json", F.write_coco,
        lambda r: _write(r / "annotations/instances_test.json", json.dumps(
            {**json.loads((r / "annotations/instances_test.json").read_text()),
             "annotations": [{"id": 99, "image_id": 1, "category_id": 5,
                              "bbox": [1, 1, 2, 2]}]})),
        r"instances_test\.json: annotation id 99: unknown category_id 5; the categories are "
        r"\[3, 7\]$"),
    "COCO box outside the image": (
        "coco_json", F.write_coco,
        lambda r: _write(r / "annotations/instances_test.json", json.dumps(
            {**json.loads((r / "annotations/instances_test.json").read_text()),
             "annotations": [{"id": 99, "image_id": 2, "category_id": 3,
                              "bbox": [35, 20, 8, 5]}]})),
        r"instances_test\.json: image id 2 object 0: box \(x1=35, y1=20, x2=43, y2=25\) is "
        r"outside the 40x30 image or empty; expected 0 <= x1 < x2 <= 40"),
    "COCO image missing": (
        "coco_json", F.write_coco,
        lambda r: os.remove(r / "train/train_5.jpg"),
        r"train/train_5\.jpg: cannot read the image \(FileNotFoundError"),
    "unknown VOC class name": (
        "voc_xml", F.write_voc,
        lambda r: _write(r / "classes.txt", "dog\ncat\n"),
        r"Annotations/img\d+\.xml: unknown class name 'bird'; .*classes\.txt lists "
        r"\['dog', 'cat'\]$"),
    "VOC box outside the image": (
        "voc_xml", F.write_voc,
        lambda r: _write(r / "Annotations/img9.xml", F.voc_xml(
            "img9.jpg", 50, 40, [("dog", 5, 4, 60, 20, 0)])),
        r"Annotations/img9\.xml object 0: box \(x1=5, y1=4, x2=60, y2=20\) is outside the "
        r"50x40 image"),
    "VOC size disagrees with the image": (
        "voc_xml", F.write_voc,
        lambda r: _write(r / "Annotations/img2.xml", F.voc_xml(
            "img2.jpg", 40, 50, [("dog", 5, 4, 20, 20, 0)])),
        r"Annotations/img2\.xml: annotation says the image is 40x50 but .*img2\.jpg is 50x40"),
    "VOC split lists a missing id": (
        "voc_xml", F.write_voc,
        lambda r: _write(r / "ImageSets/Main/test.txt", "img8\nimg77\n"),
        r"ImageSets/Main/test\.txt: id 'img77' has no annotation; expected "
        r".*Annotations/img77\.xml$"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_the_file(tmp_path, case):
  layout, writer, breaks, message = BAD[case]
  extra = {"ignore_value": F.MASK_IGNORE} if layout == "mask_folder" else {}
  with pytest.raises(OwnDataError, match=message) as e:
    _broken(tmp_path, layout, writer, breaks, **extra)
  assert "\n" not in str(e.value)


def test_config_errors(tmp_path):
  root = tmp_path / "streets"
  F.write_mask_folder(str(root))
  dc = lambda **kw: ml_collections.ConfigDict(dict(
      name="mask_folder", data_dir=str(tmp_path / "tfds"), **kw))
  with pytest.raises(ValueError, match=r"^dataset 'mask_folder' reads your own data: set "
                     r"config.dataset.path"):
    pipeline.resolve(dc(path=None))
  with pytest.raises(OwnDataError, match=r"ignore_value=1 is class 'road' of .*classes\.txt"):
    pipeline.resolve(dc(path=str(root), ignore_value=1))
  with pytest.raises(OwnDataError, match=r"nowhere: no such folder; expected a mask_folder "
                     r"dataset there \(config.dataset.path\), not prepared yet"):
    pipeline.resolve(dc(path=str(tmp_path / "nowhere")))
  os.remove(root / "classes.txt")
  with pytest.raises(OwnDataError, match=r"classes\.txt: no such file; expected one class "
                     r"name per line"):
    pipeline.resolve(dc(path=str(root)))
