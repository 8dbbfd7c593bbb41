"""Tiny datasets in the four "your own data" layouts, written in the real file
formats (PIL PNG/JPEG/BMP, a COCO instances JSON, VOC XML), with the labels,
masks and boxes each one must decode to, computed here by hand."""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image


def _image(seed: int, h: int, w: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


def _save(path: str, array: np.ndarray, **kwargs) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, **kwargs)
  return path


def write_image_folder(root: str) -> dict[str, tuple[str, np.ndarray | None]]:
  """3 classes x 4 images, no split folders: PNG (exact pixels), grayscale
  PNG, BMP (converted while preparing) and JPEG (lossy: pixels None).
  Returns {relative path: (class name, expected RGB pixels or None)}."""
  truth = {}
  for c, cls in enumerate(("cat", "dog", "fox")):
    for i in range(4):
      h, w = 12 + c, 14 + i  # sizes vary: the config sets image_size
      img = _image(10 * c + i, h, w)
      rel = f"{cls}/{i}"
      if i == 0:
        truth[rel + ".png"] = (cls, img)
        _save(os.path.join(root, rel + ".png"), img)
      elif i == 1:
        gray = img[..., 0]
        truth[rel + ".png"] = (cls, np.repeat(gray[..., None], 3, -1))
        _save(os.path.join(root, rel + ".png"), gray)
      elif i == 2:
        truth[rel + ".bmp"] = (cls, img)
        _save(os.path.join(root, rel + ".bmp"), img)
      else:
        truth[rel + ".jpg"] = (cls, None)
        _save(os.path.join(root, rel + ".jpg"), img, quality=95)
  with open(os.path.join(root, "notes.txt"), "w") as f:  # not an image: skipped
    f.write("taken in 2024\n")
  return truth


MASK_CLASSES = ("background", "road", "car")
MASK_IGNORE = 9  # the fixture's "unlabelled" value (config.dataset.ignore_value)


def _palette_png(path: str, ids: np.ndarray) -> None:
  im = Image.fromarray(ids.astype(np.uint8), mode="P")
  im.putpalette([0, 0, 0, 128, 64, 128, 0, 0, 142] + [255, 255, 255] * 253)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  im.save(path)


def write_mask_folder(root: str) -> dict[str, np.ndarray]:
  """images/{train,test}/<id>.jpg|png + masks/... (palette and 'L' PNGs),
  classes.txt. Returns {split/id: expected canonical mask (255 = ignore)}."""
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "classes.txt"), "w") as f:
    f.write("\n".join(MASK_CLASSES) + "\n")
  truth = {}
  for split, n in (("train", 8), ("test", 3)):
    for i in range(n):
      h, w = 16, 20
      ids = np.zeros((h, w), np.uint8)
      ids[: h // 2] = 1                      # road on top
      ids[h // 2:, : 4 + i] = 2              # a car at the bottom left
      ids[0, :] = MASK_IGNORE                # an unlabelled row
      expected = ids.astype(np.int64)
      expected[0, :] = 255
      truth[f"{split}/{i:02d}"] = expected
      ext = ".png" if i % 2 else ".jpg"
      _save(os.path.join(root, "images", split, f"{i:02d}{ext}"), _image(100 + i, h, w))
      mask = os.path.join(root, "masks", split, f"{i:02d}.png")
      if i % 2:
        _palette_png(mask, ids)
      else:
        _save(mask, ids)  # mode 'L': values are class ids
  return truth


COCO_CATEGORIES = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]  # unsorted ids


def write_coco(root: str) -> dict[str, dict]:
  """annotations/instances_{train,test}.json + train/, test/ JPEGs (40x30).
  Category ids 3 (cat) and 7 (dog) become classes 0 and 1. Returns
  {file_name: {'boxes': normalized xyxy, 'labels', 'difficult'}}."""
  truth = {}
  ann_id = 1
  for split, n in (("train", 8), ("test", 3)):
    images, anns = [], []
    for i in range(n):
      name = f"{split}_{i}.jpg"
      _save(os.path.join(root, split, name), _image(200 + i, 30, 40))
      images.append({"id": i + 1, "file_name": name, "width": 40, "height": 30})
      # xywh pixels; the second box ends 0.5 px past the right edge (clipped).
      boxes = [(4, 6, 10, 8, 3, 0), (30, 10, 10.5, 20, 7, 1)] if i % 2 == 0 else \
              [(0, 0, 40, 30, 7, 0)]
      for x, y, bw, bh, cat, crowd in boxes:
        anns.append({"id": ann_id, "image_id": i + 1, "category_id": cat,
                     "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": crowd})
        ann_id += 1
      if i % 2 == 0:
        truth[name] = {"boxes": [(4 / 40, 6 / 30, 14 / 40, 14 / 30), (30 / 40, 10 / 30, 1.0, 1.0)],
                       "labels": [0, 1], "difficult": [False, True]}
      else:
        truth[name] = {"boxes": [(0.0, 0.0, 1.0, 1.0)], "labels": [1], "difficult": [False]}
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
      json.dump({"images": images, "annotations": anns, "categories": COCO_CATEGORIES}, f)
  return truth


def voc_xml(filename: str, w: int, h: int, objects: list[tuple]) -> str:
  """A VOC annotation; objects are (name, xmin, ymin, xmax, ymax, difficult)."""
  objs = "".join(
      f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated>"
      f"<difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
      f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
      for n, x1, y1, x2, y2, d in objects)
  return (f"<annotation><folder>VOC</folder><filename>{filename}</filename><size>"
          f"<width>{w}</width><height>{h}</height><depth>3</depth></size>"
          f"<segmented>0</segmented>{objs}</annotation>")


def write_voc(root: str) -> dict[str, dict]:
  """Annotations/ + JPEGImages/ (50x40) + ImageSets/Main/{train,test}.txt and a
  per-class list (dog_train.txt, not a split); no classes.txt, so the classes
  are the sorted names found: bird, dog. Returns {id: truth}."""
  truth = {}
  splits = {"train": [f"img{i}" for i in range(8)], "test": ["img8", "img9", "img10"]}
  for ids in splits.values():
    for k, i in enumerate(ids):
      _save(os.path.join(root, "JPEGImages", i + ".jpg"), _image(300 + k, 40, 50))
      objs = [("dog", 5, 4, 25, 20, 0)]
      if k % 2:
        objs.append(("bird", 30, 10, 50, 40, 1))
      os.makedirs(os.path.join(root, "Annotations"), exist_ok=True)
      with open(os.path.join(root, "Annotations", i + ".xml"), "w") as f:
        f.write(voc_xml(i + ".jpg", 50, 40, objs))
      truth[i] = {"boxes": [(5 / 50, 4 / 40, 25 / 50, 20 / 40)] +
                  ([(30 / 50, 10 / 40, 1.0, 1.0)] if k % 2 else []),
                  "labels": [1] + ([0] if k % 2 else []),
                  "difficult": [False] + ([True] if k % 2 else [])}
  sets = os.path.join(root, "ImageSets", "Main")
  os.makedirs(sets, exist_ok=True)
  for split, ids in splits.items():
    with open(os.path.join(sets, split + ".txt"), "w") as f:
      f.write("\n".join(ids) + "\n")
  with open(os.path.join(sets, "dog_train.txt"), "w") as f:
    f.write("\n".join(f"{i}  1" for i in splits["train"]) + "\n")
  return truth
