"""The real builders on real-format fixture archives, then the pipelines.

Archives come from `fixtures_data` (CIFAR-10 binary batches, VOCdevkit tars
with JPEGs, XML and palettized PNG masks, SBD's benchmark.tgz, Cityscapes
zips). The stock TFDS builders (`cifar10`, `voc/2007`, `voc/2012`,
`cityscapes/semantic_segmentation`) and ours (`voc_segmentation`) read them
from the manual download folder, without network; the tests then check what
the pipelines yield against the pixels, labels and boxes that were written.
"""
import os
import socket
import time

import fixtures_data as F
import numpy as np
import pytest
from scipy.ndimage import binary_erosion
import spine_fixtures
import tensorflow_datasets as tfds

from visionjax.data import datasets, sources


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  return F.real_datasets(tmp_path_factory)


def _all_valid(config, split=None):
  """Every real example of one eval pass, as a dict of stacked arrays."""
  batches = list(spine_fixtures.eval_batches(config, split))
  out = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  valid = out.pop("valid")
  return {k: v[valid] for k, v in out.items()}, batches


def _pixels(config, image):
  dc = config.dataset
  return image * np.asarray(dc.std) * 255 + np.asarray(dc.mean) * 255


# ------------------------------------------------------------------ CIFAR-10
def test_cifar10_binary_batches_survive_exactly(built):
  truth = built["truth"]["cifar10"]
  c = F.data_config(built, "cifar10", "classification",
                    **{"dataset.mean": (0.0, 0.0, 0.0), "dataset.std": (1 / 255,) * 3})
  b = datasets.get_builder(c.dataset)
  assert b.info.features["label"].names == F.CIFAR_NAMES  # from batches.meta.txt
  for split, n in (("train", 10), ("test", 4)):
    ex, batches = _all_valid(c, split)
    assert len(ex["label"]) == n and ex["image"].shape == (n, 32, 32, 3)
    assert ex["image"].dtype == np.float32 and ex["label"].dtype == np.int32
    images, labels = truth[split]
    # TFDS shuffles example order at generation: match by content.
    for img, lab in zip(np.round(ex["image"]).astype(np.uint8), ex["label"]):
      k = [i for i in range(len(images)) if np.array_equal(images[i], img)]
      assert len(k) == 1 and labels[k[0]] == lab
  assert len(batches) == 1 and batches[0]["valid"].sum() == 4  # padded 4 -> 8


def test_cifar10_train_pipeline_pad_crop_flip(built):
  c = F.data_config(built, "cifar10", "classification",
                    **{"dataset.augment": ("pad_crop", "horizontal_flip"),
                       "dataset.mean": (0.4914, 0.4822, 0.4465),
                       "dataset.std": (0.2470, 0.2435, 0.2616)})
  batch = next(spine_fixtures.train_dataset(c).as_numpy_iterator())
  assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32
  assert set(batch["label"]) <= set(range(10))
  assert sorted(batch) == ["image", "label"]


# ---------------------------------------------------------------- VOC boxes
def _match_voc(truth, split, boxes, labels):
  """The truth whose xyxy boxes are ``boxes`` (pipeline output, any order)."""
  ids = [k for k, v in truth.items() if v["split"] == split and
         len(v["labels"]) == len(labels) and np.allclose(
             np.sort(v["boxes_xyxy"], 0), np.sort(boxes, 0), atol=1e-6)]
  assert len(ids) == 1, (boxes, labels)
  return truth[ids[0]]


@pytest.mark.parametrize("year", ["2007", "2012"])
def test_voc_detection_boxes_labels_difficult_and_pixels(built, year):
  truth = built["truth"]["voc" + year]
  c = F.data_config(built, f"voc/{year}", "detection",
                    **{"dataset.image_size": (64, 64), "task_kwargs.max_boxes": 4})
  splits = {"train": "train", "validation": "val", "test": "test"}
  for split, tsplit in splits.items():
    ex, _ = _all_valid(c, split)
    n = sum(v["split"] == tsplit for v in truth.values())
    assert ex["image"].shape == (n, 64, 64, 3) and ex["boxes"].shape == (n, 4, 4)
    assert ex["box_labels"].dtype == np.int32 and ex["box_valid"].dtype == bool
    if tsplit == "test" and year == "2012":  # no test annotations in VOC 2012
      assert not ex["box_valid"].any()
      continue
    for i in range(n):
      v = ex["box_valid"][i]
      t = _match_voc(truth, tsplit, ex["boxes"][i][v], ex["box_labels"][i][v])
      order = [int(np.argmin(np.abs(t["boxes_xyxy"] - b).sum(1)))
               for b in ex["boxes"][i][v]]
      np.testing.assert_array_equal(ex["box_labels"][i][v], t["labels"][order])
      np.testing.assert_array_equal(ex["box_difficult"][i][v], t["difficult"][order])
      assert not ex["boxes"][i][~v].any()
      # The object is under its box: the box centre shows the object's colour
      # (JPEG, then a stretch to 64x64). Boxes are xyxy: x indexes columns.
      px = _pixels(c, ex["image"][i])
      for b, k in zip(ex["boxes"][i][v], order):
        cx, cy = int((b[0] + b[2]) / 2 * 64), int((b[1] + b[3]) / 2 * 64)
        assert np.abs(px[cy, cx] - t["colours"][k]).max() < 20


def test_voc_boxes_follow_the_object_through_ssd_augmentation(built):
  """Train pipeline with the SSD recipe: box centres stay on their object."""
  truth = built["truth"]["voc2007"]
  colours = {tuple(c) for v in truth.values() for c in v["colours"]}
  c = F.data_config(built, "voc/2007", "detection", **{
      "dataset.image_size": (96, 96), "task_kwargs.max_boxes": 4, "batch_size": 8,
      # The geometric part of the SSD recipe (colours are checked below).
      "dataset.augment": ("zoom_out", "iou_random_crop", "horizontal_flip", "resize")})
  it = spine_fixtures.train_dataset(c).as_numpy_iterator()
  checked = 0
  for _ in range(2):
    batch = next(it)
    assert batch["image"].shape == (8, 96, 96, 3)
    for img, boxes, valid in zip(batch["image"], batch["boxes"], batch["box_valid"]):
      px = _pixels(c, img)
      for b in boxes[valid]:
        assert (b >= 0).all() and (b <= 1).all() and (b[2:] > b[:2]).all()
        cx, cy = int((b[0] + b[2]) / 2 * 96), int((b[1] + b[3]) / 2 * 96)  # xyxy
        assert min(np.abs(px[cy, cx] - col).max() for col in colours) < 25
        checked += 1
  assert checked >= 8


def test_tfds_bbox_becomes_xyxy_at_the_dataset_edge():
  # TFDS BBoxFeature order (ymin, xmin, ymax, xmax) -> (xmin, ymin, xmax, ymax).
  got = datasets.from_tfds_bbox(np.array([[0.1, 0.2, 0.5, 0.9]], np.float32)).numpy()
  np.testing.assert_array_equal(got, np.array([[0.2, 0.1, 0.9, 0.5]], np.float32))
  assert datasets.from_tfds_bbox(np.zeros((0, 4), np.float32)).shape == (0, 4)


def test_largest_object_returns_the_xyxy_box_of_the_largest_by_hand():
  boxes = np.array([[0.1, 0.1, 0.3, 0.6],    # 0.2 wide x 0.5 high = 0.10
                    [0.0, 0.5, 0.6, 0.75],   # 0.6 x 0.25 = 0.15 (largest)
                    [0.5, 0.0, 0.9, 0.3]],   # 0.4 x 0.3 = 0.12
                   np.float32)
  label, box = datasets.largest_object(boxes, np.array([4, 7, 2]))
  assert int(label) == 7
  np.testing.assert_array_equal(box.numpy(), boxes[1])  # xyxy, as given
  # No box (e.g. all cropped away): label 0 and the zero box.
  label, box = datasets.largest_object(np.zeros((0, 4), np.float32),
                                       np.zeros((0,), np.int32))
  assert int(label) == 0
  np.testing.assert_array_equal(box.numpy(), np.zeros(4, np.float32))


# ---------------------------------------------------------- VOC segmentation
def test_voc_segmentation_builder_decodes_palette_indices(built):
  truth = built["truth"]["voc2012"]
  c = F.data_config(built, "voc_segmentation/2012", "segmentation")
  b = datasets.get_builder(c.dataset)
  seen = 0
  for split, tsplit in (("train", "train"), ("validation", "val")):
    for ex in tfds.as_numpy(b.as_dataset(split=split)):
      t = truth[ex["image/filename"].decode()[:-4]]
      assert t["split"] == tsplit
      np.testing.assert_array_equal(ex["segmentation_mask"][..., 0], t["mask"])
      # The stored image is the JPEG that was written, unchanged ...
      np.testing.assert_array_equal(ex["image"], F.decode_jpeg(t["jpeg"]))
      # ... and shows the drawn objects where the mask has their class.
      for cls in set(np.unique(t["mask"])) - {0, 255}:
        inner = binary_erosion(t["mask"] == cls, iterations=3)  # JPEG ringing at edges
        assert inner.any()
        assert np.abs(ex["image"][inner].astype(int) - t["image"][inner]).max() <= 25
      seen += 1
  assert seen == 5


def test_voc_segmentation_pipeline_pads_with_ignore_at_full_resolution(built):
  truth = built["truth"]["voc2012"]
  c = F.data_config(built, "voc_segmentation/2012", "segmentation",
                    **{"dataset.image_size": (64, 72)})
  ex, _ = _all_valid(c, "validation")
  assert ex["mask"].shape == (3, 64, 72) and ex["mask"].dtype == np.int32
  vals = [t for t in truth.values() if t["split"] == "val"]
  for mask, img in zip(ex["mask"], ex["image"]):
    h, w = np.argmax(mask[:, 0] == 255) or 64, np.argmax(mask[0] == 255) or 72
    match = [t for t in vals if t["mask"].shape == (h, w)
             and np.array_equal(t["mask"], mask[:h, :w])]
    assert len(match) == 1  # exact classes incl. the 255 border, not resampled
    assert (mask[h:] == 255).all() and (mask[:, w:] == 255).all()
    np.testing.assert_allclose(_pixels(c, img)[:h, :w], F.decode_jpeg(match[0]["jpeg"]),
                               atol=0.01)  # not resampled: the decoded JPEG
    # Padding is the mean pixel, i.e. zero after normalization.
    np.testing.assert_allclose(img[h:], 0.0, atol=0.01)


def test_voc_segmentation_sbd_train_aug(built):
  voc, sbd = built["truth"]["voc2012"], built["truth"]["sbd"]
  c = F.data_config(built, "voc_segmentation/2012_sbd", "segmentation")
  b = datasets.get_builder(c.dataset)
  got = {ex["image/filename"].decode()[:-4]: ex["segmentation_mask"][..., 0]
         for ex in tfds.as_numpy(b.as_dataset(split="train"))}
  voc_train = {k for k, v in voc.items() if v["split"] == "train"}
  assert set(got) == voc_train | set(sbd)  # no VOC val image leaks into train
  for k in voc_train:  # VOC's own mask (with its 255 border) wins over SBD's
    np.testing.assert_array_equal(got[k], voc[k]["mask"])
  for k in sbd:
    np.testing.assert_array_equal(got[k], sbd[k]["mask"])
  assert b.info.splits["validation"].num_examples == 3


# ---------------------------------------------------------------- Cityscapes
def _reference_train_ids(label_ids):
  """Independent reference: cityscapesScripts' label table."""
  from cityscapesscripts.helpers.labels import id2label
  lut = np.full(256, 255, np.int32)
  for i, lab in id2label.items():
    if 0 <= i < 256 and 0 <= lab.trainId < 255:
      lut[i] = lab.trainId
  return lut[label_ids]


def test_cityscapes_train_id_table_matches_cityscapesscripts():
  ids = np.arange(256, dtype=np.uint8)
  np.testing.assert_array_equal(datasets.cityscapes_train_ids(ids).numpy(),
                                _reference_train_ids(ids))
  assert (datasets.cityscapes_train_ids(ids).numpy() < 19).sum() == 19


def test_cityscapes_builder_and_pipeline(built):
  truth = built["truth"]["cityscapes"]
  c = F.data_config(built, "cityscapes/semantic_segmentation", "segmentation",
                    **{"dataset.image_size": (64, 128)})
  b = datasets.get_builder(c.dataset)
  raw = {ex["image_id"].decode(): ex for ex in tfds.as_numpy(b.as_dataset(split="train"))}
  assert set(raw) == set(F.CITYSCAPES_IMAGES["train"])
  for k, ex in raw.items():
    np.testing.assert_array_equal(ex["segmentation_label"][..., 0], truth[k]["label_ids"])
    np.testing.assert_array_equal(ex["image_left"], truth[k]["image"])
  ex, _ = _all_valid(c, "validation")
  t = truth[F.CITYSCAPES_IMAGES["val"][0]]
  # 1024x2048 -> 64x128: nearest neighbour samples input pixel 16 i + 8.
  ref = _reference_train_ids(t["label_ids"])[8::16, 8::16]
  np.testing.assert_array_equal(ex["mask"][0], ref)
  assert set(np.unique(ex["mask"])) - {255} <= set(range(19))
  assert (ex["mask"][0][:, 1000 // 16 + 1:1040 // 16] == 255).all()  # id 34 -> 255
  # Image and mask agree: the red channel encodes the label id; where the
  # bilinear samples (rows/cols 16 i + 7.5) see one band it is that band's.
  ids, red_in = t["label_ids"], t["image"][..., 0].astype(float)
  red = _pixels(c, ex["image"][0])[..., 0]
  uniform = (ids[7::16, 8::16] == ids[8::16, 8::16]) & (ids[8::16, 7::16] == ids[8::16, 8::16])
  assert uniform.mean() > 0.8
  np.testing.assert_allclose(red[uniform], red_in[8::16, 8::16][uniform], atol=1.0)


def test_cityscapes_train_pipeline_scale_jitter_crop(built):
  c = F.data_config(built, "cityscapes/semantic_segmentation", "segmentation", **{
      "dataset.image_size": (64, 128), "batch_size": 8,
      "dataset.augment": (("scale_jitter", {"min_scale": 0.5, "max_scale": 2.0,
                                            "base": "fit"}), "horizontal_flip")})
  batch = next(spine_fixtures.train_dataset(c).as_numpy_iterator())
  assert batch["image"].shape == (8, 64, 128, 3) and batch["mask"].shape == (8, 64, 128)
  assert set(np.unique(batch["mask"])) <= set(range(19)) | {255}


# ------------------------------------------------------------ missing files
def test_cityscapes_without_files_names_them_source_and_folder(tmp_path):
  c = F.data_config({"data_dir": str(tmp_path / "tfds"), "manual": {}},
                    "cityscapes/semantic_segmentation", "segmentation")
  c.dataset.manual_dir = str(tmp_path / "manual")
  with pytest.raises(sources.MissingDatasetFilesError) as e:
    datasets.prepare(c.dataset)
  msg = str(e.value)
  for s in ("leftImg8bit_trainvaltest.zip  [MISSING]", "gtFine_trainvaltest.zip  [MISSING]",
            "https://www.cityscapes-dataset.com/downloads/", str(tmp_path / "manual"),
            "config.dataset.manual_dir"):
    assert s in msg, msg


@pytest.mark.parametrize("name,files", [
    ("cifar10", ["cifar-10-binary.tar.gz"]),
    ("voc/2007", ["VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar"]),
    ("voc_segmentation/2012_sbd", ["VOCtrainval_11-May-2012.tar", "benchmark.tgz"])])
def test_failed_download_says_which_files_to_fetch(tmp_path, monkeypatch, name, files):
  from tensorflow_datasets.core.download import download_manager

  def offline(self, resource):
    raise ConnectionError(f"no network for {resource}")

  monkeypatch.setattr(download_manager.DownloadManager, "_download", offline)
  c = F.data_config({"data_dir": str(tmp_path / "tfds"), "manual": {}}, name, "segmentation")
  with pytest.raises(sources.MissingDatasetFilesError) as e:
    datasets.prepare(c.dataset)
  msg = str(e.value)
  default = os.path.join(str(tmp_path / "tfds"), "downloads", "manual")
  assert default in msg and "no network" in msg
  for f in files:
    assert f"{f}  [MISSING]" in msg
  assert isinstance(e.value.__cause__, ConnectionError)


def test_reachable_is_a_quick_connection_check():
  with socket.create_server(("127.0.0.1", 0)) as server:
    url = f"http://127.0.0.1:{server.getsockname()[1]}/cifar-10-binary.tar.gz"
    assert sources.reachable(url, timeout=2)
  t = time.time()
  assert not sources.reachable(url, timeout=2)  # the port is closed now: refused at once
  assert time.time() - t < 1.5
  assert not sources.reachable("no-scheme-no-host")


def test_can_prepare_says_whether_the_files_can_be_had(tmp_path, monkeypatch, tiny_data_dir):
  asked, online = [], [False]

  def reachable(url, timeout=5.0):
    asked.append(url)
    return online[0]

  monkeypatch.setattr(sources, "reachable", reachable)
  c = F.data_config({"data_dir": str(tmp_path / "tfds"), "manual": {}}, "cifar10",
                    "classification")
  c.dataset.manual_dir = str(tmp_path / "manual")
  assert not datasets.can_prepare(c.dataset)  # offline, the archive nowhere
  assert asked == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
  online[0] = True
  assert datasets.can_prepare(c.dataset)
  online[0], asked[:] = False, []
  (tmp_path / "manual").mkdir()
  (tmp_path / "manual" / "cifar-10-binary.tar.gz").write_bytes(b"")
  assert datasets.can_prepare(c.dataset) and not asked  # in the manual folder: no lookup
  online[0] = True
  c.dataset.name = "cityscapes/semantic_segmentation"  # manual only, files missing
  assert not datasets.can_prepare(c.dataset)
  online[0] = False
  for data_dir in (str(tmp_path / "fresh"), tiny_data_dir):  # rendered here / prepared
    c = F.data_config({"data_dir": data_dir, "manual": {}}, "digit_scenes/tiny",
                      "classification")
    assert datasets.can_prepare(c.dataset)
  assert not asked


# ------------------------------------------------------------ digit_scenes
def test_builtin_dataset_through_the_same_path(tiny_data_dir):
  c = F.data_config({"data_dir": tiny_data_dir, "manual": {}}, "digit_scenes/tiny",
                    "segmentation")
  ex, batches = _all_valid(c, "test")
  assert ex["mask"].shape == (32, 32, 32) and len(batches) == 4
  b = datasets.get_builder(c.dataset)
  raw = list(tfds.as_numpy(b.as_dataset(split="test")))
  masks = {r["segmentation_mask"][..., 0].tobytes() for r in raw}
  assert {m.astype(np.uint8).tobytes() for m in ex["mask"]} == masks


# ------------------------------------------------- joined datasets ("07+12")
def test_voc_07_plus_12_trains_on_both_and_evaluates_on_the_first(built):
  c = F.data_config(built, "voc/2007+voc/2012", "detection", batch_size=8, **{
      "dataset.image_size": (64, 64), "task_kwargs.max_boxes": 4,
      "dataset.train_split": "train+validation", "dataset.eval_split": "test"})
  sig = lambda boxes: np.round(np.sort(boxes, 0), 5).tobytes()
  it = spine_fixtures.train_dataset(c).as_numpy_iterator()
  seen = []
  for _ in range(3):
    b = next(it)
    seen += [sig(b["boxes"][i][b["box_valid"][i]]) for i in range(8)]
  expected = {sig(t["boxes_xyxy"]) for y in ("voc2007", "voc2012")
              for t in built["truth"][y].values() if t["split"] != "test"}
  assert len(expected) == 10
  assert set(seen) == expected  # every train+val image of both years
  ex, _ = _all_valid(c)
  assert len(ex["boxes"]) == 2  # VOC 2007 test only (2012 test has no labels)
  with pytest.raises(ValueError, match="one dataset family"):
    datasets.dataset_names(F.data_config(built, "voc/2007+cifar10", "detection").dataset)
