"""DetectionTask through the training spine, and the host-side evaluation."""
import json
import os

import jax
import numpy as np
import pytest
from spine_fixtures import tiny_config

from visionjax import tasks
from visionjax.detection import evaluation
from visionjax.metrics import coco, voc
from visionjax.tasks import DetectionTask
from visionjax.train import loop


def _detection_config(data_dir, **overrides):
  c = tiny_config(data_dir, task="detection", **overrides)
  c.model.name = "ssd_lite"
  c.model.encoder_kwargs = {"stage_sizes": (1, 1, 1), "widths": (8, 8, 16), "stem_width": 8}
  c.task_kwargs.max_boxes = 3
  c.task_kwargs.pre_nms_top_k = 20
  c.task_kwargs.max_detections = 20
  return c


def test_create_task_and_validation_errors():
  t = tasks.create("detection", 10, neg_pos_ratio=2.0)
  assert isinstance(t, DetectionTask) and t.neg_pos_ratio == 2.0
  batch = {"image": np.zeros((2, 8, 8, 3), np.float32), "boxes": np.zeros((2, 3, 4), np.float32),
           "box_labels": np.zeros((2, 3), np.int32), "box_valid": np.zeros((2, 4), bool)}
  with pytest.raises(ValueError,
                     match=r"batch\['box_valid'\] has shape \(2, 4\); expected \(2, 3\)"):
    t.validate(batch, 3)
  with pytest.raises(ValueError, match="needs model outputs"):
    t.loss(np.zeros((2, 10)), batch)


def test_train_and_evaluate_on_tiny_scenes_writes_metrics_and_pictures(tiny_data_dir, tmp_path):
  config = _detection_config(tiny_data_dir, num_train_steps=3)
  wd = str(tmp_path / "ssd")
  metrics = loop.train_and_evaluate(config, wd)
  for key in ("map50_voc07", "map50", "coco_ap", "coco_ap50", "loss"):
    assert np.isfinite(metrics[key]), key
    if key != "loss":
      assert 0.0 <= metrics[key] <= 1.0
  assert metrics["num_images"] == 32             # every test image exactly once
  assert len(metrics["ap50_per_class"]) == 10
  with open(os.path.join(wd, "final_metrics.json")) as f:
    assert json.load(f)["num_images"] == 32
  train = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))
           if json.loads(l)["split"] == "train"]
  assert all(np.isfinite(r["loss"]) and r["matches_per_image"] >= 1 for r in train)
  assert os.path.getsize(os.path.join(wd, "predictions.png")) > 0
  assert sorted(os.listdir(os.path.join(wd, "detections"))) == ["000.png", "001.png"]


def test_pmap_and_jit_evaluation_agree(tiny_data_dir):
  """Per-example outputs come back [devices, per-device batch] from pmap."""
  devices = jax.devices()[:2]
  jit_exp = loop.build(_detection_config(tiny_data_dir, engine="jit"), devices=devices)
  state = jit_exp.create_state()
  pmap_exp = loop.build(_detection_config(tiny_data_dir, engine="pmap"), devices=devices)
  # Same initial state on both (initializing once saves a compile).
  pmap_state = pmap_exp.engine.from_checkpoint(jax.device_get(state))
  results = [loop.evaluate(jit_exp, state), loop.evaluate(pmap_exp, pmap_state)]
  a, b = results
  assert a["num_images"] == b["num_images"] == 32
  for key in ("loss", "map50", "map50_voc07", "coco_ap"):
    np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6)


def test_evaluation_equals_the_evaluators_on_pixel_boxes():
  """Normalized padded arrays -> pixels; padding images and boxes dropped."""
  rng = np.random.default_rng(0)
  b, g, d, k, hw = 3, 4, 6, 3, (50, 80)
  gt = np.sort(rng.uniform(0, 1, (b, g, 2, 2)), axis=2).reshape(b, g, 4)[..., [0, 2, 1, 3]]
  dt = np.clip(gt[:, rng.integers(0, g, d)] + rng.normal(0, 0.03, (b, d, 4)), 0, 1)
  ex = {"dt_boxes": dt, "dt_scores": rng.uniform(size=(b, d)),
        "dt_classes": rng.integers(0, k, (b, d)), "dt_valid": rng.random((b, d)) < 0.8,
        "gt_boxes": gt, "gt_labels": rng.integers(0, k, (b, g)),
        "gt_valid": rng.random((b, g)) < 0.8, "gt_difficult": rng.random((b, g)) < 0.2,
        "valid": np.array([True, False, True])}
  state = evaluation.update(evaluation.init(k, hw), ex)
  got = evaluation.compute(state)
  keep = [0, 2]
  scale = np.array([80, 50, 80, 50])
  v = voc.voc_update_batch(
      voc.voc_init(k, pixel_offset=0.0), image_ids=np.arange(2),
      gt_boxes=gt[keep] * scale, gt_labels=ex["gt_labels"][keep], gt_valid=ex["gt_valid"][keep],
      gt_difficult=ex["gt_difficult"][keep], dt_boxes=dt[keep] * scale,
      dt_scores=ex["dt_scores"][keep], dt_labels=ex["dt_classes"][keep],
      dt_valid=ex["dt_valid"][keep])
  c = coco.coco_update_batch(
      coco.coco_init(range(k)), image_ids=np.arange(2), gt_boxes=gt[keep] * scale,
      gt_classes=ex["gt_labels"][keep], gt_valid=ex["gt_valid"][keep],
      gt_iscrowd=ex["gt_difficult"][keep], dt_boxes=dt[keep] * scale,
      dt_scores=ex["dt_scores"][keep], dt_classes=ex["dt_classes"][keep],
      dt_valid=ex["dt_valid"][keep], box_format="xyxy")
  assert got["num_images"] == 2
  np.testing.assert_allclose(got["map50_voc07"], voc.voc_compute(v, use_07_metric=True)["map"])
  np.testing.assert_allclose(got["map50"], voc.voc_compute(v)["map"])
  np.testing.assert_allclose(got["coco_ap"], coco.coco_compute(c)["AP"])
