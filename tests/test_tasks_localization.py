"""LocalizationTask: loss and metrics by hand, and training through the spine."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from spine_fixtures import tiny_config

from visionjax import tasks
from visionjax.train import loop


def _batch():
  return {"image": np.zeros((3, 8, 8, 3), np.float32),
          "label": np.array([1, 0, 2], np.int32),
          # normalized xyxy: (cx, cy, w, h) = (0.5, 0.5, 0.4, 0.4), (0.3, 0.3, 0.2, 0.2), ...
          "box": np.array([[0.3, 0.3, 0.7, 0.7], [0.2, 0.2, 0.4, 0.4], [0.4, 0.4, 0.6, 0.6]],
                          np.float32),
          "valid": np.array([True, True, False])}


def _outputs():
  logits = np.log(np.array([[0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.1, 0.1, 0.8]], np.float32))
  boxes = np.array([[0.5, 0.5, 0.4, 0.3],          # IoU 0.75 with its box
                    [0.3, 0.3, 0.2, 0.2],          # exact box, wrong class
                    [0.5, 0.5, 0.2, 0.2]], np.float32)   # padding
  return {"logits": logits, "boxes": boxes}


def test_loss_and_metrics_by_hand():
  t = tasks.create("localization", 3, box_weight=2.0)
  out, batch = _outputs(), _batch()
  t.validate(batch, 3)
  loss_sum, count = t.loss(out, batch)
  # Example 0: CE = -log 0.7, smooth-L1 on (0, 0, 0, -0.1) = 0.5·0.01 = 0.005;
  # example 1: CE = -log 0.1, exact box; example 2 is padding.
  expected = (-np.log(0.7) + 2.0 * 0.005) + (-np.log(0.1))
  np.testing.assert_allclose(float(loss_sum), expected, rtol=1e-5)
  assert float(count) == 2
  sums = t.eval_sums(out, batch)
  m = t.summarize({k: np.asarray(v) for k, v in sums.items()})
  assert m["accuracy"] == 0.5 and m["num_examples"] == 2
  np.testing.assert_allclose(m["mean_iou"], (0.75 + 1.0) / 2, rtol=1e-6)
  assert m["correct_loc"] == 0.5                   # example 0: right class, IoU 0.75
  np.testing.assert_allclose(m["loss"], expected / 2, rtol=1e-5)


def test_validation_names_the_bad_field():
  t = tasks.create("localization", 3)
  batch = _batch()
  batch["box"] = batch["box"][:, :3]
  with pytest.raises(ValueError, match=r"batch\['box'\] has shape \(3, 3\); expected \(3, 4\)"):
    t.validate(batch, 3)
  with pytest.raises(ValueError, match="needs model outputs"):
    t.loss(jnp.zeros((3, 3)), _batch())


def test_localizer_trains_through_the_spine(tiny_data_dir, tmp_path):
  config = tiny_config(tiny_data_dir, task="localization", num_train_steps=3)
  config.model.name = "resnet18_localizer"
  config.model.encoder_kwargs = {"stage_sizes": (1, 1, 1, 1), "widths": (4, 8, 8, 16),
                                 "stem_width": 4}
  wd = str(tmp_path / "loc")
  metrics = loop.train_and_evaluate(config, wd)
  assert metrics["num_examples"] == 32
  for key in ("accuracy", "mean_iou", "correct_loc"):
    assert 0.0 <= metrics[key] <= 1.0
  # Untrained box head starts at the centred half-size box: IoU > 0 on average.
  assert metrics["mean_iou"] > 0.05
  train = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))
           if json.loads(l)["split"] == "train"]
  assert all(np.isfinite(r["loss"]) for r in train)
  assert os.path.getsize(os.path.join(wd, "predictions.png")) > 0
