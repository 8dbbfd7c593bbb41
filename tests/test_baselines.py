"""`visionjax.train.baselines` scores on the tiny built-in scenes, recomputed
here from scikit-image and NumPy on the same images (independent reference:
rgb2gray, threshold_otsu, canny, scipy's binary_fill_holes, IoU by counting)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import feature
from skimage import filters as skfilters
from skimage.color import rgb2gray

from visionjax.train import baselines


def _reference(images, fg, method):
  preds = []
  for img in images:
    gray = rgb2gray(img.astype(np.float32) / 255).astype(np.float32)
    if method == "otsu":
      side = gray > skfilters.threshold_otsu(gray)
      preds.append(~side if side.mean() > 0.5 else side)
    else:
      preds.append(ndi.binary_fill_holes(feature.canny(gray, 1.0)))
  pred = np.stack(preds)
  tp, fp, fn = np.sum(pred & fg), np.sum(pred & ~fg), np.sum(~pred & fg)
  tn = pred.size - tp - fp - fn
  return {"fg_iou": tp / (tp + fp + fn), "pixel_accuracy": (tp + tn) / pred.size,
          "miou": (tp / (tp + fp + fn) + tn / (tn + fp + fn)) / 2}


def test_scores_equal_a_skimage_recomputation(tiny_data_dir):
  rows = baselines.score_baselines("digit_scenes/tiny", "test", count=12,
                                   methods=["otsu", "canny_filled"], data_dir=tiny_data_dir)
  images, fg = baselines.load_split("digit_scenes/tiny", "test", 12, tiny_data_dir)
  assert images.shape == (12, 32, 32, 3) and fg.any()
  for row in rows:
    want = _reference(images, fg, row["method"].split("_")[0])
    for key, value in want.items():
      np.testing.assert_allclose(row[key], value, rtol=1e-9, err_msg=f"{row['method']} {key}")
  table = baselines.format_table(rows)
  assert table.count("\n") == 3 and "| otsu |" in table


def test_unknown_method_is_named(tiny_data_dir):
  with pytest.raises(ValueError, match=r"unknown method\(s\) \['watershed'\]"):
    baselines.score_baselines("digit_scenes/tiny", "test", count=2, methods=["watershed"],
                              data_dir=tiny_data_dir)


def test_unet_row_scores_the_runs_predictions_as_foreground(tiny_data_dir, tmp_path):
  """The README's `visionjax baselines --unet_workdir=RUN` path: the U-Net row
  is the run's own predictions (any digit class = foreground), counted here
  with NumPy from `Predictor` directly."""
  from spine_fixtures import tiny_config

  from visionjax.train import loop
  from visionjax.train.inference import Predictor
  wd = str(tmp_path / "unet")
  loop.train_and_evaluate(tiny_config(tiny_data_dir, "segmentation", num_train_steps=3,
                                      num_visualizations=0), wd)
  rows = baselines.score_baselines("digit_scenes/tiny", "test", count=12, methods=["otsu"],
                                   unet_workdir=wd, unet_checkpoint="latest",
                                   data_dir=tiny_data_dir)
  assert [r["method"] for r in rows] == ["otsu", f"unet ({wd}, latest)"]
  images, fg = baselines.load_split("digit_scenes/tiny", "test", 12, tiny_data_dir)
  pred = np.stack([r["mask"] > 0 for r in Predictor.from_workdir(wd)(list(images))])
  tp, fp, fn = np.sum(pred & fg), np.sum(pred & ~fg), np.sum(~pred & fg)
  tn = pred.size - tp - fp - fn
  np.testing.assert_allclose(rows[1]["pixel_accuracy"], (tp + tn) / pred.size, rtol=1e-9)
  if tp + fp + fn:
    np.testing.assert_allclose(rows[1]["fg_iou"], tp / (tp + fp + fn), rtol=1e-9)
