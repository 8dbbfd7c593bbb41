"""TFDS builders for your own data (``config.dataset.path``).

``config.dataset.name`` picks the layout (`visionjax.data.own_formats`
describes each), ``config.dataset.path`` the folder (local or ``gs://``):

  image_folder  classification        -> features of ``cifar10``
  mask_folder   segmentation          -> features of ``voc_segmentation``
  coco_json     detection/localization -> features of ``voc``, plus
                instance masks (``instance_mask``, ``objects/instance``)
  voc_xml       detection/localization -> features of ``voc``

Each is a real TFDS builder: the folder is read, checked and written once
into ``data_dir`` (``<data_dir>/own_<layout>/<folder name>_<hash of its
path>/``), then read like the built-in data, so sharding per host,
deterministic order, resuming and padded evaluation are the same. Features
match the stock builders named above, so the same canonical functions in
`visionjax.data.datasets` serve them.

Class names come from the folder names (or ``classes.txt``), ``classes.txt``
(masks), the COCO categories (sorted by id: ids 1, 3, 7 become classes 0, 1,
2) or the VOC names, and are stored with the prepared copy (its
``metadata.json``), so a run can be evaluated or predicted from where the
source folder is gone. A source folder that changed after preparing (files
added, removed or resized) is refused rather than silently served stale.

Splits: the split folders/files of the layout; without them everything is
``train``, and a fraction is a TFDS slice: ``train_split='train[:80%]'``,
``eval_split='train[80%:]'`` (TFDS stores examples in an order hashed from
their keys, so a slice is a fixed pseudo-random subset).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import re
from typing import Any

from etils import epath
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from visionjax import paths
from visionjax.data import own_formats
from visionjax.data.own_formats import OwnDataError

IGNORE = 255  # the canonical mask's ignore value


@dataclasses.dataclass
class OwnDataConfig(tfds.core.BuilderConfig):
  path: str = ""
  ignore_value: int = IGNORE


def read_image(path: epath.Path) -> tuple[Any, tuple[int, int]]:
  """``(what the Image feature stores, (width, height))``: a JPEG or PNG file's
  own bytes (TensorFlow decodes them to RGB), other formats and colour modes
  converted to RGB by PIL. An unreadable file raises `OwnDataError`."""
  from PIL import Image
  try:
    data = path.read_bytes()
  except OSError as e:
    raise OwnDataError(f"{path}: cannot read the image ({type(e).__name__}: {e})") from None
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()  # decodes every pixel: a truncated file fails here, not in training
      if (im.format, im.mode) in {("JPEG", "L"), ("JPEG", "RGB"), ("PNG", "L"), ("PNG", "LA"),
                                  ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P")}:
        return data, im.size
      return np.asarray(im.convert("RGB")), im.size
  except (OSError, SyntaxError, ValueError) as e:
    raise OwnDataError(f"{path}: unreadable image ({type(e).__name__}: {e}); expected a "
                       "JPEG, PNG, BMP, GIF, WebP or TIFF file") from None


def read_mask(path: epath.Path, num_classes: int, ignore_value: int) -> np.ndarray:
  """Class ids [H, W] uint8 (255 = ignore) of a palette ('P': its indices) or
  single-channel PNG; other values than 0..num_classes-1 and ``ignore_value``
  raise `OwnDataError` naming the file and the value."""
  from PIL import Image
  try:
    with Image.open(io.BytesIO(path.read_bytes())) as im:
      if im.mode not in ("P", "L", "1", "I", "I;16"):
        raise OwnDataError(f"{path}: mask is a {im.mode!r} image; expected a palette ('P') or "
                           "single-channel ('L') PNG whose values are class ids")
      ids = np.asarray(im).astype(np.int64)
  except (OSError, SyntaxError, ValueError) as e:
    if isinstance(e, OwnDataError):
      raise
    raise OwnDataError(f"{path}: unreadable mask ({type(e).__name__}: {e}); expected a "
                       "PNG of class ids") from None
  values = np.unique(ids)
  bad = values[(values >= num_classes) & (values != ignore_value) | (values < 0)]
  if bad.size:
    raise OwnDataError(f"{path}: unknown class id {int(bad[0])}; expected 0..{num_classes - 1} "
                       f"(classes.txt) or {ignore_value} (ignore)")
  out = np.where(ids == ignore_value, IGNORE, ids)
  return out.astype(np.uint8)


def _rel(path: epath.Path, root: epath.Path) -> str:
  return str(path.relative_to(root)) if str(path).startswith(str(root)) else str(path)


class _OwnBuilder(tfds.core.GeneratorBasedBuilder):
  """Shared by the four layouts: the source read once per builder, the class
  names from it (or, once prepared, from the prepared copy)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  LAYOUT = ""

  @property
  def root(self) -> epath.Path:
    return epath.Path(self.builder_config.path)

  @functools.cached_property
  def source(self) -> tuple[tuple[str, ...], own_formats.Splits]:
    if not self.root.is_dir():
      raise OwnDataError(f"{self.root}: no such folder; expected a {self.LAYOUT} dataset there "
                         "(config.dataset.path), not prepared yet under data_dir")
    return own_formats.READERS[self.LAYOUT](self.root)

  def _prepared(self) -> bool:
    # `info` is not built yet when `_info` asks, so not `is_prepared()`.
    return (self.data_path / "dataset_info.json").exists()

  @property
  def class_names(self) -> tuple[str, ...]:
    return tuple(self.info.metadata["class_names"])

  def _features(self, names: tuple[str, ...] | None) -> dict[str, Any]:
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    # Prepared: names and fingerprint come back from its metadata.json and
    # label files (`read_from_directory`); the source may be gone.
    names = None if self._prepared() else self.source[0]
    metadata = tfds.core.MetadataDict()
    if names is not None:
      metadata["class_names"] = list(names)
    return tfds.core.DatasetInfo(
        builder=self, description=f"Your own data: {self.LAYOUT} at {self.root}",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "image/filename": tfds.features.Text(), **self._features(names)}),
        metadata=metadata)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    count, digest = own_formats.fingerprint(self.root, epath.Path(self._data_dir_root))
    self.info.metadata.update(source_files=count, source_fingerprint=digest)
    return {split: self._generate_examples(examples)
            for split, examples in self.source[1].items()}

  def _generate_examples(self, examples):
    for ex in examples:
      image, size = read_image(ex["image"])
      yield _rel(ex["image"], self.root), {
          "image": image, "image/filename": _rel(ex["image"], self.root),
          **self._annotations(ex, size)}

  def _annotations(self, ex: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    raise NotImplementedError


class OwnImageFolder(_OwnBuilder):
  """Classification from one folder per class."""
  LAYOUT = "image_folder"

  def _features(self, names):
    return {"label": tfds.features.ClassLabel(names=names)}

  def _annotations(self, ex, size):
    return {"label": ex["label"]}


class OwnMaskFolder(_OwnBuilder):
  """Segmentation from images/ + masks/ and classes.txt."""
  LAYOUT = "mask_folder"

  def _features(self, names):
    return {"segmentation_mask": tfds.features.Image(shape=(None, None, 1),
                                                     encoding_format="png")}

  def _annotations(self, ex, size):
    mask = read_mask(ex["mask"], len(self.class_names), self.builder_config.ignore_value)
    w, h = size
    if mask.shape != (h, w):
      raise OwnDataError(f"{ex['mask']}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                         f"{ex['image']} is {w}x{h}; expected the same size")
    return {"segmentation_mask": mask[..., None]}


class _OwnBoxes(_OwnBuilder):
  """Detection: boxes as the stock ``voc`` builder stores them."""

  def _features(self, names):
    return {"objects": tfds.features.Sequence({
        "bbox": tfds.features.BBoxFeature(),
        "label": tfds.features.ClassLabel(names=names),
        "is_difficult": np.bool_})}

  def _annotations(self, ex, size):
    if tuple(ex["size"]) != tuple(size):
      raise OwnDataError(f"{ex['source']}: annotation says the image is "
                         f"{ex['size'][0]}x{ex['size'][1]} but {ex['image']} is "
                         f"{size[0]}x{size[1]}; expected the same size")
    w, h = size
    bbox = []
    for k, box in enumerate(ex["boxes"]):
      x1, y1, x2, y2 = own_formats.check_box(box, w, h, f"{ex['source']} object {k}")
      bbox.append(tfds.features.BBox(ymin=y1, xmin=x1, ymax=y2, xmax=x2))
    return {"objects": {"bbox": bbox, "label": np.asarray(ex["labels"], np.int64),
                        "is_difficult": np.asarray(ex["difficult"], bool)}}


class OwnCocoJson(_OwnBoxes):
  """Detection and instance segmentation from COCO instances files.

  Besides the boxes, each image gets ``instance_mask`` (uint8 [H, W]) and
  each object ``instance``, its id in that map (0: no mask). Masks are the
  ``segmentation`` polygons or RLE (compressed or not) rasterized as
  pycocotools does (`visionjax.data.coco_masks`). Objects with a usable
  mask get ids 1, 2, ... in annotation order and are drawn in that order,
  so where masks overlap the later object wins (a limitation of one id map
  per image: the earlier object loses those pixels). ``iscrowd`` objects
  get no id (``instance`` 0, ``is_difficult`` as before): their pixels are
  255 (void), drawn first, so an object drawn over a crowd region keeps its
  pixels: COCO's evaluator ignores crowd regions rather than scoring them.
  """
  LAYOUT = "coco_json"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "Adds instance_mask and objects/instance (COCO segmentation)."}

  def _features(self, names):
    return {"objects": tfds.features.Sequence({
                "bbox": tfds.features.BBoxFeature(),
                "label": tfds.features.ClassLabel(names=names),
                "is_difficult": np.bool_,
                "instance": tfds.features.Scalar(dtype=np.int32)}),
            "instance_mask": tfds.features.Image(shape=(None, None, 1),
                                                 encoding_format="png")}

  def _annotations(self, ex, size):
    out = super()._annotations(ex, size)
    ids, instances = instance_map(ex, size)
    out["objects"]["instance"] = instances
    out["instance_mask"] = ids[..., None]
    return out


MAX_INSTANCES = 254  # ids 1..254 in a uint8 map; 255 = void


def instance_map(ex: dict[str, Any], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """``(ids uint8 [H, W], instance int32 [N])`` of a COCO example (see
  `OwnCocoJson`); a malformed segmentation raises `OwnDataError` naming the
  annotation."""
  from visionjax.data import coco_masks
  w, h = size
  ids = np.zeros((h, w), np.uint8)
  instance = np.zeros(len(ex["segmentations"]), np.int32)
  masks = []
  for k, segm in enumerate(ex["segmentations"]):
    where = f"{ex['source']} annotation id {ex['annotation_ids'][k]}"
    try:
      masks.append(coco_masks.segmentation_mask(segm, h, w))
    except ValueError as e:
      raise OwnDataError(f"{where}: bad segmentation ({e})") from None
  crowd = np.asarray(ex["difficult"], bool)
  for k in np.flatnonzero(crowd):
    if masks[k] is not None:
      ids[masks[k]] = 255
  next_id = 1
  for k in np.flatnonzero(~crowd):
    if masks[k] is None:
      continue
    if next_id > MAX_INSTANCES:
      raise OwnDataError(f"{ex['source']}: more than {MAX_INSTANCES} objects with masks; "
                         f"expected at most {MAX_INSTANCES} per image (uint8 instance ids)")
    ids[masks[k]] = next_id
    instance[k] = next_id
    next_id += 1
  return ids, instance


class OwnVocXml(_OwnBoxes):
  """Detection from VOC-style XML folders."""
  LAYOUT = "voc_xml"


BUILDERS = {b.LAYOUT: b for b in (OwnImageFolder, OwnMaskFolder, OwnCocoJson, OwnVocXml)}


def make_builder(dc: ml_collections.ConfigDict) -> _OwnBuilder:
  """The builder of ``dc.name`` (a layout) reading ``dc.path``.

  Its config name is the folder's name plus a hash of its full path (and of
  ``ignore_value`` for masks), so each folder is prepared once into its own
  place under ``data_dir``.
  """
  layout = dc.name
  if not dc.get("path"):
    raise ValueError(f"dataset {layout!r} reads your own data: set config.dataset.path to "
                     "its folder (local or gs://)")
  root = paths.resolve(dc.path)
  ignore = IGNORE if dc.get("ignore_value") is None else int(dc.ignore_value)
  key = f"{root}|{ignore}" if layout == "mask_folder" else str(root)
  slug = re.sub(r"[^A-Za-z0-9]+", "_", root.name).strip("_")[:40] or "data"
  config = OwnDataConfig(name=f"{slug}_{hashlib.sha1(key.encode()).hexdigest()[:10]}",
                         path=str(root), ignore_value=ignore,
                         description=f"{layout} at {root}")
  builder = BUILDERS[layout](config=config, data_dir=dc.get("data_dir"))
  if builder.is_prepared() and root.exists():
    saved = builder.info.metadata.get("source_fingerprint")
    count, digest = own_formats.fingerprint(root, epath.Path(builder._data_dir_root))
    if saved is not None and saved != digest:
      raise OwnDataError(
          f"{root} changed (a file added, removed or resized) since it was prepared into "
          f"{builder.data_path} "
          f"({builder.info.metadata.get('source_files')} files then, {count} now); delete "
          "that folder to prepare it again")
  if layout == "mask_folder" and ignore < len(builder.class_names):
    raise OwnDataError(f"config.dataset.ignore_value={ignore} is class "
                       f"{builder.class_names[ignore]!r} of {root / 'classes.txt'}; expected "
                       f"a value >= {len(builder.class_names)} (255 by default)")
  return builder
