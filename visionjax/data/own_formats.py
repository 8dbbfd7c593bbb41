"""Reading your own data: four folder layouts -> splits of checked examples.

Each reader takes the dataset's root folder (an `epath.Path`: local or a
storage URL) and returns ``(class_names, {split: [example, ...]})`` where an
example is a plain dict of file paths and annotations in pixels. Everything
that can be checked without decoding images is checked here (pairs, class
names and ids, split files); `visionjax.data.own_data`'s builders decode
each image once while preparing and check what needs its pixels (readable,
mask and box sizes). Every problem raises `OwnDataError`: one line naming
the file and what was expected.

Layouts (``<split>`` is any folder / file name: ``train``, ``test``, ...):

  image_folder   <root>/<split>/<class>/*.jpg   or   <root>/<class>/*.jpg
                 (no split folders: everything is the ``train`` split);
                 optional <root>/classes.txt fixes the class order.
  mask_folder    <root>/images/<split>/<id>.jpg + <root>/masks/<split>/<id>.png
                 (or images/<id>.jpg + masks/<id>.png: ``train``) and
                 <root>/classes.txt, line k naming class id k.
  coco_json      <root>/annotations/instances_<split>.json, its images in
                 <root>/<split>/ or <root>/images/<split>/ or <root>/images/;
                 ``segmentation`` (polygons or RLE) gives instance masks.
  voc_xml        <root>/Annotations/<id>.xml + <root>/JPEGImages/<id>.jpg;
                 splits from <root>/ImageSets/Main/<split>.txt (else all of
                 them are ``train``); optional <root>/classes.txt, else the
                 sorted names found in the XML files.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any
import xml.etree.ElementTree as ET

from etils import epath

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Box coordinates may pass the image edge by this many pixels (rounding in
# annotation tools; COCO has such boxes) and are then clipped to it.
EDGE_TOLERANCE = 1.0

Splits = dict[str, list[dict[str, Any]]]


class OwnDataError(ValueError):
  """A file of your own dataset is missing, unreadable or inconsistent."""


def _is_image(p: epath.Path) -> bool:
  return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _visible(folder: epath.Path) -> list[epath.Path]:
  return sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                key=lambda p: p.name)


def _need_dir(path: epath.Path, what: str) -> None:
  if not path.is_dir():
    raise OwnDataError(f"{path}: no such folder; expected {what}")


def read_classes(path: epath.Path) -> tuple[str, ...]:
  """Class names of ``classes.txt``, one per line (line k is class id k)."""
  names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
  if not names:
    raise OwnDataError(f"{path}: no class names; expected one name per line")
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    raise OwnDataError(f"{path}: class name {dup[0]!r} is listed twice")
  return names


def fingerprint(root: epath.Path, skip: epath.Path | None = None) -> tuple[int, str]:
  """``(file count, digest of every file's relative path and size)``: the
  prepared copy is stale when it changes. Files under ``skip`` (a TFDS
  data_dir kept inside the dataset folder) do not count."""
  skip_prefix = str(skip).rstrip("/") + "/" if skip is not None else None
  entries = sorted((str((epath.Path(folder) / name).relative_to(root)),
                    (epath.Path(folder) / name).stat().length)
                   for folder, _, files in root.walk() for name in files
                   if skip_prefix is None
                   or not str(epath.Path(folder) / name).startswith(skip_prefix))
  h = hashlib.sha1()
  for rel, size in entries:
    h.update(f"{rel}\0{size}\n".encode())
  return len(entries), h.hexdigest()


def check_box(box, width: int, height: int, where: str) -> tuple[float, float, float, float]:
  """Pixel ``(x1, y1, x2, y2)`` -> normalized xyxy, clipped to the image
  within `EDGE_TOLERANCE`; an error naming ``where`` otherwise."""
  x1, y1, x2, y2 = (float(v) for v in box)
  t = EDGE_TOLERANCE
  if not (-t <= x1 < x2 <= width + t and -t <= y1 < y2 <= height + t):
    raise OwnDataError(f"{where}: box (x1={x1:g}, y1={y1:g}, x2={x2:g}, y2={y2:g}) is outside "
                       f"the {width}x{height} image or empty; expected 0 <= x1 < x2 <= "
                       f"{width} and 0 <= y1 < y2 <= {height}")
  clip = lambda v, hi: min(max(v, 0.0), hi) / hi
  return clip(x1, width), clip(y1, height), clip(x2, width), clip(y2, height)


# --------------------------------------------------------------- image folder
def image_folder(root: epath.Path) -> tuple[tuple[str, ...], Splits]:
  """Classification: one subfolder per class, optionally inside split folders."""
  _need_dir(root, "<root>/<class>/*.jpg or <root>/<split>/<class>/*.jpg")
  top = [p for p in _visible(root) if p.is_dir()]
  split_layout = bool(top) and all(
      p.is_dir() for d in top for p in _visible(d)) and any(_visible(d) for d in top)
  split_dirs = {d.name: d for d in top} if split_layout else {"train": root}
  found: dict[str, list[tuple[str, epath.Path]]] = {}
  for split, d in split_dirs.items():
    found[split] = [(c.name, f) for c in _visible(d) if c.is_dir()
                    for f in _visible(c) if _is_image(f)]
  folder_classes = sorted({c for items in found.values() for c, _ in items})
  listed = root / "classes.txt"
  names = read_classes(listed) if listed.exists() else tuple(folder_classes)
  index = {n: i for i, n in enumerate(names)}
  splits: Splits = {}
  for split, items in found.items():
    if not items:
      raise OwnDataError(f"{split_dirs[split]}: no images; expected one folder per class "
                         f"holding {'/'.join(IMAGE_SUFFIXES)} files")
    for cls, path in items:
      if cls not in index:
        raise OwnDataError(f"{path.parent}: unknown class name {cls!r}; {listed} lists "
                           f"{list(names)}")
    splits[split] = [{"image": path, "label": index[cls]} for cls, path in items]
  return names, splits


# ---------------------------------------------------------------- mask folder
def _pairs(images: epath.Path, masks: epath.Path) -> list[dict[str, Any]]:
  _need_dir(masks, f"the masks of {images}, one <id>.png per <id>.jpg")
  ims = {p.stem: p for p in _visible(images) if _is_image(p)}
  mks = {p.stem: p for p in _visible(masks) if p.suffix.lower() == ".png"}
  for stem, p in ims.items():
    if stem not in mks:
      raise OwnDataError(f"{p}: image has no mask; expected {masks / (stem + '.png')}")
  for stem, p in mks.items():
    if stem not in ims:
      raise OwnDataError(f"{p}: mask has no image; expected {images / stem}.<jpg|png|...>")
  if not ims:
    raise OwnDataError(f"{images}: no images")
  return [{"image": ims[s], "mask": mks[s]} for s in sorted(ims)]


def mask_folder(root: epath.Path) -> tuple[tuple[str, ...], Splits]:
  """Segmentation: images/ + masks/ (PNG of class ids), classes.txt."""
  images, masks = root / "images", root / "masks"
  _need_dir(images, "<root>/images/ and <root>/masks/ (optionally with split subfolders)")
  listed = root / "classes.txt"
  if not listed.exists():
    raise OwnDataError(f"{listed}: no such file; expected one class name per line "
                       "(line k names the class of mask value k)")
  names = read_classes(listed)
  subdirs = [p for p in _visible(images) if p.is_dir()]
  if subdirs and any(_is_image(p) for p in _visible(images)):
    raise OwnDataError(f"{images}: holds both split folders and images; expected either "
                       "images/<split>/<id>.jpg or images/<id>.jpg")
  if subdirs:
    return names, {d.name: _pairs(d, masks / d.name) for d in subdirs}
  return names, {"train": _pairs(images, masks)}


# ------------------------------------------------------------------ COCO JSON
def _coco_images_dir(root: epath.Path, split: str) -> epath.Path:
  for d in (root / split, root / "images" / split, root / "images"):
    if d.is_dir():
      return d
  raise OwnDataError(f"{root / 'annotations' / f'instances_{split}.json'}: no image folder; "
                     f"expected {root / split} or {root / 'images' / split} or "
                     f"{root / 'images'}")


def coco_json(root: epath.Path) -> tuple[tuple[str, ...], Splits]:
  """Detection and instance segmentation: COCO instances files, one per split
  (``iscrowd`` objects are marked ``difficult``; their ``segmentation`` is
  kept for the builder, as every object's)."""
  ann_dir = root / "annotations"
  _need_dir(ann_dir, "<root>/annotations/instances_<split>.json")
  files = {m.group(1): p for p in _visible(ann_dir)
           if (m := re.fullmatch(r"instances_(.+)\.json", p.name))}
  if not files:
    raise OwnDataError(f"{ann_dir}: no instances_<split>.json file")
  categories, names, splits = None, (), {}
  for split, path in sorted(files.items()):
    try:
      coco = json.loads(path.read_text())
      cats = sorted((int(c["id"]), str(c["name"])) for c in coco["categories"])
      images = coco["images"]
      anns = coco.get("annotations", [])
    except (ValueError, KeyError, TypeError) as e:
      raise OwnDataError(f"{path}: not a COCO instances file ({type(e).__name__}: {e}); "
                         "expected 'images', 'annotations' and 'categories'") from None
    if categories is None:
      categories, first = cats, path
      names = tuple(n for _, n in cats)
    elif cats != categories:
      raise OwnDataError(f"{path}: categories differ from {first}'s; expected the same "
                         "categories in every split")
    index = {cid: k for k, (cid, _) in enumerate(cats)}
    folder = _coco_images_dir(root, split)
    by_image: dict[int, list] = {int(im["id"]): [] for im in images}
    for a in anns:
      where = f"{path}: annotation id {a.get('id')}"
      if a.get("category_id") not in index:
        raise OwnDataError(f"{where}: unknown category_id {a.get('category_id')!r}; the "
                           f"categories are {sorted(index)}")
      if a.get("image_id") not in by_image:
        raise OwnDataError(f"{where}: unknown image_id {a.get('image_id')!r}")
      by_image[a["image_id"]].append(a)
    examples = []
    for im in images:
      mine = by_image[int(im["id"])]
      x = [a["bbox"] for a in mine]
      examples.append({
          "image": folder / im["file_name"], "source": f"{path}: image id {im['id']}",
          "size": (int(im["width"]), int(im["height"])),
          "boxes": [(b[0], b[1], b[0] + b[2], b[1] + b[3]) for b in x],
          "labels": [index[a["category_id"]] for a in mine],
          "difficult": [bool(a.get("iscrowd", 0)) for a in mine],
          # Rasterized by the builder (`own_data.OwnCocoJson`), per object.
          "segmentations": [a.get("segmentation") for a in mine],
          "annotation_ids": [a.get("id") for a in mine]})
    splits[split] = examples
  return names, splits


# -------------------------------------------------------------------- VOC XML
def _voc_objects(path: epath.Path) -> dict[str, Any]:
  try:
    root = ET.fromstring(path.read_text())
    size = root.find("size")
    width, height = int(float(size.find("width").text)), int(float(size.find("height").text))
    objects = []
    for obj in root.findall("object"):
      bb = obj.find("bndbox")
      diff = obj.find("difficult")
      objects.append({
          "name": obj.find("name").text.strip(),
          "box": tuple(float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")),
          "difficult": diff is not None and diff.text.strip() == "1"})
  except (ET.ParseError, AttributeError, ValueError, TypeError) as e:
    raise OwnDataError(f"{path}: not a VOC annotation ({type(e).__name__}: {e}); expected "
                       "<size><width>/<height> and <object><name>, <bndbox><xmin>...") from None
  filename = root.findtext("filename")
  return {"filename": filename.strip() if filename else None, "size": (width, height),
          "objects": objects}


def voc_xml(root: epath.Path) -> tuple[tuple[str, ...], Splits]:
  """Detection: VOC-style XML annotations."""
  ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
  _need_dir(ann_dir, "<root>/Annotations/<id>.xml")
  _need_dir(img_dir, "<root>/JPEGImages/<id>.jpg")
  xmls = {p.stem: p for p in _visible(ann_dir) if p.suffix.lower() == ".xml"}
  if not xmls:
    raise OwnDataError(f"{ann_dir}: no .xml files")
  images = {}
  for p in _visible(img_dir):
    if _is_image(p):
      images.setdefault(p.stem, p)
  sets = root / "ImageSets" / "Main"
  split_files = {p.stem: p for p in (_visible(sets) if sets.is_dir() else [])
                 if p.suffix == ".txt"}
  # VOC's per-class lists (<class>_<split>.txt) are not splits.
  split_files = {s: p for s, p in split_files.items()
                 if not any(s.endswith("_" + o) for o in split_files if o != s)}
  if split_files:
    ids = {s: [line.split()[0] for line in p.read_text().splitlines() if line.strip()]
           for s, p in split_files.items()}
  else:
    ids = {"train": sorted(xmls)}
  parsed = {}
  for split, split_ids in ids.items():
    for i in split_ids:
      if i not in xmls:
        raise OwnDataError(f"{split_files[split]}: id {i!r} has no annotation; expected "
                           f"{ann_dir / (i + '.xml')}")
      if i not in parsed:
        parsed[i] = _voc_objects(xmls[i])
  listed = root / "classes.txt"
  if listed.exists():
    names = read_classes(listed)
  else:
    names = tuple(sorted({o["name"] for a in parsed.values() for o in a["objects"]}))
    if not names:
      raise OwnDataError(f"{ann_dir}: no <object> in any annotation; expected named boxes "
                         "(or a classes.txt)")
  index = {n: k for k, n in enumerate(names)}
  splits: Splits = {}
  for split, split_ids in ids.items():
    examples = []
    for i in split_ids:
      a, xml_path = parsed[i], xmls[i]
      for o in a["objects"]:
        if o["name"] not in index:
          raise OwnDataError(f"{xml_path}: unknown class name {o['name']!r}; {listed} lists "
                             f"{list(names)}")
      image = img_dir / a["filename"] if a["filename"] else None
      if image is None or not image.exists():
        image = images.get(i)
      if image is None:
        raise OwnDataError(f"{xml_path}: no image; expected {img_dir / (a['filename'] or i)}")
      examples.append({
          "image": image, "source": str(xml_path), "size": a["size"],
          "boxes": [o["box"] for o in a["objects"]],
          "labels": [index[o["name"]] for o in a["objects"]],
          "difficult": [o["difficult"] for o in a["objects"]]})
    splits[split] = examples
  return names, splits


READERS = {"image_folder": image_folder, "mask_folder": mask_folder,
           "coco_json": coco_json, "voc_xml": voc_xml}
