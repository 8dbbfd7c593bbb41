"""Dataset registry: TFDS features -> the canonical example layout.

Canonical example (all tensors; keys present as the dataset provides them):
  image       uint8 [H, W, 3]
  label       int   []        image-level class
  mask        int32 [H, W]    per-pixel class, 255 = ignore
  boxes       float32 [N, 4]  normalized (x1, y1, x2, y2): 'xyxy', the package
                              convention (`visionjax.ops.boxes`)
  box_labels  int32 [N]
  box_difficult bool [N]      (VOC) excluded from evaluation
  instances   int32 [H, W]    per-pixel instance id: 0 = background / no
                              instance, 1..254 = an instance, 255 = void
                              (part of no instance: VOC's boundary band)
  box_instance int32 [N]      the id in ``instances`` of box k's mask (same
                              order as ``boxes``); 0 = this box has no mask

Instance masks (annotation kind ``'instances'``): object k's binary mask is
``instances == box_instance[k]`` where ``box_instance[k] > 0``. Spatial
transforms treat ``instances`` like ``mask`` (nearest neighbour, the same
crop/flip/scale/pad) but pad it with 0, and ``box_instance`` is a ``box_*``
key, so it is filtered with the boxes when augmentation drops some and padded
with 0 to ``max_boxes`` (`visionjax.data.transforms`). A dataset with this
kind lists ``num_classes['instances']`` / ``class_names['instances']`` equal
to its box classes (no background class: the task adds it). The
instance-segmentation batch carries ``image``, ``boxes``, ``box_labels``,
``box_valid``, ``instances`` [B, H, W] and ``box_instance`` [B, G]; the
per-object masks are built on device as ``(instances[b] ==
box_instance[b, g]) & (box_instance[b, g] > 0)``. Where objects overlap, an
id map keeps one id per pixel (which one wins is the reader's to say).

TFDS's `BBoxFeature` stores boxes as normalized (ymin, xmin, ymax, xmax);
the canonical functions below convert them (`from_tfds_bbox`), so this is
the only place that format is seen: everything downstream is xyxy.

Each dataset family (the TFDS name before ``/``) registers a `DatasetAdapter`
in `DATASETS`, saying which annotation kinds it has (``label``, ``mask``,
``boxes``, ``instances``) and their classes; a task (`visionjax.tasks`) names the kind it
trains on. An unknown name raises an error listing the known ones.

Datasets (``config.dataset.name``; ``a+b`` trains on the train split of
both configs of one family and evaluates on the first, e.g.
``voc/2007+voc/2012`` with ``train_split='train+validation'`` is SSD's
"07+12" and evaluates on VOC 2007 test):
  digit_scenes/{scenes64,digits32,tiny}  built in, nothing to download
  cifar10                                stock TFDS builder
  voc/2007, voc/2012                     stock TFDS builders (boxes)
  voc_segmentation/{2012,2012_sbd}       `visionjax.data.voc_segmentation`
                                         (masks, instances, boxes)
  cityscapes/semantic_segmentation       stock TFDS builder (manual download)
  image_folder, mask_folder,             your own data in ``config.dataset.path``
  coco_json, voc_xml                     (`visionjax.data.own_data`; coco_json
                                         also instances)

Where the archives come from and how a builder is prepared from them:
`visionjax.data.sources`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from visionjax.data.sources import SourceFile, can_prepare_builder, prepare_builder

ANNOTATIONS = ("label", "mask", "boxes", "instances")

Example = dict[str, tf.Tensor]


@dataclasses.dataclass(frozen=True)
class DatasetAdapter:
  """What the pipeline needs to know about one dataset family."""
  canonical: Callable[[dict], Example]
  # Classes per annotation kind ('label', 'mask', 'boxes'); a task needs one
  # kind (`visionjax.tasks`), and kinds missing here are not annotated.
  num_classes: dict[str, int]
  class_names: dict[str, tuple[str, ...]]
  # Builder-module import that registers a custom TFDS builder, if any.
  register: Callable[[], None] | None = None
  # Builder config name (None: default) -> the archives it reads.
  sources: Callable[[str | None], tuple[SourceFile, ...]] = lambda config: ()
  # True when TFDS cannot download the files (registration needed).
  manual_only: bool = False
  # The builder feature that becomes the canonical ``image``.
  image_key: str = "image"
  # Your own data: the builder is made from the config (``dataset.path``) and
  # knows the class names (``builder.class_names``, the same for every kind
  # in ``kinds``); ``num_classes`` and ``class_names`` stay empty.
  make_builder: Callable[[ml_collections.ConfigDict], tfds.core.DatasetBuilder] | None = None
  kinds: tuple[str, ...] = ()


def from_tfds_bbox(bbox: tf.Tensor) -> tf.Tensor:
  """TFDS `BBoxFeature` boxes [N, 4] (ymin, xmin, ymax, xmax) -> normalized
  xyxy [N, 4] float32 (the canonical ``boxes``)."""
  bbox = tf.reshape(tf.cast(bbox, tf.float32), [-1, 4])
  return tf.gather(bbox, [1, 0, 3, 2], axis=1)


# ------------------------------------------------------------- digit_scenes
def _digit_scenes(f: dict) -> Example:
  n = tf.shape(f["objects"]["label"])[0]
  ex = {
      "image": f["image"],
      "label": f["label"],
      "mask": tf.cast(f["segmentation_mask"][..., 0], tf.int32),
      "boxes": from_tfds_bbox(f["objects"]["bbox"]),
      "box_labels": tf.cast(f["objects"]["label"], tf.int32),
      "box_difficult": tf.zeros_like(f["objects"]["label"], tf.bool),
  }
  if "instance_mask" in f:  # 1.1.0, and read only for instance segmentation
    # Object k's digit has id k + 1 in the instance map (`scenes.render_scene`).
    ex["instances"] = tf.cast(f["instance_mask"][..., 0], tf.int32)
    ex["box_instance"] = tf.range(1, n + 1, dtype=tf.int32)
  return ex


def _register_digit_scenes() -> None:
  from visionjax.data import builtin  # noqa: F401  (registers `digit_scenes`)


# ------------------------------------------------------------------ CIFAR-10
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                   "frog", "horse", "ship", "truck")


def _cifar10(f: dict) -> Example:
  return {"image": f["image"], "label": tf.cast(f["label"], tf.int32)}


def _cifar10_sources(config):
  return (SourceFile("cifar-10-binary.tar.gz",
                     "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"),)


# ------------------------------------------------------------ PASCAL VOC boxes
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse",
               "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")


def _voc(f: dict) -> Example:
  o = f["objects"]
  labels = tf.cast(o["label"], tf.int32)
  boxes = from_tfds_bbox(o["bbox"])
  ex = {"image": f["image"], "boxes": boxes, "box_labels": labels,
        "box_difficult": tf.cast(o["is_difficult"], tf.bool),
        "label": largest_object(boxes, labels)[0]}
  if "instance_mask" in f:  # coco_json (your own data) >= 1.1.0
    ex["instances"] = tf.cast(f["instance_mask"][..., 0], tf.int32)
    ex["box_instance"] = tf.cast(o["instance"], tf.int32)
  return ex


_VOC_OFFICIAL = "http://host.robots.ox.ac.uk/pascal/VOC/"


def _voc_sources(config):
  if config == "2007":
    return (SourceFile("VOCtrainval_06-Nov-2007.tar", _VOC_OFFICIAL + "voc2007/"),
            SourceFile("VOCtest_06-Nov-2007.tar", _VOC_OFFICIAL + "voc2007/"))
  return (SourceFile("VOCtrainval_11-May-2012.tar", _VOC_OFFICIAL + "voc2012/"),
          SourceFile("VOC2012test.tar", "http://host.robots.ox.ac.uk:8080/eval/"
                     "downloads/VOC2012test.tar (PASCAL evaluation server, login)"))


# ------------------------------------------------ PASCAL VOC segmentation
def _voc_segmentation(f: dict) -> Example:
  ex = {"image": f["image"],
        "mask": tf.cast(f["segmentation_mask"][..., 0], tf.int32)}
  if "objects" in f:  # `voc_segmentation` >= 1.1.0 (not mask_folder)
    o = f["objects"]
    labels = tf.cast(o["label"], tf.int32)
    ex.update(boxes=from_tfds_bbox(o["bbox"]), box_labels=labels,
              box_difficult=tf.zeros_like(labels, tf.bool))
    if "instance_mask" in f:  # dropped undecoded unless the task reads it
      ex.update(instances=tf.cast(f["instance_mask"][..., 0], tf.int32),
                box_instance=tf.cast(o["id"], tf.int32))
  return ex


def _register_voc_segmentation() -> None:
  from visionjax.data import voc_segmentation  # noqa: F401  (registers it)


def _voc_segmentation_sources(config):
  from visionjax.data import voc_segmentation as vs
  files = (SourceFile(vs.VOC_TAR, vs.VOC_OFFICIAL_URL),)
  if config == "2012_sbd":
    files += (SourceFile(vs.SBD_TAR, vs.SBD_URL),)
  return files


# ---------------------------------------------------------------- Cityscapes
# label id -> train id, from cityscapesScripts' helpers/labels.py: the 19
# evaluated classes get 0..18, every other id (and anything above 33) 255.
CITYSCAPES_TRAIN_IDS = (
    255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255,
    5, 255, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18)
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole",
                      "traffic light", "traffic sign", "vegetation", "terrain",
                      "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")
_CITYSCAPES_LUT = CITYSCAPES_TRAIN_IDS + (255,) * (256 - len(CITYSCAPES_TRAIN_IDS))


def cityscapes_train_ids(label_ids: tf.Tensor) -> tf.Tensor:
  """Maps Cityscapes label ids (uint8 PNG values) to train ids, 255 = ignore."""
  return tf.gather(tf.constant(_CITYSCAPES_LUT, tf.int32), tf.cast(label_ids, tf.int32))


def _cityscapes(f: dict) -> Example:
  return {"image": f["image_left"],
          "mask": cityscapes_train_ids(f["segmentation_label"][..., 0])}


def _cityscapes_sources(config):
  url = "https://www.cityscapes-dataset.com/downloads/ (free registration)"
  return (SourceFile("leftImg8bit_trainvaltest.zip", url),
          SourceFile("gtFine_trainvaltest.zip", url))


# ------------------------------------------------------------- your own data
def _own_builder(dc: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  from visionjax.data import own_data
  return own_data.make_builder(dc)


def _own(canonical: Callable[[dict], Example], kinds: tuple[str, ...]) -> DatasetAdapter:
  return DatasetAdapter(canonical=canonical, num_classes={}, class_names={},
                        make_builder=_own_builder, kinds=kinds)


_DIGITS = tuple(str(d) for d in range(10))
DATASETS: dict[str, DatasetAdapter] = {
    "digit_scenes": DatasetAdapter(
        canonical=_digit_scenes,
        num_classes={"label": 10, "boxes": 10, "mask": 11, "instances": 10},
        class_names={"label": _DIGITS, "boxes": _DIGITS,
                     "mask": ("background",) + _DIGITS, "instances": _DIGITS},
        register=_register_digit_scenes),
    "cifar10": DatasetAdapter(
        canonical=_cifar10, num_classes={"label": 10},
        class_names={"label": CIFAR10_CLASSES}, sources=_cifar10_sources),
    "voc": DatasetAdapter(
        canonical=_voc, num_classes={"boxes": 20, "label": 20},
        class_names={"boxes": VOC_CLASSES, "label": VOC_CLASSES},
        sources=_voc_sources),
    "voc_segmentation": DatasetAdapter(
        canonical=_voc_segmentation,
        num_classes={"mask": 21, "instances": 20, "boxes": 20},
        class_names={"mask": ("background",) + VOC_CLASSES, "instances": VOC_CLASSES,
                     "boxes": VOC_CLASSES},
        register=_register_voc_segmentation, sources=_voc_segmentation_sources),
    "cityscapes": DatasetAdapter(
        canonical=_cityscapes, num_classes={"mask": 19},
        class_names={"mask": CITYSCAPES_CLASSES},
        sources=_cityscapes_sources, manual_only=True, image_key="image_left"),
    # Your own data: the same features as the stock builders above.
    "image_folder": _own(_cifar10, ("label",)),
    "mask_folder": _own(_voc_segmentation, ("mask",)),
    "coco_json": _own(_voc, ("boxes", "label", "instances")),
    "voc_xml": _own(_voc, ("boxes", "label")),
}


def dataset_names(dc: ml_collections.ConfigDict) -> list[str]:
  """The TFDS names joined by ``+`` in ``dc.name`` (one family)."""
  names = [n.strip() for n in dc.name.split("+")]
  families = sorted({n.split("/")[0] for n in names})
  if len(families) > 1 or not all(names):
    raise ValueError(f"dataset {dc.name!r}: '+' joins configs of one dataset "
                     f"family (e.g. 'voc/2007+voc/2012'), got families {families}")
  return names


def single(dc: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """A copy of ``dc`` naming only ``name``."""
  out = dc.copy_and_resolve_references()
  out.name = name
  return out


def adapter(dc: ml_collections.ConfigDict) -> DatasetAdapter:
  family = dataset_names(dc)[0].split("/")[0]
  if family not in DATASETS:
    raise ValueError(f"unknown dataset {dc.name!r}; known datasets: "
                     f"{sorted(DATASETS)} (a TFDS name, optionally '/config')")
  return DATASETS[family]


def get_builder(dc: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The builder of ``dc.name`` (of its first dataset when joined by ``+``)."""
  ad = adapter(dc)
  if ad.make_builder is not None:
    return ad.make_builder(dc)
  if ad.register is not None:
    ad.register()
  return tfds.builder(dataset_names(dc)[0], data_dir=dc.get("data_dir"))




def config_name(name: str) -> str | None:
  """The builder config of a TFDS name ('voc/2007' -> '2007'), or None."""
  parts = name.split("/")
  return parts[1] if len(parts) > 1 else None


def prepare(dc: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """Builds every dataset of ``dc.name`` once into ``data_dir``; returns the
  (first) builder, prepared."""
  ad = adapter(dc)
  builders = []
  for name in dataset_names(dc):
    one = single(dc, name)
    builders.append(get_builder(one))
    prepare_builder(one, builders[-1], ad.sources(config_name(name)), ad.manual_only)
  return builders[0]


def can_prepare(dc: ml_collections.ConfigDict, *, timeout: float = 5.0) -> bool:
  """Whether `prepare` can get every file of ``dc.name`` (prepared already, in
  the manual folder, or its host answering within ``timeout`` seconds), so
  a caller can choose another dataset at once instead of after the
  download's retries. Downloads nothing."""
  ad = adapter(dc)
  for name in dataset_names(dc):
    one = single(dc, name)
    if not can_prepare_builder(one, get_builder(one), ad.sources(config_name(name)),
                               ad.manual_only, timeout=timeout):
      return False
  return True


def num_classes(dc: ml_collections.ConfigDict, annotation: str,
                builder: tfds.core.DatasetBuilder | None = None) -> int:
  """Classes of ``annotation`` (one of `ANNOTATIONS`) in this dataset
  (your own data: of ``builder``, made from ``dc`` when not given)."""
  return len(class_names(dc, annotation, builder))


def class_names(dc: ml_collections.ConfigDict, annotation: str,
                builder: tfds.core.DatasetBuilder | None = None) -> tuple[str, ...]:
  ad = adapter(dc)
  kinds = tuple(ad.num_classes) or ad.kinds
  if annotation not in kinds:
    raise ValueError(f"dataset {dc.name!r} has no {annotation!r} annotations; it has "
                     f"{sorted(kinds)}")
  if ad.make_builder is not None:
    return tuple((builder or get_builder(dc)).class_names)
  return ad.class_names[annotation]


def mean_pixel(dc: ml_collections.ConfigDict) -> tuple[float, float, float]:
  """The dataset mean as a 0..255 pixel (the padding colour)."""
  return tuple(round(255.0 * float(m)) for m in dc.get("mean", (0.5, 0.5, 0.5)))


def largest_object(boxes: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """``(label, box)`` of the largest (by area) of ``boxes`` [N, 4]: one object,
  so the class and the box agree.

  Args:
    boxes: [N, 4] normalized xyxy.
    labels: int [N], the class of each box.

  Returns:
    ``label`` int32 [] and ``box`` float32 [4], normalized xyxy. Label 0 and
    an all-zero box when there is no box (e.g. all cropped away).
  """
  boxes = tf.concat([tf.reshape(tf.cast(boxes, tf.float32), [-1, 4]),
                     tf.zeros([1, 4])], 0)  # a zero box loses to any real one
  labels = tf.concat([tf.reshape(tf.cast(labels, tf.int32), [-1]), [0]], 0)
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  i = tf.argmax(area)
  return tf.gather(labels, i), tf.gather(boxes, i)
