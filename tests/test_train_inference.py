"""Predictor: a trained run on images of any size, from files, PIL or arrays."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest
from spine_fixtures import REPO, tiny_config

from visionjax import tasks
from visionjax.train import loop
from visionjax.train.inference import Predictor, to_result

ODD_SIZES = ((17, 23), (40, 31), (64, 64))


def _train(data_dir, tmp_path_factory, task):
  wd = str(tmp_path_factory.mktemp(task))
  loop.train_and_evaluate(tiny_config(data_dir, task=task, num_train_steps=3,
                                      num_visualizations=0), wd)
  return wd


@pytest.fixture(scope="module")
def seg(tiny_data_dir, tmp_path_factory):
  wd = _train(tiny_data_dir, tmp_path_factory, "segmentation")
  return wd, Predictor.from_workdir(wd)


@pytest.fixture(scope="module")
def cls(tiny_data_dir, tmp_path_factory):
  wd = _train(tiny_data_dir, tmp_path_factory, "classification")
  return wd, Predictor.from_workdir(wd, checkpoint=3)


def _eval_images(p: Predictor):
  """The first eval batch: normalized images, and as the uint8 pixels they came from."""
  batch = next(iter(p.exp.eval_batches()))
  dc = p.exp.config.dataset
  x = batch["image"][batch["valid"]]
  pixels = np.round(x * (np.asarray(dc.std) * 255.0) + np.asarray(dc.mean) * 255.0)
  return x, pixels.astype(np.uint8)


def _model_outputs(p: Predictor, x):
  """The jitted model on a normalized batch, as the evaluation step runs it."""
  model = p.exp.model
  return np.asarray(jax.jit(lambda v, im: model.apply(v, im, train=False))(p.variables, x))


@pytest.mark.parametrize("which", ["seg", "cls"])
def test_eval_images_give_the_evaluation_outputs(which, request):
  _, p = request.getfixturevalue(which)
  x, pixels = _eval_images(p)
  for i in range(3):  # the same normalized input, bit for bit
    np.testing.assert_array_equal(p.preprocess(pixels[i])[0], x[i])
  want = np.argmax(_model_outputs(p, x), -1)
  got = p(list(pixels))
  assert len(got) == len(x) > p.buckets[-1]  # more images than one batch: chunked
  if which == "seg":
    np.testing.assert_array_equal(np.stack([r["mask"] for r in got]), want)
    assert got[0]["names"] == list(p.class_names) and got[0]["mask"].dtype == np.int32
  else:
    assert [r["class"] for r in got] == list(want)
    assert [r["name"] for r in got] == [p.class_names[c] for c in want]


def test_segmentation_original_resolution_and_padding(seg):
  _, p = seg
  assert p.input_size == (32, 32)
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ODD_SIZES]
  results = p(images)
  for (h, w), r in zip(ODD_SIZES, results):
    assert r["mask"].shape == (h, w) and r["mask"].dtype == np.int32
    assert r["mask"].min() >= 0 and r["mask"].max() < len(p.class_names)
  # The pipeline's dense fit: never enlarged, shrunk keeping the aspect ratio,
  # padded bottom/right with the mean pixel (normalized: ~0).
  for (h, w), want in (((17, 23), (17, 23)), ((40, 31), (32, 25)), ((64, 64), (32, 32))):
    assert p.preprocess(np.zeros((h, w, 3), np.uint8))[1] == want
  x, content, size = p.preprocess(images[1])
  assert content == (32, 25) and size == (40, 31)
  assert np.abs(x[:, 25:]).max() < 0.02
  # A small image is only padded: its mask is the model's arg-max on its own pixels.
  x, content, _ = p.preprocess(images[0])
  want = np.argmax(_model_outputs(p, x[None])[0], -1)[:17, :23]
  np.testing.assert_array_equal(results[0]["mask"], want)


def test_classification_any_size_and_probabilities(cls):
  _, p = cls
  assert p.step == 3
  rng = np.random.default_rng(1)
  images = [rng.random((h, w, 3)).astype(np.float32) for h, w in ODD_SIZES]  # floats in [0, 1]
  for r in p(images):
    assert r["probabilities"].shape == (len(p.class_names),)
    np.testing.assert_allclose(r["probabilities"].sum(), 1.0, rtol=1e-5)
    assert r["class"] == int(np.argmax(r["probabilities"]))
    assert r["name"] == p.class_names[r["class"]]
  single = p(images[0])
  assert isinstance(single, dict) and single["class"] == p(images[:1])[0]["class"]


def test_compiles_once_per_batch_bucket(seg):
  _, p0 = seg
  p = Predictor(p0.exp, jax.device_get(p0.variables), max_batch=4)  # host arrays work too
  assert p.buckets == (1, 2, 4) and p.num_compiles == 0
  rng = np.random.default_rng(2)
  images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ODD_SIZES]
  for batch in (images, images[:2], images[::-1], images[1:], images + images):
    for r, im in zip(p(batch), batch):
      assert r["mask"].shape == im.shape[:2]
  # Sizes 3 and 6 (= 4 + 2) land in bucket 4 and 2: two compiles, whatever the sizes.
  assert p.num_compiles == 2 <= len(p.buckets)


def test_files_and_pil_give_the_array_result(cls, seg, tmp_path):
  rng = np.random.default_rng(3)
  image = rng.integers(0, 256, (40, 31, 3), dtype=np.uint8)
  path = tmp_path / "x.png"
  Image.fromarray(image).save(path)
  for _, p in (cls, seg):
    a = p(image)
    for other in (p(str(path)), p(path), p(Image.open(path)), p([path])[0]):
      for k in a:
        np.testing.assert_array_equal(np.asarray(other[k]), np.asarray(a[k]))
  with pytest.raises(FileNotFoundError, match="no image at"):
    p(str(tmp_path / "missing.png"))
  with pytest.raises(ValueError, match=r"expected \[H, W, 3\]"):
    p(np.zeros((4, 4, 5), np.uint8))


def test_checkpoint_choice_errors(seg):
  wd, _ = seg
  with pytest.raises(ValueError, match="needs config.checkpoint.best_metric"):
    Predictor.from_workdir(wd, checkpoint="best")
  with pytest.raises(ValueError, match=r"no checkpoint at step 2; it has \[3\]"):
    Predictor.from_workdir(wd, checkpoint=2)


def test_cli_writes_json_and_overlays(seg, tmp_path):
  wd, p = seg
  src = tmp_path / "photos"
  src.mkdir()
  rng = np.random.default_rng(4)
  sizes = {"a": (17, 23), "b": (40, 31)}
  for name, (h, w) in sizes.items():
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src / f"{name}.png")
  out = tmp_path / "preds"
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  r = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "predict.py"),
                      f"--workdir={wd}", f"--images={src}/*.png", f"--out={out}"],
                     capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert sorted(os.listdir(out)) == ["a.json", "a.png", "b.json", "b.png"]
  for name, (h, w) in sizes.items():
    record = json.loads((out / f"{name}.json").read_text())
    assert record["step"] == 3 and record["image"].endswith(f"{name}.png")
    mask = np.asarray(record["mask"])
    np.testing.assert_array_equal(mask, p(src / f"{name}.png")["mask"])
    assert Image.open(out / f"{name}.png").size == (w, h)
    # Background pixels show the photo as it is; only predicted classes are tinted.
    drawn = np.asarray(Image.open(out / f"{name}.png").convert("RGB"))
    photo = np.asarray(Image.open(src / f"{name}.png").convert("RGB"))
    np.testing.assert_array_equal(drawn[mask == 0], photo[mask == 0])
  r = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "predict.py"),
                      f"--workdir={wd}", f"--images={src}/*.jpg", f"--out={out}"],
                     capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
  assert r.returncode == 1 and "matches no file" in r.stderr.strip().splitlines()[-1]



def test_boxes_come_back_in_pixels_of_the_original_image():
  names = ("cat", "dog", "cow")
  det = {"boxes": np.asarray([[0.1, 0.2, 0.5, 1.0], [0, 0, 0, 0], [0.0, 0.5, 0.25, 0.75]],
                             np.float32),
         "scores": np.asarray([0.9, 0.0, 0.4], np.float32),
         "classes": np.asarray([2, -1, 0], np.int32), "valid": np.asarray([True, False, True])}
  detection = tasks.create("detection", len(names))
  r = to_result(detection, det, names, (64, 64), (40, 100))  # H=40, W=100
  np.testing.assert_allclose(r["boxes"], [[10, 8, 50, 40], [0, 20, 25, 30]], rtol=1e-6)
  assert r["classes"].tolist() == [2, 0] and r["names"] == ["cow", "cat"]
  np.testing.assert_allclose(r["scores"], [0.9, 0.4])
  none = to_result(detection, {**det, "valid": np.zeros(3, bool)}, names, (64, 64), (4, 5))
  assert none["boxes"].shape == (0, 4) and none["names"] == []
  loc = {"classes": np.int32(1), "probabilities": np.asarray([0.2, 0.7, 0.1], np.float32),
         "boxes": np.asarray([0.5, 0.5, 1.0, 1.0], np.float32)}
  r = to_result(tasks.create("localization", len(names)), loc, names, (64, 64), (30, 20))
  assert r["class"] == 1 and r["name"] == "dog" and r["score"] == pytest.approx(0.7)
  np.testing.assert_allclose(r["box"], [10, 15, 20, 30])
  # Segmentation: padding cropped, then the logits resized (bilinear) to the original size.
  logits = np.zeros((8, 8, 2), np.float32)
  logits[:4, :2, 1], logits[:4, 2:4, 1] = 1.0, -1.0  # class 1 left of the 4 x 4 content's middle
  logits[4:, :, 1] = 5.0   # padding rows: must not leak in
  mask = to_result(tasks.create("segmentation", 2), logits, names[:2], (4, 4), (8, 8))["mask"]
  assert mask.shape == (8, 8) and (mask[:, :4] == 1).all() and (mask[:, 4:] == 0).all()
