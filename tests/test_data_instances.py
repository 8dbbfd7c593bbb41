"""Per-object instance masks in the data: the built-in scenes' instance map,
and ``instances`` / ``box_instance`` kept in sync with the boxes by every
spatial augmentation, the fitting and `pad_boxes`.

References are independent of the code under test: the scenes' semantic mask
and boxes (digits never overlap, so the semantic mask inside box k is digit
k's instance), the scene renderer as it was before instance maps existed
(read from git history), and NumPy geometry on the augmented arrays.
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from visionjax.data import augment as A
from visionjax.data import scenes
from visionjax.data import transforms as T

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# main before instance maps were added to `render_scene`.
BEFORE_INSTANCES = "ef3edfb771894b8598b29b5abb9e66e044af8fc3"
TINY = scenes.SceneSpec(height=32, width=32, min_objects=1, max_objects=2,
                        min_size=12, max_size=16)
DENSE = scenes.SceneSpec(min_objects=3, max_objects=5, min_size=16, max_size=24,
                         clutter=3, warp=0.6)


def _pixel_yxyx(bbox, h, w):
  return np.round(np.asarray(bbox) * [h, w, h, w]).astype(int)


@pytest.mark.parametrize("spec", [TINY, DENSE], ids=["tiny", "dense64"])
def test_scene_instances_are_the_semantic_mask_inside_each_box(spec):
  sources = scenes.digit_sources("test")
  for seed in range(25):
    s = scenes.render_scene(np.random.default_rng(seed), sources, spec)
    inst, mask = s["instances"], s["mask"]
    h, w = mask.shape
    assert inst.dtype == np.uint8 and inst.shape == (h, w)
    # Ids 1..N, one per box, and instance pixels are exactly the ink pixels.
    assert set(np.unique(inst)) - {0} == set(range(1, len(s["bbox"]) + 1))
    np.testing.assert_array_equal(inst > 0, mask > 0)
    for k, (box, lab) in enumerate(zip(s["bbox"], s["bbox_label"])):
      y0, x0, y1, x1 = _pixel_yxyx(box, h, w)
      inside = np.zeros((h, w), bool)
      inside[y0:y1, x0:x1] = True
      np.testing.assert_array_equal(inst == k + 1, inside & (mask == lab + 1))


def _scenes_before_instances():
  """`visionjax/data/scenes.py` at BEFORE_INSTANCES, imported as a module."""
  try:
    src = subprocess.run(["git", "-C", REPO, "show",
                          f"{BEFORE_INSTANCES}:visionjax/data/scenes.py"],
                         capture_output=True, text=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError) as e:
    pytest.skip(f"needs the git history (commit {BEFORE_INSTANCES}): {e}")
  spec = importlib.util.spec_from_loader("scenes_before_instances", loader=None)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up
  try:
    exec(compile(src, "scenes_before_instances.py", "exec"), module.__dict__)
  finally:
    del sys.modules[spec.name]
  return module


def test_instances_leave_every_other_output_and_the_random_stream_unchanged():
  old = _scenes_before_instances()
  for spec in (TINY, DENSE):
    old_spec = old.SceneSpec(**{f: getattr(spec, f) for f in old.SceneSpec.__dataclass_fields__})
    for split in ("train", "test"):
      sources = scenes.digit_sources(split)
      for seed in range(8):
        rng_old, rng_new = np.random.default_rng(seed), np.random.default_rng(seed)
        a = old.render_scene(rng_old, sources, old_spec)
        b = scenes.render_scene(rng_new, sources, spec)
        assert set(b) == set(a) | {"instances"}
        for k in a:
          assert a[k].dtype == b[k].dtype, k
          np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert rng_old.random() == rng_new.random()  # same draws consumed


def test_scene_spec_rejects_more_objects_than_uint8_ids():
  with pytest.raises(ValueError, match="max_objects=255"):
    scenes.SceneSpec(max_objects=255)


# --------------------------------------------------------------- augmentation
def _canonical_scenes(count):
  """Canonical examples (`datasets._digit_scenes` of the TFDS record) of
  rendered dense scenes, without building a TFDS dataset."""
  from visionjax.data import datasets
  sources = scenes.digit_sources("test")
  out = []
  for seed in range(count):
    s = scenes.render_scene(np.random.default_rng(seed), sources, DENSE)
    record = {"image": s["image"], "label": s["label"],
              "segmentation_mask": s["mask"][..., None],
              "instance_mask": s["instances"][..., None],
              "objects": {"bbox": s["bbox"], "label": s["bbox_label"]}}
    out.append(datasets._digit_scenes(
        tf.nest.map_structure(tf.constant, record)))
  return out


def check_instances_follow_boxes(ex, what, slack=1.0):
  """Every kept box with an id: its instance pixels lie inside it (within
  ``slack`` px) and carry its class in the semantic mask; a box that no crop
  cut (it is 2 px clear of the frame edge and of padding, where the
  semantic mask is 255) is the tight extent of its instance pixels to within
  ``slack`` px."""
  ex = {k: np.asarray(v) for k, v in ex.items()}
  inst, mask = ex["instances"], ex["mask"]
  h, w = mask.shape
  assert inst.shape == (h, w) and inst.dtype == np.int32, what
  # The same resampling as the semantic mask, pixel for pixel; new pixels
  # are "no instance" where the mask says "ignore".
  np.testing.assert_array_equal(inst > 0, (mask > 0) & (mask != T.IGNORE), err_msg=what)
  ids, boxes = ex["box_instance"], ex["boxes"] * [w, h, w, h]
  assert len(ids) == len(boxes) == len(ex["box_labels"]), what
  assert len(set(ids.tolist())) == len(ids), what  # ids stay distinct
  checked = 0
  for box, lab, i in zip(boxes, ex["box_labels"], ids):
    pix = inst == i
    assert np.all(mask[pix] == lab + 1), (what, i)
    ys, xs = np.nonzero(pix)
    x0, y0 = int(np.floor(box[0])) - 2, int(np.floor(box[1])) - 2
    x1, y1 = int(np.ceil(box[2])) + 2, int(np.ceil(box[3])) + 2
    cut = (x0 < 0 or y0 < 0 or x1 > w or y1 > h
           or bool(np.any(mask[max(y0, 0):y1, max(x0, 0):x1] == T.IGNORE)))
    if not len(ys):
      assert cut, (what, i, box)  # only a crop may leave a box without pixels
      continue
    tight = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
    assert np.all(tight[:2] >= box[:2] - slack) and np.all(tight[2:] <= box[2:] + slack), (
        what, i, tight, box)
    if not cut:
      np.testing.assert_allclose(tight, box, atol=slack, err_msg=f"{what} id {i}")
      checked += 1
  # Instance ids left in the map belong to kept boxes or to dropped ones.
  return checked


GEOMETRIC = {
    "scale_jitter+flip": [A.scale_jitter(size=(48, 56), min_scale=0.75, max_scale=2.0),
                          A.horizontal_flip(p=0.5)],
    "zoom_out+iou_crop+resize": [A.zoom_out(max_scale=2.0, p=1.0),
                                 A.iou_random_crop(), A.resize(size=(64, 48))],
    "random_resized_crop": [A.random_resized_crop(size=(64, 64), scale=(0.3, 1.0))],
    "random_crop+pad_crop": [A.random_crop(size=(40, 40)), A.pad_crop(pad=6)],
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_instances_follow_boxes_through_augmentation_and_fitting(name):
  op = A.chain(GEOMETRIC[name])
  checked = 0
  fits = (((80, 48), True), ((40, 72), False))
  for i, ex in enumerate(_canonical_scenes(4)):
    for draw in range(2):
      out = op(tf.constant([i, draw], tf.int64), ex)
      # Each op resamples (nearest) at most once: a pixel, plus half a pixel
      # for scale_jitter's rounding of its window ("up to a pixel of
      # rounding" against resize-then-crop; 1.36 px seen over 100 draws).
      checked += check_instances_follow_boxes(out, f"{name} #{i}.{draw}", slack=1.5)
      size, keep_aspect = fits[draw]
      fitted = T.fit(out, size, keep_aspect=keep_aspect, fill=128.0)
      assert fitted["instances"].shape == size
      # Two nearest resamplings in a row: one more pixel (2.48 px seen).
      checked += check_instances_follow_boxes(
          fitted, f"{name} #{i}.{draw} fit {size} {keep_aspect}", slack=2.5)
  assert checked >= 6  # whole boxes exist, so tightness is really tested


@pytest.mark.parametrize("size,keep_aspect", [((80, 48), True), ((40, 72), False),
                                              ((64, 64), True)])
def test_fitting_alone_keeps_instances_within_a_pixel_of_their_boxes(size, keep_aspect):
  checked = 0
  for i, ex in enumerate(_canonical_scenes(6)):
    fitted = T.fit(ex, size, keep_aspect=keep_aspect, fill=128.0)
    checked += check_instances_follow_boxes(fitted, f"#{i} fit {size} {keep_aspect}")
  assert checked >= 12  # boxes 2 px clear of the edges


def test_new_pixels_have_no_instance_and_flip_mirrors_the_map():
  ex = _canonical_scenes(1)[0]
  inst = np.asarray(ex["instances"])
  out = T.crop_or_pad(ex, -5, -7, 80, 90, fill=10.0)
  got = np.asarray(out["instances"])
  assert np.all(np.asarray(out["mask"])[:5] == T.IGNORE)  # the mask is ignored there...
  assert np.all(got[:5] == 0) and np.all(got[:, :7] == 0)  # ...instances are none
  np.testing.assert_array_equal(got[5:69, 7:71], inst)
  np.testing.assert_array_equal(np.asarray(T.flip_left_right(ex)["instances"]),
                                inst[:, ::-1])
  rot = T.affine(ex, T.centre_affine(64, 64, T.rotation_matrix(90.0)))
  np.testing.assert_array_equal(np.asarray(rot["instances"]), np.rot90(inst))


def test_dropped_boxes_take_their_instance_ids_along():
  ex = _canonical_scenes(1)[0]
  boxes, ids = np.asarray(ex["boxes"]), np.asarray(ex["box_instance"])
  # A window holding only the first box: the other boxes leave the frame.
  x0, y0, x1, y1 = np.round(boxes[0] * 64).astype(int)
  others = [k for k in range(1, len(boxes))
            if not (boxes[k, 0] * 64 < x1 and boxes[k, 2] * 64 > x0
                    and boxes[k, 1] * 64 < y1 and boxes[k, 3] * 64 > y0)]
  out = T.crop_or_pad(ex, y0, x0, y1 - y0, x1 - x0)
  assert others  # the scene has boxes outside the window
  kept = np.asarray(out["box_instance"])
  assert 1 in kept and not set(ids[others]) & set(kept.tolist())
  check_instances_follow_boxes(out, "crop to box 0")


def test_pad_boxes_pads_box_instance_with_zero_and_only_when_present():
  ex = {"boxes": tf.constant([[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.4, 0.9],
                              [0.0, 0.0, 1.0, 1.0]]),
        "box_labels": tf.constant([3, 1, 2]), "box_difficult": tf.constant([False] * 3),
        "box_instance": tf.constant([4, 0, 7])}
  out = T.pad_boxes(ex, 5)
  np.testing.assert_array_equal(out["box_instance"], [4, 0, 7, 0, 0])
  assert out["box_instance"].dtype == tf.int32
  np.testing.assert_array_equal(T.pad_boxes(ex, 2)["box_instance"], [4, 0])
  del ex["box_instance"]
  assert "box_instance" not in T.pad_boxes(ex, 5)


def test_gt_masks_of_a_padded_batch_are_each_boxs_digit():
  """The contract's on-device masks, built in NumPy from `pad_boxes` output,
  equal each digit's pixels in the rendered scene (semantic mask in its box)."""
  for ex in _canonical_scenes(3):
    t = T.pad_boxes(ex, 6)
    inst = np.asarray(ex["instances"])
    ids, valid = np.asarray(t["box_instance"]), np.asarray(t["box_valid"])
    gt = (inst[None] == ids[:, None, None]) & (ids[:, None, None] > 0)
    mask, boxes = np.asarray(ex["mask"]), np.asarray(t["boxes"])
    for g in range(6):
      if not valid[g]:
        assert not gt[g].any()
        continue
      x0, y0, x1, y1 = np.round(boxes[g] * 64).astype(int)
      ref = np.zeros_like(gt[g])
      ref[y0:y1, x0:x1] = mask[y0:y1, x0:x1] == t["box_labels"][g].numpy() + 1
      np.testing.assert_array_equal(gt[g], ref)


# ------------------------------------------------------------------ pipeline
class _InstanceTargets:
  """The batch fields of the instance-segmentation contract (a stand-in for
  the task: only what the pipeline calls)."""
  annotation = "instances"
  dense = True

  def corrupt(self, seed, ex):
    return ex

  def targets(self, ex):
    return {**T.pad_boxes(ex, 4), "instances": ex["instances"], "mask": ex["mask"]}


def test_train_batches_carry_instances_only_for_an_instance_task(tiny_data_dir):
  from spine_fixtures import tiny_config

  from visionjax import tasks
  from visionjax.data import pipeline
  config = tiny_config(tiny_data_dir, "detection", **{
      "dataset.image_size": (40, 48),
      "dataset.augment": (("scale_jitter", {"min_scale": 0.75, "max_scale": 1.5}),
                          "horizontal_flip")})
  data = pipeline.resolve(config.dataset)
  assert data.num_classes("instances") == 10
  batch = next(iter(pipeline.train_dataset(data, _InstanceTargets(), batch_size=8, seed=0)))
  batch = {k: v.numpy() for k, v in batch.items()}
  assert batch["instances"].shape == (8, 40, 48) and batch["instances"].dtype == np.int32
  assert batch["box_instance"].shape == (8, 4) and batch["box_instance"].dtype == np.int32
  checked = 0
  for b in range(8):
    valid = batch["box_valid"][b]
    assert np.all(batch["box_instance"][b][~valid] == 0)
    # The contract's on-device masks: one per valid box, its digit's pixels.
    checked += check_instances_follow_boxes(
        {"instances": batch["instances"][b], "mask": batch["mask"][b],
         "boxes": batch["boxes"][b][valid], "box_labels": batch["box_labels"][b][valid],
         "box_instance": batch["box_instance"][b][valid]}, f"batch {b}", slack=2.5)
  assert checked >= 4
  # Another task's batches do not carry (or resample) the instance map.
  other = next(pipeline.eval_batches(data, tasks.create("detection", 10), batch_size=8))
  assert "box_valid" in other and not {"box_instance", "instances"} & set(other)
  # ... nor decode it: its stored PNG is dropped undecoded (a full-size PNG
  # decode per example saved for every task but instance segmentation).
  raw = next(iter(pipeline.load_split(data, "train", shuffle_files=False, seed=0,
                                      decode=False)[0]))
  dropped = pipeline.decode_fn(data, tasks.create("detection", 10))(raw)
  kept = pipeline.decode_fn(data, _InstanceTargets())(raw)
  assert "instance_mask" not in dropped and kept["instance_mask"].shape[-1] == 1
  assert set(kept) - set(dropped) == {"instance_mask"}
  for k in ("image", "segmentation_mask"):
    np.testing.assert_array_equal(dropped[k].numpy(), kept[k].numpy())
