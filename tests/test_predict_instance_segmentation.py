"""`visionjax predict` on a Mask R-CNN run: the CLI's JSON equals the
in-process Predictor's result of the same checkpoint on the same files, and
it writes the overlay.

The default tests: `InstanceSegmentationTask.to_result` on a hand-checked
case (boxes in the input's padding), and the CLI's writer
(`visionjax.cli.predict.write_predictions`) on a maskrcnn_lite Predictor
with NumPy-initialised weights, whose results are the model's outputs
given the picture's content size (``image_sizes``). The slow test trains maskrcnn_lite for 2
steps through the loop and runs `experiments/predict.py` in a fresh process
(checkpoint restore and flags included): 207 s wall at load ~5 on the
2-core machine, too slow for the default run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from numpy_init import numpy_init
from PIL import Image
import pytest
from spine_fixtures import REPO

from visionjax import ops, tasks
from visionjax.cli.predict import write_predictions
from visionjax.configs import maskrcnn_scenes
from visionjax.train import loop
from visionjax.train.inference import Predictor, read_image

# (h, w). 23 x 30 goes into the 32 x 32 input unscaled, leaving padding rows
# (dense tasks never upscale). One size in the default test: each output size
# compiles the mask paste (~3 CPU-s). The slow test adds a downscaled image
# with padding (wide) and one without (square).
SIZES = {"small": (23, 30)}
SLOW_SIZES = {"wide": (40, 52), "small": (23, 30), "square": (64, 64)}


def _photos(folder, sizes=SIZES):
  folder.mkdir()
  rng = np.random.default_rng(0)
  for name, (h, w) in sizes.items():
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}.png")
  return [str(folder / f"{n}.png") for n in sizes]


def _check_record(record, want, class_names, h, w):
  """One JSON record against the in-process result; returns its detections."""
  assert set(record) == {"image", "step", "boxes", "classes", "names", "scores", "masks"}
  n = len(want["scores"])
  boxes = np.asarray(record["boxes"], np.float32).reshape(-1, 4)
  masks = np.asarray(record["masks"], bool).reshape(-1, h, w)
  assert boxes.shape == (n, 4) and masks.shape == (n, h, w)
  # The same program on the same pixels: equal up to float32 -> JSON decimal.
  np.testing.assert_allclose(boxes, want["boxes"], rtol=1e-6, atol=1e-4)
  np.testing.assert_allclose(record["scores"], want["scores"], rtol=1e-6)
  assert record["classes"] == want["classes"].tolist()
  assert record["names"] == [class_names[c] for c in want["classes"]]
  np.testing.assert_array_equal(masks, want["masks"])
  # Boxes in pixels of the original image, scores sorted.
  assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= w) and np.all(boxes[:, [1, 3]] <= h)
  assert np.all(np.diff(record["scores"]) <= 0)
  return n


def test_to_result_clips_boxes_to_the_picture_hand_checked():
  # A 20 x 30 picture in a 32 x 32 input, not upscaled (content = size):
  # rows 20-31 are padding. Box 0 lies inside, box 1 crosses the bottom edge,
  # box 2 lies wholly in the padding, box 3 is a padded slot.
  task = tasks.create("instance_segmentation", 3)
  boxes = np.array([[2, 3, 10, 9], [12, 14, 20, 28], [4, 22, 12, 30], [0, 0, 0, 0]], np.float32)
  masks = np.ones((4, 4, 4), np.float32)            # every box filled
  out = {"boxes": boxes, "masks": masks, "scores": np.array([0.9, 0.8, 0.7, 0.0], np.float32),
         "classes": np.array([0, 2, 1, 0], np.int32), "valid": np.array([1, 1, 1, 0], bool)}
  r = task.to_result(out, class_names=("a", "b", "c"), content=(20, 30), size=(20, 30))
  np.testing.assert_allclose(r["boxes"], [[2, 3, 10, 9], [12, 14, 20, 20]])
  assert r["classes"].tolist() == [0, 2] and r["names"] == ["a", "c"]
  np.testing.assert_allclose(r["scores"], [0.9, 0.8])
  assert r["masks"].shape == (2, 20, 30)
  # Masks pasted with the model's own boxes (ops.paste_masks is tested
  # against torchvision's paste): on the picture plus its 12 padding rows,
  # then cropped to the picture; box 1's mask is not squeezed into its
  # clipped box.
  full = np.asarray(ops.paste_masks(masks[:2], boxes[:2], (32, 30))) > 0.5
  np.testing.assert_array_equal(r["masks"], full[:, :20])
  assert r["masks"][1][14:20, 13:20].all() and not r["masks"][1][:13].any()


def test_cli_writer_json_equals_predictor(tiny_data_dir, tmp_path):
  c = maskrcnn_scenes.get_config()
  c.dataset.name = "digit_scenes/tiny"
  c.dataset.data_dir = tiny_data_dir
  for k, v in dict(widths=(8, 16, 16, 32), stem_width=8, fpn_features=16, representation=32,
                   mask_layers=(16,)).items():  # maskrcnn_lite, narrower: cheaper to run
    c.model[k] = v
  exp = loop.build(c)
  h, w = exp.config.dataset.get("image_size") or (32, 32)
  shapes = jax.eval_shape(exp.model.init, jax.random.key(0), jnp.zeros((1, h, w, 3)))
  p = Predictor(exp, numpy_init(shapes, seed=1), max_batch=1, step=7)
  files = _photos(tmp_path / "photos")
  out = tmp_path / "preds"
  write_predictions(p, files, out)
  assert sorted(os.listdir(out)) == sorted(f"{n}.{e}" for n in SIZES for e in ("json", "png"))
  detections = 0
  for name, want in zip(SIZES, p(files)):
    hh, ww = SIZES[name]
    record = json.loads((out / f"{name}.json").read_text())
    assert record["step"] == 7 and record["image"] == str(tmp_path / "photos" / f"{name}.png")
    detections += _check_record(record, want, p.class_names, hh, ww)
    drawn = np.asarray(Image.open(out / f"{name}.png").convert("RGB"))
    assert drawn.shape == (hh, ww, 3)
    np.testing.assert_array_equal(drawn, p.exp.task.draw_result(
        read_image(str(tmp_path / "photos" / f"{name}.png")), want, p.class_names))
  assert detections > 0, "no detection at all: the comparison above checked only empty lists"
  # The Predictor tells the model the picture's size (image_sizes from
  # content): the result's boxes are the raw boxes of the forward pass given
  # the 23 x 30 content (the picture is not upscaled, so no scaling), all on
  # the picture; given the whole 32 x 32 input the same weights box otherwise.
  x, content, _ = p.preprocess(files[0])
  assert content == SIZES["small"]
  forward = lambda c: jax.device_get(p._forward(p.variables, x[None], np.array([c], np.int32)))
  told, whole = forward(content), forward((h, w))
  assert p.num_compiles == 1  # the same compiled forward, content is an argument
  valid = np.asarray(told["valid"][0], bool)
  np.testing.assert_array_equal(p(files[0])["boxes"], told["boxes"][0][valid])
  assert np.all(told["boxes"][0][valid] <= [30, 23, 30, 23])
  assert not np.array_equal(told["boxes"], whole["boxes"])


@pytest.fixture(scope="module")
def run(tiny_data_dir, tmp_path_factory):
  """maskrcnn_lite (the maskrcnn_scenes config), 2 steps on the tiny scenes."""
  c = maskrcnn_scenes.get_config()
  c.dataset.name = "digit_scenes/tiny"
  c.dataset.data_dir = tiny_data_dir
  c.num_train_steps = 2
  c.batch_size = 8             # the tests run on 8 CPU devices
  c.eval_batch_size = 32       # the 32 test images: one evaluation batch
  c.log_every_steps = 1
  c.num_visualizations = 0
  c.progress_bar = False
  c.checkpoint.every_steps = 0
  c.checkpoint.async_save = False
  # Every candidate detection is kept: after 2 steps none scores 0.05
  # inside the pictures (seen), and the comparison needs some.
  c.model.box_score_threshold = 0.0
  wd = str(tmp_path_factory.mktemp("maskrcnn"))
  loop.train_and_evaluate(c, wd)
  return wd


@pytest.mark.slow
def test_cli_predict_equals_in_process_predict(run, tmp_path):
  src = tmp_path / "photos"
  files = _photos(src, SLOW_SIZES)
  out = tmp_path / "preds"
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  # --min_score=0: draw every detection, so the overlay shows the instances
  # of this barely trained model (none reaches the default 0.5).
  r = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "predict.py"),
                      f"--workdir={run}", f"--images={src}/*.png", f"--out={out}",
                      "--min_score=0"],
                     capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert sorted(os.listdir(out)) == sorted(f"{n}.{e}" for n in SLOW_SIZES for e in ("json", "png"))
  p = Predictor.from_workdir(run)
  detections = 0
  for name, want in zip(SLOW_SIZES, p(files)):
    h, w = SLOW_SIZES[name]
    record = json.loads((out / f"{name}.json").read_text())
    assert record["step"] == 2 and record["image"].endswith(f"{name}.png")
    n = _check_record(record, want, p.class_names, h, w)
    detections += n
    drawn = np.asarray(Image.open(out / f"{name}.png").convert("RGB"))
    photo = read_image(str(src / f"{name}.png"))
    assert drawn.shape == (h, w, 3)
    if n:  # every detection is drawn at --min_score=0
      assert np.any(drawn != photo)
  assert detections > 0, "no detection at all: the comparison above checked only empty lists"
