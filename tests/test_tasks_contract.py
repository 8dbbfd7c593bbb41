"""One test base that every registered task passes (`visionjax.tasks.REGISTRY`).

For each task: it builds from the registry, cuts its targets from a canonical
tf example, accepts a good batch and rejects a bad one with a ValueError
naming the field, its loss and metrics are exact over padded batches (the
real examples alone, computed without padding, give the same sums and the
same summary), and its picture is written. A task added to the registry
without a case below fails `test_every_registered_task_has_a_case`.
"""
from __future__ import annotations

import re

import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from visionjax import tasks

K = 3          # classes
B, H, W = 4, 8, 8
REAL = 3       # the 4th example of each batch is evaluation padding


def _boxes(rng, n):
  """n valid normalized xyxy boxes."""
  xy = rng.uniform(0.0, 0.5, (n, 2))
  wh = rng.uniform(0.2, 0.45, (n, 2))
  return np.concatenate([xy, xy + wh], -1).astype(np.float32)


def _classification(rng):
  batch = {"label": rng.integers(0, K, B).astype(np.int32)}
  outputs = rng.normal(size=(B, K)).astype(np.float32)
  return batch, outputs, {"label": 1}


def _segmentation(rng):
  mask = rng.integers(0, K, (B, H, W)).astype(np.int32)
  mask[0, :2] = 255  # some ignored pixels
  batch = {"mask": mask}
  outputs = rng.normal(size=(B, H, W, K)).astype(np.float32)
  return batch, outputs, {"mask": np.ones((H, W), np.int32)}


def _localization(rng):
  batch = {"label": rng.integers(0, K, B).astype(np.int32), "box": _boxes(rng, B)}
  outputs = {"logits": rng.normal(size=(B, K)).astype(np.float32),
             "boxes": rng.uniform(0.2, 0.6, (B, 4)).astype(np.float32)}  # cx, cy, w, h
  return batch, outputs, {"boxes": _boxes(rng, 2), "box_labels": np.array([0, 2], np.int32)}


def _detection(rng):
  g, a = 3, 16
  batch = {"boxes": np.stack([_boxes(rng, g) for _ in range(B)]),
           "box_labels": rng.integers(0, K, (B, g)).astype(np.int32),
           "box_valid": np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]], bool),
           "box_difficult": np.zeros((B, g), bool)}
  outputs = {"logits": rng.normal(size=(B, a, K + 1)).astype(np.float32),
             "offsets": rng.normal(0, 0.3, (B, a, 4)).astype(np.float32),
             "anchors": _boxes(rng, a)}
  example = {"boxes": _boxes(rng, 2), "box_labels": np.array([0, 2], np.int32),
             "box_difficult": np.zeros(2, bool)}
  return batch, outputs, example


def _instance_segmentation(rng):
  """Training outputs (RPN, sampled RoIs, heads) and inference outputs
  (padded detections with M×M masks) in one dict: the task reads each part
  where it needs it (loss/train_sums, and eval/postprocess)."""
  g, a, s, p, m, d = 3, 16, 6, 2, 4, 5
  inst = rng.integers(0, 3, (B, H, W)).astype(np.int32)
  inst[0, 0] = 255  # void pixels
  batch = {"boxes": np.stack([_boxes(rng, g) for _ in range(B)]),
           "box_labels": rng.integers(0, K, (B, g)).astype(np.int32),
           "box_valid": np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]], bool),
           "instances": inst, "box_instance": np.array([[1, 2, 0]] * B, np.int32)}
  positive = np.zeros((B, s), bool)
  positive[:, :p] = [[1, 1], [1, 0], [1, 1], [0, 0]]
  rois = {"boxes": np.stack([_boxes(rng, s) for _ in range(B)]) * H,
          "labels": np.where(positive, rng.integers(1, K + 1, (B, s)), 0).astype(np.int32),
          "matches": np.where(positive, rng.integers(0, 2, (B, s)), 0).astype(np.int32),
          "deltas": np.where(positive[..., None], rng.normal(0, 0.5, (B, s, 4)), 0
                             ).astype(np.float32),
          "valid": np.arange(s) < 5 + np.zeros((B, 1), bool), "positive": positive}
  det_valid = np.arange(d) < np.array([[3], [1], [0], [2]])
  outputs = {"objectness": rng.normal(size=(B, a)).astype(np.float32),
             "rpn_deltas": rng.normal(0, 0.3, (B, a, 4)).astype(np.float32),
             "anchors": _boxes(rng, a) * H, "rpn_key": np.array([0, 7], np.uint32),
             "rois": rois, "class_logits": rng.normal(size=(B, s, K + 1)).astype(np.float32),
             "box_deltas": rng.normal(size=(B, s, K + 1, 4)).astype(np.float32),
             "mask_logits": rng.normal(size=(B, p, m, m, K + 1)).astype(np.float32),
             "boxes": np.stack([_boxes(rng, d) for _ in range(B)]) * H * det_valid[..., None],
             "scores": rng.uniform(0.3, 1, (B, d)).astype(np.float32) * det_valid,
             "labels": rng.integers(1, K + 1, (B, d)).astype(np.int32) * det_valid,
             "valid": det_valid,
             "masks": rng.uniform(0, 1, (B, d, m, m)).astype(np.float32) * det_valid[..., None,
                                                                                       None]}
  example = {"boxes": _boxes(rng, 2), "box_labels": np.array([0, 2], np.int32),
             "box_difficult": np.zeros(2, bool), "box_instance": np.array([1, 2], np.int32),
             "instances": rng.integers(0, 3, (H, W, 1)).astype(np.uint8)}
  return batch, outputs, example


def _denoising(rng):
  clean = rng.uniform(0, 1, (B, H, W, 3)).astype(np.float32)
  batch = {"clean": clean, "noisy": np.clip(clean + rng.normal(0, 0.2, clean.shape), 0, 1
                                            ).astype(np.float32)}
  outputs = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
  return batch, outputs, {}


# The class-id field each task checks on host, and an element of it that is
# real (not padding, not a padded box); None: the task has no class ids.
CLASS_IDS = {"classification": ("label", (1,)), "segmentation": ("mask", (1, 3, 5)),
             "localization": ("label", (2,)), "detection": ("box_labels", (2, 1)),
             "instance_segmentation": ("box_labels", (2, 1)), "denoising": None}

CASES = {"classification": (_classification, {}),
         "segmentation": (_segmentation, {"dice_weight": 0.5, "foreground_weight": 2.0}),
         "localization": (_localization, {}),
         "detection": (_detection, {"max_boxes": 3, "score_threshold": 0.0}),
         # Every anchor sampled (16 <= 32): the sums do not depend on the draw.
         "instance_segmentation": (_instance_segmentation, {"max_boxes": 3,
                                                            "rpn_batch_size": 32}),
         "denoising": (_denoising, {"l1_weight": 1.0, "l2_weight": 0.5, "ssim_weight": 0.3,
                                    "ssim_sigma": 0.5})}  # a 5-tap window: 8x8 images


def test_every_registered_task_has_a_case():
  assert set(tasks.REGISTRY) == set(CASES) == set(CLASS_IDS), "add a case for each new task"
  for name, cls in tasks.REGISTRY.items():
    assert cls.name == name
    assert cls.annotation in ("label", "mask", "boxes", "instances")


def _make(name):
  make, kwargs = CASES[name]
  rng = np.random.default_rng(0)
  batch, outputs, example = make(rng)
  batch["image"] = rng.normal(size=(B, H, W, 3)).astype(np.float32)
  return tasks.create(name, K, **kwargs), batch, outputs, example


def _take(tree, n):
  return jax.tree.map(lambda x: x[:n] if np.ndim(x) and len(x) == B else x, tree)


def _sums_and_summary(task, outputs, batch):
  sums = jax.device_get(jax.jit(task.eval_sums)(outputs, batch))
  examples = jax.device_get(jax.jit(task.eval_examples)(outputs, batch))
  state = task.eval_update(task.eval_init((H, W)), examples)
  return sums, task.summarize(sums, state)


@pytest.mark.parametrize("name", sorted(CASES))
def test_task_contract(name, tmp_path):
  task, batch, outputs, example = _make(name)
  assert tasks.create(name, K, **CASES[name][1]) == task  # frozen, hashable: a jit static

  # Targets from a canonical example, in tf (as the pipeline calls them).
  ex = {k: tf.constant(v) for k, v in example.items()}
  targets = task.targets({"image": tf.zeros((H, W, 3), tf.uint8), **ex})
  assert targets and set(targets) <= set(batch)

  # A good batch passes; a bad one is refused naming the field.
  task.validate(batch, 3)
  with pytest.raises(ValueError, match="channels"):
    task.validate({**batch, "image": batch["image"][..., :1]}, 3)
  key = next(k for k in batch if k != "image")
  with pytest.raises(ValueError, match=key):
    task.validate({k: v for k, v in batch.items() if k != key}, 3)

  # Host-side value checks (every training batch, NumPy, before the device
  # copy): class ids outside [0, K) ∪ {ignore} are refused naming the field,
  # the element, the value and the range; padding and ignored values are not.
  task.check_values(batch)
  ids, where = CLASS_IDS[name] or (None, None)
  for bad_value in ((K, -1) if ids else ()):
    bad = {**batch, ids: batch[ids].copy()}
    bad[ids][where] = bad_value
    index = re.escape(str(list(where)))
    with pytest.raises(ValueError, match=rf"batch\['{ids}'\]{index} = {bad_value}; expected "
                                         rf"class ids in \[0, {K}\)"):
      task.check_values(bad)
    padding = {**batch, ids: batch[ids].copy(), "valid": np.arange(B) < REAL}
    padding[ids][REAL] = bad_value  # the padded example: not checked
    task.check_values(padding)
  if name == "segmentation":
    task.check_values({**batch, "mask": np.full_like(batch["mask"], 255)})  # ignore_index
  if name in ("detection", "instance_segmentation"):  # padded boxes' labels: not checked
    unused = {**batch, "box_labels": batch["box_labels"].copy()}
    unused["box_labels"][0, 2] = 99
    task.check_values(unused)
  floats = {"localization": "box", "detection": "boxes", "instance_segmentation": "boxes",
            "denoising": "clean"}.get(name)
  if floats:
    nan = {**batch, floats: batch[floats].copy()}
    nan[floats][(0,) * (nan[floats].ndim - 1) + (2,)] = np.nan
    with pytest.raises(ValueError, match=rf"batch\['{floats}'\]\[0, .*2\] = nan; "
                                         "expected finite values"):
      task.check_values(nan)

  # Exact over padding: the padded batch (garbage in the padded example,
  # masked by `valid`) gives the sums of the real examples alone.
  padded = {**batch, "valid": np.arange(B) < REAL}
  real = _take(batch, REAL)
  real_out = _take(outputs, REAL)
  if name == "detection":
    real_out["anchors"] = outputs["anchors"]
  loss_p, count_p = jax.jit(task.loss)(outputs, padded)
  loss_r, count_r = jax.jit(task.loss)(real_out, real)
  np.testing.assert_allclose(float(loss_p), float(loss_r), rtol=1e-5)
  np.testing.assert_allclose(float(count_p), float(count_r), rtol=1e-6)
  sums_p, summary_p = _sums_and_summary(task, outputs, padded)
  sums_r, summary_r = _sums_and_summary(task, real_out, real)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), sums_p, sums_r)
  assert summary_p.keys() == summary_r.keys()
  scalars = {k for k, v in summary_p.items() if np.ndim(v) == 0 and not isinstance(v, list)}
  assert scalars == set(task.metrics)  # what best_metric is validated against
  for k in summary_p:
    np.testing.assert_allclose(np.asarray(summary_p[k], np.float64),
                               np.asarray(summary_r[k], np.float64), rtol=1e-5, err_msg=k)
  train = task.summarize_train(jax.device_get(jax.jit(task.train_sums)(outputs, padded)))
  assert train and all(np.isfinite(v) for v in train.values())

  # The picture.
  predictions = jax.device_get(jax.jit(task.postprocess)(_take(outputs, 2) if name != "detection"
                                                        else {**_take(outputs, 2),
                                                              "anchors": outputs["anchors"]}))
  path = tmp_path / "predictions.png"
  images = np.clip(batch["image"][:2] * 0.25 + 0.5, 0, 1)
  task.visualize(images, batch, predictions, [f"c{i}" for i in range(K + 1)], str(path))
  with Image.open(path) as im:
    assert im.size[0] > 50 and im.size[1] > 50

  # Your own images: one image's inference outputs -> a result at its own
  # size (here 2H x 3W) -> drawn over it.
  one_out = _take(outputs, 1) if name != "detection" else {**_take(outputs, 1),
                                                           "anchors": outputs["anchors"]}
  inf = jax.device_get(jax.jit(task.inference_outputs)(one_out))
  first = jax.tree.map(lambda a: np.asarray(a)[0], inf)
  result = task.to_result(first, class_names=[f"c{i}" for i in range(K)], content=(H, W),
                          size=(2 * H, 3 * W))
  assert result
  if "mask" in result:
    assert result["mask"].shape == (2 * H, 3 * W)
  drawn = task.draw_result(np.zeros((2 * H, 3 * W, 3), np.uint8), result,
                           [f"c{i}" for i in range(K)])
  assert drawn.dtype == np.uint8 and drawn.shape == (2 * H, 3 * W, 3)


def test_unknown_task_and_bad_option_name_the_problem():
  with pytest.raises(ValueError, match="unknown task 'segmentaton'"):
    tasks.create("segmentaton", 3)
  with pytest.raises(ValueError, match="dice_wieght"):
    tasks.create("segmentation", 3, dice_wieght=0.5)
