"""Geometry and determinism of `visionjax.data.transforms` and `augment`.

Deterministic transforms are compared with NumPy references at known
parameters. Random ops run on a synthetic scene of solid rectangles whose
colour, mask class and box are known, and must keep the three in sync: every
surviving box is the envelope of its object's mask pixels (or contains it for
rotation/shear), mask pixels carry their object's colour, dropped boxes have
(almost) nothing left in the frame. Each op also runs inside ``tf.data`` and
must give exactly the eager result for the same seed.

Boxes are normalized xyxy (x1, y1, x2, y2), the package convention; the
references build them from the drawn (top, left, bottom, right) pixel extents,
and the frame is not square, so swapped axes would not go unnoticed.
"""
import numpy as np
import pytest
import tensorflow as tf

from visionjax.data import augment as A
from visionjax.data import transforms as T

H, W = 48, 64
BG = (90, 90, 90)
# class -> (colour, (top, left, bottom, right) in pixel edges)
OBJECTS = {1: ((230, 30, 30), (4, 6, 20, 26)),
           2: ((30, 210, 30), (26, 36, 44, 60)),
           3: ((40, 40, 230), (8, 40, 18, 56))}


def scene(h=H, w=W, objects=OBJECTS):
  img = np.empty((h, w, 3), np.uint8)
  img[:] = BG
  mask = np.zeros((h, w), np.int32)
  boxes, labels = [], []
  for c, (col, (t, l, b, r)) in objects.items():
    img[t:b, l:r] = col
    mask[t:b, l:r] = c
    boxes.append([l / w, t / h, r / w, b / h])  # xyxy
    labels.append(c)
  return {"image": img, "mask": mask, "boxes": np.array(boxes, np.float32),
          "box_labels": np.array(labels, np.int32),
          "box_difficult": np.array([False, True, False])}


def as_tf(ex):
  return {k: tf.constant(v) for k, v in ex.items()}


def as_np(ex):
  return {k: np.asarray(v) for k, v in ex.items()}


def seed(i):
  return tf.constant([7, i], tf.int64)


# ----------------------------------------------------- deterministic transforms
def np_crop_or_pad(ex, top, left, height, width, fill):
  h, w = ex["mask"].shape
  img = np.empty((height, width, 3), np.float64)
  img[:] = fill
  mask = np.full((height, width), 255, np.int32)
  for y in range(height):
    for x in range(width):
      sy, sx = y + top, x + left
      if 0 <= sy < h and 0 <= sx < w:
        img[y, x] = ex["image"][sy, sx]
        mask[y, x] = ex["mask"][sy, sx]
  b = ex["boxes"] * [w, h, w, h] - [left, top, left, top]  # xyxy pixels
  b = np.clip(b, 0, [width, height, width, height])
  keep = ((b[:, 2] - b[:, 0]) >= 0.999) & ((b[:, 3] - b[:, 1]) >= 0.999)
  return (np.round(img).astype(np.uint8), mask,
          b[keep] / [width, height, width, height], ex["box_labels"][keep])


@pytest.mark.parametrize("window", [(0, 0, H, W), (5, 10, 20, 30), (-7, -3, 60, 80),
                                    (30, 50, 40, 40), (-10, 20, 15, 30)])
def test_crop_or_pad_matches_numpy(window):
  ex = scene()
  fill = (11, 22, 33)
  out = as_np(T.crop_or_pad(as_tf(ex), *window, fill=fill))
  img, mask, boxes, labels = np_crop_or_pad(ex, *window, fill)
  np.testing.assert_array_equal(out["image"], img)
  np.testing.assert_array_equal(out["mask"], mask)
  np.testing.assert_allclose(out["boxes"], boxes, atol=1e-6)
  np.testing.assert_array_equal(out["box_labels"], labels)
  # Every per-box key is filtered together.
  assert len(out["box_difficult"]) == len(labels)


def test_flip_matches_numpy():
  ex = scene()
  out = as_np(T.flip_left_right(as_tf(ex)))
  np.testing.assert_array_equal(out["image"], ex["image"][:, ::-1])
  np.testing.assert_array_equal(out["mask"], ex["mask"][:, ::-1])
  b = ex["boxes"]  # xyxy: the x extent mirrors, y stays
  np.testing.assert_allclose(out["boxes"], np.stack(
      [1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]], 1), atol=1e-6)


@pytest.mark.parametrize("size", [(24, 32), (96, 40), (48, 64)])
def test_resize_mask_is_nearest_neighbour_with_half_pixel_centres(size):
  ex = scene()
  out = as_np(T.resize(as_tf(ex), size))
  ys = np.minimum(np.floor((np.arange(size[0]) + 0.5) * H / size[0]), H - 1).astype(int)
  xs = np.minimum(np.floor((np.arange(size[1]) + 0.5) * W / size[1]), W - 1).astype(int)
  np.testing.assert_array_equal(out["mask"], ex["mask"][ys][:, xs])
  np.testing.assert_allclose(out["boxes"], ex["boxes"])  # normalized: unchanged
  assert out["image"].shape == size + (3,) and out["image"].dtype == np.uint8
  if size == (H, W):
    np.testing.assert_array_equal(out["image"], ex["image"])


def np_warp_nearest(mask, forward):
  """Reference: output pixel centre -> inverse map -> nearest input pixel."""
  inv = np.linalg.inv(forward)
  h, w = mask.shape
  out = np.full_like(mask, 255)
  for y in range(h):
    for x in range(w):
      sx, sy, _ = inv @ [x, y, 1.0]
      ix, iy = int(np.floor(sx + 0.5)), int(np.floor(sy + 0.5))
      if 0 <= iy < h and 0 <= ix < w:
        out[y, x] = mask[iy, ix]
  return out


@pytest.mark.parametrize("kind", ["rotation", "shear", "zoom", "shift"])
def test_affine_matches_numpy_reference(kind):
  ex = scene()
  linear = {"rotation": T.rotation_matrix(23.0), "shear": T.shear_matrix(12.0, -7.0),
            "zoom": T.zoom_matrix(1.3, 0.8), "shift": tf.eye(2)}[kind]
  shift = (5.0, -9.0) if kind == "shift" else (0.0, 0.0)
  fwd = T.centre_affine(H, W, linear, shift)
  out = as_np(T.affine(as_tf(ex), fwd))
  ref = np_warp_nearest(ex["mask"], fwd.numpy().astype(np.float64))
  # Exact up to sampling points that fall on a rounding tie in float32.
  assert np.mean(out["mask"] == ref) > 0.995
  if kind == "shift":  # integer shift: exact
    np.testing.assert_array_equal(out["mask"], ref)
  # Boxes: envelope of the four mapped corners (pixel centres -> edges).
  f = fwd.numpy().astype(np.float64)
  for box, c in zip(out["boxes"], out["box_labels"]):
    t, l, b, r = OBJECTS[c][1]
    corners = np.array([[x - 0.5, y - 0.5, 1] for y in (t, b) for x in (l, r)])
    m = corners @ f.T + 0.5  # mapped (x, y, 1)
    env = np.clip([m[:, 0].min(), m[:, 1].min(), m[:, 0].max(), m[:, 1].max()],
                  0, [W, H, W, H])
    np.testing.assert_allclose(box * [W, H, W, H], env, atol=1e-3)


def test_rotation_by_90_degrees_is_exact_on_a_square():
  img = np.random.default_rng(0).integers(0, 255, (9, 9, 3)).astype(np.uint8)
  mask = np.random.default_rng(1).integers(0, 21, (9, 9)).astype(np.int32)
  ex = {"image": tf.constant(img), "mask": tf.constant(mask)}
  out = as_np(T.affine(ex, T.centre_affine(9, 9, T.rotation_matrix(90.0))))
  # Counter-clockwise on screen, as np.rot90 (up to float rounding of cos 90).
  np.testing.assert_array_equal(out["mask"], np.rot90(mask))
  np.testing.assert_array_equal(out["image"], np.rot90(img))


def test_fit_keep_aspect_pads_with_ignore_and_never_upscales():
  ex = scene()
  out = as_np(T.fit(as_tf(ex), (64, 80), keep_aspect=True, allow_upscale=False,
                    fill=(1, 2, 3)))
  np.testing.assert_array_equal(out["image"][:H, :W], ex["image"])
  np.testing.assert_array_equal(out["mask"][:H, :W], ex["mask"])
  assert (out["mask"][H:] == 255).all() and (out["mask"][:, W:] == 255).all()
  assert (out["image"][H:] == (1, 2, 3)).all()
  np.testing.assert_allclose(out["boxes"] * [80, 64, 80, 64],
                             ex["boxes"] * [W, H, W, H], atol=1e-4)
  # Larger images shrink to fit, keeping the aspect ratio (48x64 -> 24x32).
  small = as_np(T.fit(as_tf(ex), (30, 32), keep_aspect=True))
  assert small["mask"].shape == (30, 32)
  assert (small["mask"][24:] == 255).all() and (small["mask"][:24] != 255).all()
  stretched = as_np(T.fit(as_tf(ex), (30, 32), keep_aspect=False))
  np.testing.assert_allclose(stretched["boxes"], ex["boxes"])


def test_box_iou_against_hand_values():
  a = tf.constant([[0.0, 0.0, 2.0, 2.0]])
  b = tf.constant([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
  np.testing.assert_allclose(T.box_iou(a, b).numpy(), [[1 / 7, 1.0, 0.0]], rtol=1e-6)


# ------------------------------------------------------------- random ops
AXIS_ALIGNED = {
    "horizontal_flip": dict(p=0.5),
    "random_crop": dict(size=(32, 40)),
    "pad_crop": dict(pad=6),
    "random_resized_crop": dict(size=(40, 40), scale=(0.2, 1.0)),
    "scale_jitter": dict(size=(40, 48), min_scale=0.5, max_scale=2.0),
    "resize": dict(size=(30, 50)),
    "shift": dict(max_fraction=0.3),
    "zoom": dict(max_fraction=0.4),
    "zoom_out": dict(max_scale=3.0, p=0.8, fill=BG),
    "iou_random_crop": dict(),
}
ENVELOPING = {"rotation": dict(max_degrees=40.0), "shear": dict(max_degrees=20.0)}
PHOTOMETRIC = {"color_jitter": dict(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1),
               "grayscale": dict(p=0.5), "photometric_distortion": dict(),
               "ssd_photometric": dict()}
SEEDS = range(6)


def _interior(mask, c):
  """Pixels of class c whose 3x3 neighbourhood is all class c."""
  m = np.pad(mask == c, 1)
  core = np.ones_like(mask, bool)
  for dy in (-1, 0, 1):
    for dx in (-1, 0, 1):
      core &= m[1 + dy:1 + dy + mask.shape[0], 1 + dx:1 + dx + mask.shape[1]]
  return core


def check_sync(out, enveloping=False, fill=BG, drops_partial=False):
  img, mask = out["image"], out["mask"]
  h, w = mask.shape
  assert img.shape == (h, w, 3) and img.dtype == np.uint8 and mask.dtype == np.int32
  colours = {0: BG, 255: fill, **{c: col for c, (col, _) in OBJECTS.items()}}
  for c, col in colours.items():
    core = _interior(mask, c)
    if core.any():  # image and mask moved together
      assert np.abs(img[core].astype(int) - col).max() <= 2, c
  kept = set(out["box_labels"].tolist())
  for box, c in zip(out["boxes"], out["box_labels"]):
    ys, xs = np.nonzero(mask == c)
    assert len(ys), f"box of class {c} kept but its object left the frame"
    env = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)  # xyxy
    px = box * [w, h, w, h]
    if enveloping:  # the box contains the object
      assert (px[:2] <= env[:2] + 1.0).all() and (px[2:] >= env[2:] - 1.0).all()
    else:  # the box is the object's extent
      np.testing.assert_allclose(px, env, atol=1.5)
  for c in set(OBJECTS) - kept if not drops_partial else ():
    # Dropped: (almost) nothing of it is visible.
    ys, xs = np.nonzero(mask == c)
    assert len(ys) == 0 or min(np.ptp(ys), np.ptp(xs)) <= 2, c


def run_both(op, seeds):
  """Eager outputs, and the same seeds through a tf.data map."""
  ex = as_tf(scene())
  eager = [as_np(op(seed(i), ex)) for i in seeds]
  ds = tf.data.Dataset.from_tensor_slices(list(seeds)).map(
      lambda i: op(tf.stack([tf.constant(7, tf.int64), tf.cast(i, tf.int64)]), ex))
  return eager, list(ds.as_numpy_iterator())


def assert_same(a, b):
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("name", sorted(AXIS_ALIGNED) + sorted(ENVELOPING))
def test_geometric_op_keeps_image_mask_boxes_in_sync(name):
  kwargs = {**AXIS_ALIGNED, **ENVELOPING}[name]
  op = A.OPS[name](**kwargs)
  eager, graph = run_both(op, SEEDS)
  for e, g in zip(eager, graph):
    assert_same(e, g)
    # iou_random_crop drops boxes whose centre left (tested on its own below).
    check_sync(e, enveloping=name in ENVELOPING, fill=kwargs.get("fill", (0, 0, 0)),
               drops_partial=name == "iou_random_crop")
    if isinstance(op.output_size, tuple):
      assert e["mask"].shape == op.output_size
    elif op.output_size == A.SAME:
      assert e["mask"].shape == (H, W)
  # The op is random: not every seed gives the same output.
  assert name == "resize" or any(not np.array_equal(eager[0]["mask"], e["mask"]) for e in eager[1:])
  # ... and deterministic: the same seed gives the same output.
  assert_same(as_np(op(seed(3), as_tf(scene()))), eager[3])


@pytest.mark.parametrize("name", sorted(PHOTOMETRIC))
def test_photometric_op_changes_colours_only(name):
  op = A.OPS[name](**PHOTOMETRIC[name])
  ex = scene()
  eager, graph = run_both(op, SEEDS)
  changed = 0
  for e, g in zip(eager, graph):
    assert_same(e, g)
    np.testing.assert_array_equal(e["mask"], ex["mask"])
    np.testing.assert_array_equal(e["boxes"], ex["boxes"])
    assert e["image"].dtype == np.uint8
    changed += not np.array_equal(e["image"], ex["image"])
    # Uniform regions stay uniform (a per-pixel colour map, nothing spatial).
    for _, (t, l, b, r) in OBJECTS.values():
      patch = e["image"][t:b, l:r].reshape(-1, 3)
      assert (patch == patch[0]).all()
  assert changed >= 2


def test_grayscale_output_is_grey_and_matches_luma():
  op = A.grayscale(p=1.0)
  out = as_np(op(seed(0), as_tf(scene())))
  img = out["image"].astype(int)
  assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
  luma = np.round(np.array(OBJECTS[1][0]) @ [0.2989, 0.587, 0.114])
  t, l, _, _ = OBJECTS[1][1]
  assert abs(img[t, l, 0] - luma) <= 1


def test_photometric_brightness_only_adds_a_constant():
  op = A.photometric_distortion(contrast=(1.0, 1.0), saturation=(1.0, 1.0),
                                hue_delta_degrees=0.0, p=1.0, brightness_delta=32)
  ex = scene()
  deltas = set()
  for i in SEEDS:
    out = as_np(op(seed(i), as_tf(ex)))
    d = out["image"].astype(int) - ex["image"].astype(int)
    unclipped = (ex["image"] > 40) & (ex["image"] < 215)
    assert np.ptp(d[unclipped]) <= 1  # one shift for all pixels (+-rounding)
    assert np.abs(d[unclipped]).max() <= 33
    deltas.add(int(np.median(d[unclipped])))
  assert len(deltas) > 2


def test_pad_crop_is_a_shift_of_at_most_pad_pixels():
  img = np.random.default_rng(0).integers(1, 255, (32, 32, 3)).astype(np.uint8)
  op = A.pad_crop(pad=4)
  offsets = set()
  for i in range(12):
    out = op(seed(i), {"image": tf.constant(img)})["image"].numpy()
    # Find the shift: the output equals the zero-padded input shifted.
    padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
    hits = [(dy, dx) for dy in range(9) for dx in range(9)
            if np.array_equal(padded[dy:dy + 32, dx:dx + 32], out)]
    assert len(hits) == 1
    offsets.add(hits[0])
  assert len(offsets) > 4


@pytest.mark.parametrize("iou_of", ["any", "all"])
def test_iou_random_crop_search_respects_min_iou_centres_and_aspect(iou_of):
  # OBJECTS' pixel extents as xyxy (left, top, right, bottom).
  boxes = np.array([[6, 4, 26, 20], [36, 26, 60, 44], [40, 8, 56, 18]], np.float32)
  found_any = False
  for i in range(20):
    for min_iou in (-1.0, 0.1, 0.3, 0.5):
      found, crop, keep = A.sample_iou_crop(seed(i), tf.constant(boxes), H, W,
                                            min_iou, 0.3, 2.0, 50, iou_of)
      if not bool(found):
        continue
      found_any = True
      l, t, r, b = crop.numpy().astype(float)  # xyxy
      assert 0 <= t < b <= H and 0 <= l < r <= W
      assert 0.5 <= (b - t) / (r - l) <= 2.0
      assert b - t >= np.floor(0.3 * H) and r - l >= np.floor(0.3 * W)
      iou = T.box_iou(tf.constant([[l, t, r, b]], tf.float32), tf.constant(boxes)).numpy()[0]
      assert (iou >= min_iou).any() if iou_of == "any" else (iou >= min_iou).all()
      cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
      np.testing.assert_array_equal(keep.numpy(), (cy > t) & (cy < b) & (cx > l) & (cx < r))
      assert keep.numpy().any()
  assert found_any
  # An impossible constraint is reported as not found.
  found, _, _ = A.sample_iou_crop(seed(0), tf.constant(boxes), H, W, 2.0, 0.3, 2.0, 50)
  assert not bool(found)


def test_iou_random_crop_drops_boxes_whose_centre_leaves():
  # Coordinate-coded image: red = column * 3, green = row * 4 recovers the crop.
  ex = scene()
  yy, xx = np.mgrid[0:H, 0:W]
  ex["image"] = np.stack([xx * 3, yy * 4, np.zeros_like(xx)], -1).astype(np.uint8)
  op = A.iou_random_crop()
  cropped = 0
  for i in range(16):
    out = as_np(op(seed(i), as_tf(ex)))
    h, w = out["mask"].shape
    top, left = out["image"][0, 0, 1] // 4, out["image"][0, 0, 0] // 3
    np.testing.assert_array_equal(out["mask"], ex["mask"][top:top + h, left:left + w])
    px = ex["boxes"] * [W, H, W, H]  # xyxy pixels
    cx, cy = (px[:, 0] + px[:, 2]) / 2, (px[:, 1] + px[:, 3]) / 2
    inside = (cy > top) & (cy < top + h) & (cx > left) & (cx < left + w)
    np.testing.assert_array_equal(out["box_labels"], ex["box_labels"][inside])
    ref = np.clip(px[inside] - [left, top, left, top], 0, [w, h, w, h]) / [w, h, w, h]
    np.testing.assert_allclose(out["boxes"], ref, atol=1e-6)
    cropped += (h, w) != (H, W)
  assert cropped >= 4


def test_zoom_out_places_the_image_inside_a_mean_canvas():
  ex = scene()
  op = A.zoom_out(max_scale=4.0, p=1.0, fill=(123, 117, 104))
  for i in range(4):
    out = as_np(op(seed(i), as_tf(ex)))
    h, w = out["mask"].shape
    assert H <= h <= 4 * H and W <= w <= 4 * W
    ys, xs = np.nonzero(out["mask"] != 255)
    top, left = ys.min(), xs.min()
    np.testing.assert_array_equal(out["image"][top:top + H, left:left + W], ex["image"])
    assert (out["image"][out["mask"] == 255] == (123, 117, 104)).all()
    np.testing.assert_allclose(out["boxes"] * [w, h, w, h],
                               ex["boxes"] * [W, H, W, H] + [left, top, left, top],
                               atol=1e-3)


def test_ops_work_without_mask_or_boxes():
  ex = {"image": tf.constant(scene()["image"]), "label": tf.constant(3)}
  for name, kwargs in {**AXIS_ALIGNED, **ENVELOPING, **PHOTOMETRIC}.items():
    if name == "iou_random_crop":
      with pytest.raises(ValueError, match="needs 'boxes'"):
        A.OPS[name](**kwargs)(seed(0), ex)
      continue
    out = A.OPS[name](**kwargs)(seed(0), ex)
    assert sorted(out) == ["image", "label"] and int(out["label"]) == 3


def test_chain_output_size_and_bad_arguments():
  assert A.chain([A.horizontal_flip(), A.color_jitter()]).output_size == A.SAME
  assert A.chain([A.random_crop((8, 8)), A.horizontal_flip()]).output_size == (8, 8)
  assert A.chain([A.random_crop((8, 8)), A.zoom_out()]).output_size is None
  assert A.chain([A.zoom_out(), A.resize((30, 30))]).output_size == (30, 30)
  with pytest.raises(ValueError, match="size=.*got None"):
    A.random_crop(None)
  with pytest.raises(ValueError, match="p=1.5"):
    A.horizontal_flip(p=1.5)
  with pytest.raises(ValueError, match="base='bogus'"):
    A.scale_jitter((8, 8), base="bogus")


@pytest.mark.parametrize("base", ["image", "fit"])
def test_scale_jitter_equals_resize_then_crop(base):
  """The window-first implementation against the naive one (resize the whole
  image, then crop), with the same random draws."""
  size, ex = (40, 48), as_tf(scene())
  op = A.scale_jitter(size, 0.5, 2.0, base=base)
  agree = []
  for i in range(8):
    s = A._uniform(seed(i), 0, 0.5, 2.0)
    if base == "fit":
      s = s * min(40 / H, 48 / W)
    nh, nw = max(int(np.round(H * float(s))), 1), max(int(np.round(W * float(s))), 1)
    top = int(A._randint(seed(i), 1, 0, max(nh - 40, 0)))
    left = int(A._randint(seed(i), 2, 0, max(nw - 48, 0)))
    ref = as_np(T.crop_or_pad(T.resize(ex, (nh, nw)), top, left, 40, 48))
    out = as_np(op(seed(i), ex))
    agree.append(np.mean(out["mask"] == ref["mask"]))
    np.testing.assert_array_equal(out["box_labels"], ref["box_labels"])
    np.testing.assert_allclose(out["boxes"] * [48, 40, 48, 40],
                               ref["boxes"] * [48, 40, 48, 40], atol=1.5)
  assert min(agree) > 0.9 and np.mean(agree) > 0.97
