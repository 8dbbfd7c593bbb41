"""Synthetic scenes built from real handwriting: the offline dataset.

The 1,797 8x8 handwritten digits that ship inside scikit-learn
(`sklearn.datasets.load_digits`, from the UCI "Optical Recognition of
Handwritten Digits" set) are upscaled, coloured and pasted onto cluttered
backgrounds. Every scene carries, at once:

* a scene label (the class of the largest digit),
* one box and class per digit (normalized ``ymin, xmin, ymax, xmax``: the
  format TFDS's ``BBoxFeature`` requires, because these are the built-in
  dataset's TFDS records; `visionjax.data.datasets.from_tfds_bbox` converts
  them to the package's xyxy when examples are read),
* a per-pixel class mask (0 = background, ``d + 1`` = digit ``d``),
* a per-pixel instance map (0 = background, ``k + 1`` = the k-th box's
  digit): each digit is one instance, and digits never overlap.

So one dataset serves classification, localization, detection and semantic
segmentation, and needs no download. Rendering is plain NumPy, deterministic
given a seed, and train/test scenes draw on disjoint digit images.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np
from PIL import Image

NUM_DIGIT_CLASSES = 10
SEGMENTATION_CLASS_NAMES = ("background",) + tuple(str(d) for d in range(10))
# Pixels of a pasted digit whose (upscaled) ink intensity exceeds this are
# labelled as the digit in the mask; lower values are anti-aliased rim.
INK_THRESHOLD = 0.35
TEST_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """How scenes of one builder config are drawn."""
  height: int = 64
  width: int = 64
  min_objects: int = 1
  max_objects: int = 3
  min_size: int = 20
  max_size: int = 30
  clutter: int = 4          # random translucent shapes in the background
  noise: float = 0.04       # std of per-pixel Gaussian noise
  warp: float = 1.0         # strength of the per-instance affine distortion
  centre_jitter: int = -1   # >= 0: one digit near the centre, +- this many pixels
  num_train: int = 6000
  num_test: int = 1000

  def __post_init__(self):
    # Instance ids 1..254 fit the uint8 instance map (255 means void).
    if not 0 <= self.min_objects <= self.max_objects <= 254:
      raise ValueError(f"SceneSpec: need 0 <= min_objects <= max_objects <= 254 "
                       f"(instance ids are uint8, 255 = void), got min_objects="
                       f"{self.min_objects}, max_objects={self.max_objects}")


def digit_sources(split: str) -> tuple[np.ndarray, np.ndarray]:
  """The digit images behind ``split`` ('train' or 'test').

  A fixed, class-stratified 80/20 partition of `load_digits`, so no test scene
  reuses a digit image seen in training.

  Returns:
    images: float32 [N, 8, 8] in [0, 1]; labels: int64 [N].
  """
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")
  from sklearn.datasets import load_digits  # heavy import, only when rendering
  digits = load_digits()
  images = digits.images.astype(np.float32) / 16.0
  labels = digits.target.astype(np.int64)
  rng = np.random.default_rng(1797)
  chosen = []
  for c in range(NUM_DIGIT_CLASSES):
    idx = rng.permutation(np.flatnonzero(labels == c))
    n_test = int(round(TEST_FRACTION * len(idx)))
    chosen.append(idx[:n_test] if split == "test" else idx[n_test:])
  idx = np.sort(np.concatenate(chosen))
  return images[idx], labels[idx]


def _upscale(digit: np.ndarray, size: int, rng: np.random.Generator | None = None,
             warp: float = 0.0) -> np.ndarray:
  """Bicubic upscaling of an 8x8 intensity image to size x size, in [0, 1].

  With ``warp > 0`` the digit is also rotated (up to 15 degrees x warp),
  sheared and stretched by a random affine map about its centre, so every
  scene shows a differently written instance of its source digit.
  """
  img = Image.fromarray(digit, mode="F").resize((size, size), Image.BICUBIC)
  if rng is not None and warp > 0:
    theta = np.deg2rad(rng.uniform(-15, 15) * warp)
    shear = rng.uniform(-0.25, 0.25) * warp
    sx, sy = np.exp(rng.uniform(-0.15, 0.15, 2) * warp)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    fwd = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, sy])
    inv = np.linalg.inv(fwd)  # PIL maps output pixels back to input pixels
    c = np.array([size / 2, size / 2])
    off = c - inv @ c
    img = img.transform((size, size), Image.AFFINE,
                        (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
                        resample=Image.BICUBIC)
  return np.clip(np.asarray(img), 0.0, 1.0)


def _background(rng: np.random.Generator, spec: SceneSpec) -> np.ndarray:
  """A colour gradient with translucent rectangles/bars and pixel noise."""
  h, w = spec.height, spec.width
  c0, c1 = rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3)
  angle = rng.uniform(0, 2 * np.pi)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
  t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
  bg = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
  for _ in range(rng.integers(0, spec.clutter + 1)):
    y0, x0 = rng.integers(0, h), rng.integers(0, w)
    if rng.random() < 0.5:  # rectangle
      y1, x1 = y0 + rng.integers(4, h // 2), x0 + rng.integers(4, w // 2)
    else:  # thin bar
      if rng.random() < 0.5:
        y1, x1 = y0 + rng.integers(1, 3), x0 + rng.integers(8, w)
      else:
        y1, x1 = y0 + rng.integers(8, h), x0 + rng.integers(1, 3)
    alpha = rng.uniform(0.15, 0.45)
    bg[y0:y1, x0:x1] = (1 - alpha) * bg[y0:y1, x0:x1] + alpha * rng.uniform(0, 1, 3)
  return bg.astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, ref: np.ndarray) -> np.ndarray:
  """A colour at least 0.45 away (mean abs difference) from ``ref``."""
  best, best_d = None, -1.0
  for _ in range(32):
    c = rng.uniform(0, 1, 3)
    d = float(np.abs(c - ref).mean())
    if d > 0.45:
      return c
    if d > best_d:
      best, best_d = c, d
  return np.where(ref > 0.5, 0.0, 1.0) if best_d < 0.3 else best


def render_scene(rng: np.random.Generator, sources: tuple[np.ndarray, np.ndarray],
                 spec: SceneSpec) -> dict[str, np.ndarray]:
  """Draws one scene.

  Returns a dict with ``image`` uint8 [H, W, 3], ``mask`` uint8 [H, W]
  (0 background, d+1 digit d), ``label`` int64 (class of the largest digit),
  ``bbox`` float32 [N, 4] normalized (ymin, xmin, ymax, xmax) with the
  half-open pixel extent divided by the image size (TFDS ``BBoxFeature``'s
  yxyx, since this is a TFDS record; the canonical example is xyxy),
  ``bbox_label`` int64 [N], ``instances`` uint8 [H, W] (0 background,
  k+1 on the ink pixels of the digit of ``bbox[k]``: the same pixels as its
  ``mask`` class, so ``bbox[k]`` is their tight extent).

  The instance map draws no random numbers: every other output is the same
  as before it existed, for the same ``rng``.
  """
  images, labels = sources
  h, w = spec.height, spec.width
  canvas = _background(rng, spec)
  mask = np.zeros((h, w), np.uint8)
  instances = np.zeros((h, w), np.uint8)
  boxes, classes, areas = [], [], []
  placed: list[tuple[int, int, int, int]] = []
  n = int(rng.integers(spec.min_objects, spec.max_objects + 1))
  for _ in range(n):
    for _attempt in range(30):
      size = int(rng.integers(spec.min_size, spec.max_size + 1))
      if spec.centre_jitter >= 0:
        j = spec.centre_jitter
        y0 = int(np.clip((h - size) // 2 + rng.integers(-j, j + 1), 0, h - size))
        x0 = int(np.clip((w - size) // 2 + rng.integers(-j, j + 1), 0, w - size))
      else:
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
      if all(y0 >= b[2] or y0 + size <= b[0] or x0 >= b[3] or x0 + size <= b[1]
             for b in placed):
        break
    else:
      continue  # no free space left for another digit
    k = int(rng.integers(len(labels)))
    ink = _upscale(images[k], size, rng, spec.warp)
    on = ink > INK_THRESHOLD
    if not on.any():
      continue
    region = canvas[y0:y0 + size, x0:x0 + size]
    colour = _contrasting_colour(rng, region.reshape(-1, 3).mean(0))
    canvas[y0:y0 + size, x0:x0 + size] = (
        region * (1 - ink[..., None]) + colour[None, None] * ink[..., None])
    mask[y0:y0 + size, x0:x0 + size][on] = labels[k] + 1
    instances[y0:y0 + size, x0:x0 + size][on] = len(boxes) + 1  # before the append
    ys, xs = np.nonzero(on)
    boxes.append([(y0 + ys.min()) / h, (x0 + xs.min()) / w,
                  (y0 + ys.max() + 1) / h, (x0 + xs.max() + 1) / w])
    classes.append(labels[k])
    areas.append(int(on.sum()))
    placed.append((y0, x0, y0 + size, x0 + size))
  canvas = canvas + rng.normal(0.0, spec.noise, canvas.shape)
  image = np.clip(np.round(canvas * 255.0), 0, 255).astype(np.uint8)
  label = classes[int(np.argmax(areas))] if classes else 0
  return {
      "image": image,
      "mask": mask,
      "label": np.int64(label),
      "bbox": np.asarray(boxes, np.float32).reshape(-1, 4),
      "bbox_label": np.asarray(classes, np.int64),
      "instances": instances,
  }


def generate(split: str, spec: SceneSpec, seed: int = 0) -> Iterator[tuple[int, dict]]:
  """Yields ``(index, scene)`` for every scene of ``split``, deterministically."""
  sources = digit_sources(split)
  num = spec.num_train if split == "train" else spec.num_test
  # Distinct, fixed streams per split so train and test never share a scene.
  ss = np.random.SeedSequence([seed, 0 if split == "train" else 1])
  for i, child in enumerate(ss.spawn(num)):
    yield i, render_scene(np.random.default_rng(child), sources, spec)
