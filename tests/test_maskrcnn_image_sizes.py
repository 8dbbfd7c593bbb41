"""Mask R-CNN is told each image's content size (``image_sizes``).

* The pipeline: an instance-segmentation batch of a letterboxed non-square
  image carries ``content`` = the hand-computed (nh, nw), which is exactly
  where its picture ends and the fill begins; another task's batch carries
  no ``content``.
* The model: with ``image_sizes`` (from ``content``, through the task's
  ``model_inputs``) no valid detection box leaves [0, content]; with the
  whole input (what ``image_sizes=None`` means) the same weights put boxes
  in the padding, so the check can fail.
* The train-mode call traces under ``losses.unchecked`` (checkify, as every
  train step): the proposal NMS must run its fixed-trip loop in training,
  since checkify refuses a vmapped early-exit loop.
"""
import jax
import jax.numpy as jnp
import numpy as np
from numpy_init import numpy_init
import pytest
from spine_fixtures import tiny_config
from test_data_instances_coco import H, W, write_coco_instances

from visionjax import losses, tasks
from visionjax.data import datasets, pipeline
from visionjax.models.maskrcnn import REGISTRY


def _coco_data(tmp_path, image_size):
  write_coco_instances(str(tmp_path / "coco"))
  config = tiny_config(str(tmp_path / "tfds"), "detection", **{
      "dataset.name": "coco_json", "dataset.path": str(tmp_path / "coco"),
      "dataset.eval_split": "train", "dataset.image_size": image_size,
      "dataset.augment": ("horizontal_flip",)})
  return pipeline.resolve(config.dataset)


def test_letterboxed_batches_carry_the_picture_size_hand_checked(tmp_path):
  # The fixture's one picture is H x W = 24 x 32, a flat grey (90). Into a
  # 20 x 20 input: scale = min(20/24, 20/32, 1) = 0.625, so 15 x 20 and five
  # rows of fill below it. The train batch (a flip, then the same fit) too.
  assert (H, W) == (24, 32)
  data = _coco_data(tmp_path, (20, 20))
  task = tasks.create("instance_segmentation", 2, max_boxes=8)
  batch = next(pipeline.eval_batches(data, task, batch_size=8))  # 8 test devices
  assert batch["content"].dtype == np.int32 and batch["content"].shape == (8, 2)
  assert batch["content"].tolist() == [[15, 20]] + [[0, 0]] * 7  # then evaluation padding
  dc = data.config
  mean, std = np.asarray(dc.get("mean", (0.5,) * 3)), np.asarray(dc.get("std", (0.25,) * 3))
  fill = (np.asarray(datasets.mean_pixel(dc), np.float32).round() - mean * 255) / (std * 255)
  np.testing.assert_allclose(batch["image"][0, :15],
                             np.broadcast_to((90 - mean * 255) / (std * 255), (15, 20, 3)),
                             atol=1e-5)
  np.testing.assert_allclose(batch["image"][0, 15:], np.broadcast_to(fill, (5, 20, 3)),
                             atol=1e-5)
  task.check_values(batch)  # in range
  train = next(iter(pipeline.train_dataset(data, task, batch_size=8, seed=0)))
  assert train["content"].numpy().tolist() == [[15, 20]] * 8
  # Not upscaled into 30 x 40: the picture keeps 24 x 32.
  data = _coco_data(tmp_path / "big", (30, 40))
  assert next(pipeline.eval_batches(data, task, batch_size=8))["content"][0].tolist() == [24, 32]
  # Another task's batches are as they were.
  other = next(pipeline.eval_batches(data, tasks.create("detection", 2), batch_size=8))
  assert "content" not in other
  bad = {**batch, "content": batch["content"] + np.array([0, 1], np.int32)}
  with pytest.raises(ValueError, match=r"batch\['content'\]\[0, 1\] = 21; expected"):
    task.check_values(bad)


def _lite():
  spec = REGISTRY["maskrcnn_lite"]
  # Random weights, every detection kept (score threshold 0).
  model = spec.factory(num_classes=3, box_score_threshold=0.0)
  variables = numpy_init(jax.eval_shape(model.init, jax.random.key(0),
                                        jnp.zeros((1, 64, 64, 3))), seed=1)
  return model, variables


def test_detections_stay_inside_the_content_size():
  model, variables = _lite()
  task = tasks.create("instance_segmentation", 3)
  rng = np.random.default_rng(0)
  images = rng.standard_normal((3, 64, 64, 3)).astype(np.float32)
  # Image 2 is evaluation padding (content 0): the task gives it the whole input.
  content = np.array([[40, 28], [64, 50], [0, 0]], np.int32)
  sizes = task.model_inputs({"image": images, "content": content}, train=False)["image_sizes"]
  np.testing.assert_array_equal(sizes, [[40, 28], [64, 50], [64, 64]])
  # Unoptimised XLA compiles in a fraction of the time; the model runs in ms.
  run = jax.jit(lambda v, x, s: model.apply(v, x, train=False, image_sizes=s)).lower(
      variables, images, sizes).compile({"xla_backend_optimization_level": 0})
  told = jax.device_get(run(variables, images, sizes))
  whole = jax.device_get(run(variables, images, np.full((3, 2), 64.0, np.float32)))
  limit = np.asarray(sizes)[:, [1, 0, 1, 0]][:, None]  # (w, h, w, h) per image

  def outside(out):
    boxes, valid = out["boxes"], out["valid"]
    bad = ((boxes < 0) | (boxes > limit)).any(-1) & valid
    return bad[:2].sum(), valid[:2].sum()

  n_bad, n_valid = outside(told)
  assert n_valid >= 10 and n_bad == 0
  n_bad, n_valid = outside(whole)
  assert n_valid >= 10 and n_bad >= 5  # the test can fail: 24 of 34 lie in the padding
  # The full-size image is unaffected by the others' sizes.
  for k in ("boxes", "scores", "labels", "valid"):
    np.testing.assert_array_equal(told[k][2], whole[k][2])


def test_train_mode_traces_under_the_train_steps_checkify():
  # The train step is compiled `losses.unchecked` (checkify); checkify
  # refuses a vmapped early-exit while loop, so this trace fails unless the
  # model's proposal NMS runs its fixed trip count in training.
  model, variables = _lite()
  b, g = 2, 3
  targets = {"boxes": jnp.tile(jnp.array([[4.0, 4.0, 30.0, 20.0]]), (b, g, 1)),
             "labels": jnp.ones((b, g), jnp.int32), "valid": jnp.ones((b, g), bool)}

  def apply(v, x, t, s):
    return model.apply(v, x, train=True, targets=t, image_sizes=s,
                       rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"])

  x = jnp.zeros((b, 64, 64, 3))
  sizes = jnp.array([[40.0, 28.0], [64.0, 64.0]])
  jaxpr = jax.make_jaxpr(losses.unchecked(apply))(variables, x, targets, sizes)
  assert jaxpr.jaxpr.outvars
