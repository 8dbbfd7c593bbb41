"""Tiny dataset archives in the exact formats the real builders read.

Each writer puts the archive(s) a builder expects into a folder (used as the
TFDS manual download folder) and returns what it wrote, so tests can compare
the builders' and pipelines' output with known pixels, labels and boxes:

* `write_cifar10`: ``cifar-10-binary.tar.gz`` (``cifar-10-batches-bin/`` with
  five ``data_batch_*.bin``, ``test_batch.bin`` and ``batches.meta.txt``;
  records of 1 label byte + 3072 bytes of R, G, B planes).
* `write_voc`: ``VOCtrainval_*.tar`` / ``VOCtest_*.tar`` / ``VOC2012test.tar``
  with a ``VOCdevkit/VOC<year>/`` tree: JPEGs, XML annotations (1-based pixel
  coordinates), ``ImageSets/{Main,Segmentation}``, palettized PNG masks in
  ``SegmentationClass`` (class ids 0-20, 255 on a 1-pixel object border) and
  ``SegmentationObject`` (index i = the XML's i-th object, same border).
* `write_sbd`: ``benchmark.tgz`` (``benchmark_RELEASE/dataset/{img,cls,inst}``
  with MATLAB ``GTcls`` / ``GTinst`` structs, ``train.txt``, ``val.txt``).
* `write_cityscapes`: ``leftImg8bit_trainvaltest.zip`` and
  ``gtFine_trainvaltest.zip`` with ``<root>/<split>/<city>/`` 1024x2048 PNGs
  named ``<city>_<seq>_<frame>_{leftImg8bit,gtFine_labelIds}.png``.

The stock TFDS builders validate manually supplied archives against the
registered checksums of the real files; `fixture_checksums` registers the
fixtures' own checksums instead (only the expected values change, the
validation itself still runs).
"""
from __future__ import annotations

import contextlib
import io
import os
import tarfile
import zipfile

import numpy as np
from PIL import Image

# ------------------------------------------------------------------ helpers


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _png(arr: np.ndarray, palette: list[int] | None = None) -> bytes:
  if palette is None:
    im = Image.fromarray(arr)
  else:  # palette indices are the values, as in VOC's SegmentationClass
    im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.astype(np.uint8).tobytes())
    im.putpalette(palette)
  buf = io.BytesIO()
  im.save(buf, format="PNG")
  return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format="JPEG", quality=95)
  return buf.getvalue()


def decode_jpeg(jpeg: bytes) -> np.ndarray:
  """The JPEG as TF decodes it (decoders differ by a few levels, e.g. PIL)."""
  import tensorflow as tf
  return tf.io.decode_jpeg(jpeg, channels=3).numpy()


@contextlib.contextmanager
def fixture_checksums(folder: str):
  """Registers the checksums of the archives in ``folder`` for their URLs.

  TFDS picks a manually supplied file up by the file name registered for a
  URL and then validates its size and sha256; real archives pass, fixtures
  need their own values registered. Patched for the duration only.
  """
  import pytest
  from tensorflow_datasets.core.download import checksums, download_manager
  ours = {}
  for url, info in checksums.get_all_url_infos().items():
    if info.filename and os.path.exists(os.path.join(folder, info.filename)):
      ours[url] = checksums.compute_url_info(os.path.join(folder, info.filename))
  cls = download_manager.DownloadManager
  original = cls.__init__

  def init(self, *args, **kwargs):
    original(self, *args, **kwargs)
    self._url_infos.update(ours)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(cls, "__init__", init)
    yield ours


# ------------------------------------------------------------------ CIFAR-10
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
               "horse", "ship", "truck"]


def write_cifar10(folder: str, per_batch: int = 2, num_test: int = 4, seed: int = 0):
  """Returns {'train': (images [N,32,32,3] uint8, labels [N]), 'test': ...}."""
  rng = np.random.default_rng(seed)
  out = {}
  os.makedirs(folder, exist_ok=True)
  with tarfile.open(os.path.join(folder, "cifar-10-binary.tar.gz"), "w:gz") as tar:
    batches = [(f"data_batch_{i}.bin", per_batch, "train") for i in range(1, 6)]
    batches.append(("test_batch.bin", num_test, "test"))
    for name, n, split in batches:
      images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
      labels = rng.integers(0, 10, n).astype(np.uint8)
      records = [bytes([int(l)]) + img.transpose(2, 0, 1).tobytes()
                 for img, l in zip(images, labels)]
      _add_bytes(tar, "cifar-10-batches-bin/" + name, b"".join(records))
      prev = out.get(split, (np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.uint8)))
      out[split] = (np.concatenate([prev[0], images]), np.concatenate([prev[1], labels]))
    _add_bytes(tar, "cifar-10-batches-bin/batches.meta.txt",
               ("\n".join(CIFAR_NAMES) + "\n\n").encode())
  return out


# ---------------------------------------------------------------- PASCAL VOC
VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike",
               "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def voc_palette() -> list[int]:
  """The VOC devkit colour map (labelcolormap.m), 256 RGB entries."""
  pal = []
  for i in range(256):
    r = g = b = 0
    c = i
    for j in range(8):
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    pal += [r, g, b]
  return pal


def voc_image(image_id: str, h: int, w: int, objects: list[dict], bg=(70, 80, 90),
              instances: bool = False):
  """Image, class-id mask (255 border) for solid rectangles, and with
  ``instances`` the object-index mask (i + 1 on ``objects[i]``, same border)
  as a third value.

  ``objects``: dicts with ``cls`` (1-based VOC class id), ``rows`` (r0, r1)
  and ``cols`` (c0, c1), 0-based inclusive, and a ``colour``.
  """
  img = np.empty((h, w, 3), np.uint8)
  img[:] = bg
  mask = np.zeros((h, w), np.uint8)
  ids = np.zeros((h, w), np.uint8)
  for o in objects:
    (r0, r1), (c0, c1) = o["rows"], o["cols"]
    mask[max(r0 - 1, 0):r1 + 2, max(c0 - 1, 0):c1 + 2] = 255  # VOC's void border
    ids[max(r0 - 1, 0):r1 + 2, max(c0 - 1, 0):c1 + 2] = 255
  for i, o in enumerate(objects):
    (r0, r1), (c0, c1) = o["rows"], o["cols"]
    img[r0:r1 + 1, c0:c1 + 1] = o["colour"]
    mask[r0:r1 + 1, c0:c1 + 1] = o["cls"]
    ids[r0:r1 + 1, c0:c1 + 1] = i + 1
  return (img, mask, ids) if instances else (img, mask)


def voc_xml(image_id: str, year: str, h: int, w: int, objects: list[dict]) -> bytes:
  """A VOC annotation: 1-based inclusive pixel coordinates, as the devkit's."""
  objs = "".join(
      f"<object><name>{VOC_CLASSES[o['cls'] - 1]}</name><pose>{o.get('pose', 'Unspecified')}"
      f"</pose><truncated>0</truncated><difficult>{int(o.get('difficult', False))}"
      f"</difficult><bndbox><xmin>{o['cols'][0] + 1}</xmin><ymin>{o['rows'][0] + 1}</ymin>"
      f"<xmax>{o['cols'][1] + 1}</xmax><ymax>{o['rows'][1] + 1}</ymax></bndbox></object>"
      for o in objects)
  return (f"<annotation><folder>VOC{year}</folder><filename>{image_id}.jpg</filename>"
          f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
          f"<segmented>1</segmented>{objs}</annotation>").encode()


def _voc_examples(year: str) -> dict[str, dict]:
  """id -> {h, w, objects, sets}; sizes vary as in the real data."""
  y = year
  ex = {
      f"{y}_000001": dict(h=40, w=56, sets=("train",), objects=[
          dict(cls=12, rows=(5, 24), cols=(8, 30), colour=(250, 20, 20)),
          dict(cls=15, rows=(20, 35), cols=(36, 50), colour=(20, 240, 30), difficult=True)]),
      f"{y}_000002": dict(h=48, w=36, sets=("train",), objects=[
          dict(cls=1, rows=(10, 40), cols=(4, 28), colour=(30, 30, 250))]),
      f"{y}_000003": dict(h=32, w=64, sets=("val",), objects=[
          dict(cls=7, rows=(2, 20), cols=(3, 40), colour=(240, 240, 20)),
          dict(cls=20, rows=(22, 30), cols=(45, 60), colour=(20, 230, 230))]),
      f"{y}_000004": dict(h=44, w=44, sets=("val",), objects=[
          dict(cls=3, rows=(12, 30), cols=(12, 30), colour=(230, 30, 230))]),
      f"{y}_000005": dict(h=36, w=50, sets=("val",), objects=[
          dict(cls=9, rows=(3, 15), cols=(30, 46), colour=(250, 130, 20))]),
      f"{y}_000006": dict(h=40, w=40, sets=("test",), objects=[
          dict(cls=5, rows=(4, 30), cols=(6, 20), colour=(140, 20, 250))]),
      f"{y}_000007": dict(h=30, w=46, sets=("test",), objects=[
          dict(cls=17, rows=(6, 22), cols=(10, 40), colour=(20, 150, 90))]),
  }
  if year == "2012":  # one row lower than 2007's, so the years differ
    for e in ex.values():
      for o in e["objects"]:
        o["rows"] = (o["rows"][0] + 1, o["rows"][1] + 1)
  return ex


def _scaled(e: dict, k: int) -> dict:
  objs = [{**o, "rows": (o["rows"][0] * k, o["rows"][1] * k + k - 1),
           "cols": (o["cols"][0] * k, o["cols"][1] * k + k - 1)} for o in e["objects"]]
  return {**e, "h": e["h"] * k, "w": e["w"] * k, "objects": objs}


def write_voc(folder: str, year: str, scale: int = 1) -> dict[str, dict]:
  """Writes the trainval and test tars of VOC ``year`` ('2007' or '2012').

  ``scale`` enlarges every image (benchmarks: ``scale=10`` gives VOC's
  real 300-640 pixel sizes).

  Returns id -> dict(image (as drawn), jpeg (bytes written), mask, boxes
  (normalized as TFDS computes them: 1-based coordinate / size, in the TFDS
  record's (ymin, xmin, ymax, xmax) order), boxes_xyxy (the same values in the
  (xmin, ymin, xmax, ymax) order the pipeline yields), labels (0-based),
  difficult, split, colours).
  """
  os.makedirs(folder, exist_ok=True)
  root = f"VOCdevkit/VOC{year}/"
  names = {"2007": ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar"),
           "2012": ("VOCtrainval_11-May-2012.tar", "VOC2012test.tar")}[year]
  examples = {k: _scaled(e, scale) for k, e in _voc_examples(year).items()}
  palette = voc_palette()
  truth = {}
  trainval = tarfile.open(os.path.join(folder, names[0]), "w")
  test = tarfile.open(os.path.join(folder, names[1]), "w")
  sets = {"train": [], "val": [], "test": []}
  for image_id, e in examples.items():
    split = e["sets"][0]
    tar = test if split == "test" else trainval
    img, mask, inst = voc_image(image_id, e["h"], e["w"], e["objects"], instances=True)
    jpeg = _jpeg(img)
    _add_bytes(tar, root + f"JPEGImages/{image_id}.jpg", jpeg)
    if year == "2007" or split != "test":  # VOC 2012 test has no annotations
      _add_bytes(tar, root + f"Annotations/{image_id}.xml",
                 voc_xml(image_id, year, e["h"], e["w"], e["objects"]))
    if split != "test":
      _add_bytes(tar, root + f"SegmentationClass/{image_id}.png", _png(mask, palette))
      _add_bytes(tar, root + f"SegmentationObject/{image_id}.png", _png(inst, palette))
    sets[split].append(image_id)
    h, w = e["h"], e["w"]
    truth[image_id] = dict(
        image=img, jpeg=jpeg, mask=mask.astype(np.int32), split=split,
        instances=inst.astype(np.int32), objects=e["objects"],
        boxes=np.array([[(o["rows"][0] + 1) / h, (o["cols"][0] + 1) / w,
                         (o["rows"][1] + 1) / h, (o["cols"][1] + 1) / w]
                        for o in e["objects"]], np.float32),
        # Written out from the drawn rows/cols again (not a permutation of
        # ``boxes``): the reference for canonical xyxy examples.
        boxes_xyxy=np.array([[(o["cols"][0] + 1) / w, (o["rows"][0] + 1) / h,
                              (o["cols"][1] + 1) / w, (o["rows"][1] + 1) / h]
                             for o in e["objects"]], np.float32),
        labels=np.array([o["cls"] - 1 for o in e["objects"]]),
        difficult=np.array([bool(o.get("difficult", False)) for o in e["objects"]]),
        colours=[o["colour"] for o in e["objects"]])
  lines = lambda ids: ("\n".join(ids) + "\n").encode()
  for name in ("train", "val"):
    _add_bytes(trainval, root + f"ImageSets/Main/{name}.txt", lines(sets[name]))
    _add_bytes(trainval, root + f"ImageSets/Segmentation/{name}.txt", lines(sets[name]))
  _add_bytes(trainval, root + "ImageSets/Main/trainval.txt", lines(sets["train"] + sets["val"]))
  _add_bytes(test, root + "ImageSets/Main/test.txt", lines(sets["test"]))
  trainval.close()
  test.close()
  return truth


def write_sbd(folder: str, voc_truth: dict[str, dict]) -> dict[str, dict]:
  """``benchmark.tgz``: three SBD-only images plus two that VOC also has.

  One shares an id with a VOC train image (its VOC mask must win), one with a
  VOC val image (it must stay out of train_aug). The first image has one
  instance, the others two of the same class (``GTinst`` written as SBD's:
  ``Segmentation`` uint8 id map, ``Boundaries`` a K x 1 cell of sparse
  matrices, ``Categories`` K x 1). Returns the SBD-only ones.
  """
  from scipy import sparse
  from scipy.io import savemat
  os.makedirs(folder, exist_ok=True)
  root = "benchmark_RELEASE/dataset/"
  voc_train = sorted(k for k, v in voc_truth.items() if v["split"] == "train")
  voc_val = sorted(k for k, v in voc_truth.items() if v["split"] == "val")
  truth = {}
  with tarfile.open(os.path.join(folder, "benchmark.tgz"), "w:gz") as tar:
    ids = [f"2011_00000{i}" for i in range(1, 4)] + [voc_train[0], voc_val[0]]
    for k, image_id in enumerate(ids):
      h, w = 30 + 2 * k, 40
      objects = [dict(cls=k + 2, rows=(5, 20), cols=(5 + k, 30), colour=(200, 40 * k, 90)),
                 dict(cls=k + 2, rows=(23, 27), cols=(8, 36), colour=(20, 200, 40 * k))]
      objects = objects[:1 + (k > 0)]
      img, mask, inst = voc_image(image_id, h, w, objects, instances=True)
      mask[mask == 255] = 0  # SBD masks have no void border
      inst[inst == 255] = 0
      buf = io.BytesIO()
      savemat(buf, {"GTcls": {"Segmentation": mask, "Boundaries": np.zeros((1, 20)),
                              "CategoriesPresent": np.array([k + 2], np.uint8)}})
      _add_bytes(tar, root + f"cls/{image_id}.mat", buf.getvalue())
      bounds = np.empty((len(objects), 1), object)
      for i in range(len(objects)):
        bounds[i, 0] = sparse.csc_matrix((inst == i + 1).astype(np.uint8))
      buf = io.BytesIO()
      savemat(buf, {"GTinst": {"Segmentation": inst, "Boundaries": bounds,
                               "Categories": np.array([[o["cls"]] for o in objects],
                                                      np.uint8)}})
      _add_bytes(tar, root + f"inst/{image_id}.mat", buf.getvalue())
      jpeg = _jpeg(img)
      _add_bytes(tar, root + f"img/{image_id}.jpg", jpeg)
      if image_id.startswith("2011"):
        truth[image_id] = dict(image=img, jpeg=jpeg, mask=mask.astype(np.int32),
                               instances=inst.astype(np.int32), objects=objects)
    _add_bytes(tar, root + "train.txt", "\n".join(ids[:3] + ids[4:]).encode())
    _add_bytes(tar, root + "val.txt", (ids[3] + "\n").encode())
  return truth


# ---------------------------------------------------------------- Cityscapes
CITYSCAPES_IMAGES = {"train": ["aachen_000000_000019", "aachen_000001_000019"],
                     "val": ["frankfurt_000000_000294"],
                     "test": ["berlin_000000_000019"]}


def cityscapes_label_ids(k: int) -> np.ndarray:
  """[1024, 2048] uint8 label ids: 30-row bands cycling over ids 0..33, plus
  a 34 and a 255 stripe (not Cityscapes ids: must map to 255)."""
  rows = (np.arange(1024) // 30 + k) % 34
  ids = np.repeat(rows[:, None], 2048, 1).astype(np.uint8)
  ids[:, 1000:1040] = 34
  ids[:, 1500:1520] = 255
  return ids


def write_cityscapes(folder: str) -> dict[str, dict]:
  """Writes both zips; returns image id -> dict(image, label_ids, split)."""
  os.makedirs(folder, exist_ok=True)
  truth = {}
  with zipfile.ZipFile(os.path.join(folder, "leftImg8bit_trainvaltest.zip"), "w") as left, \
       zipfile.ZipFile(os.path.join(folder, "gtFine_trainvaltest.zip"), "w") as gt:
    left.writestr("README", "Cityscapes leftImg8bit (test fixture)\n")
    gt.writestr("README", "Cityscapes gtFine (test fixture)\n")
    k = 0
    for split, ids in CITYSCAPES_IMAGES.items():
      for image_id in ids:
        city = image_id.split("_")[0]
        ids_map = cityscapes_label_ids(k)
        # The image encodes its label id (red) and column block (green).
        img = np.stack([ids_map * 7, np.broadcast_to((np.arange(2048) // 64 * 8)
                                                     .astype(np.uint8), ids_map.shape),
                        np.full_like(ids_map, 40 * k)], -1).astype(np.uint8)
        left.writestr(f"leftImg8bit/{split}/{city}/{image_id}_leftImg8bit.png", _png(img))
        gt.writestr(f"gtFine/{split}/{city}/{image_id}_gtFine_labelIds.png", _png(ids_map))
        gt.writestr(f"gtFine/{split}/{city}/{image_id}_gtFine_polygons.json",
                    '{"imgHeight": 1024, "imgWidth": 2048, "objects": []}')
        truth[image_id] = dict(image=img, label_ids=ids_map, split=split)
        k += 1
  return truth


# ------------------------------------------------- all datasets, built once
MANUAL = {"cifar10": "cifar10", "voc/2007": "voc2007", "voc/2012": "voc2012",
          "voc_segmentation/2012": "voc2012", "voc_segmentation/2012_sbd": "voc2012",
          "cityscapes/semantic_segmentation": "cityscapes"}
_BUILT: dict = {}


def real_datasets(tmp_path_factory) -> dict:
  """Writes every fixture archive and runs each real builder on it, once per
  test process. Returns {'data_dir', 'manual': {name: folder}, 'truth': ...}."""
  if _BUILT:
    return _BUILT
  import ml_collections
  import tensorflow_datasets as tfds

  from visionjax.data import datasets
  tfds.disable_progress_bar()
  root = str(tmp_path_factory.mktemp("real_data"))
  m = lambda k: os.path.join(root, "manual", k)
  truth = {"cifar10": write_cifar10(m("cifar10")),
           "voc2007": write_voc(m("voc2007"), "2007"),
           "voc2012": write_voc(m("voc2012"), "2012"),
           "cityscapes": write_cityscapes(m("cityscapes"))}
  truth["sbd"] = write_sbd(m("voc2012"), truth["voc2012"])
  data_dir = os.path.join(root, "tfds")
  for name, folder in MANUAL.items():
    dc = ml_collections.ConfigDict(dict(name=name, data_dir=data_dir, manual_dir=m(folder)))
    with fixture_checksums(m(folder)):
      datasets.prepare(dc)
  _BUILT.update(data_dir=data_dir, manual={k: m(v) for k, v in MANUAL.items()},
                truth=truth)
  return _BUILT


def data_config(built: dict, name: str, task: str, **overrides):
  """The spine's tiny test config, reading dataset ``name`` from the
  prepared fixtures (batch 8: one example per virtual device)."""
  from spine_fixtures import tiny_config
  return tiny_config(built["data_dir"], task, **{
      "dataset.name": name, "dataset.manual_dir": built["manual"].get(name),
      "batch_size": 8, "eval_batch_size": 8, **overrides})


def load_config(name: str):
  """``get_config()`` of ``experiments/configs/<name>.py``."""
  import importlib.util
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "experiments", "configs", name + ".py")
  spec = importlib.util.spec_from_file_location(name, path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()
