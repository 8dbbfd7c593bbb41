"""The installed command (`visionjax ...` / `python -m visionjax ...`).

Run from a folder outside the source tree, so a config given by name must
come from the package (`visionjax.configs`), not from `experiments/`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from spine_fixtures import REPO, tiny_cli_flags

from visionjax import cli, configs


def _visionjax(cwd, *args, timeout=900):  # generous: CI machines are loaded
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  return subprocess.run([sys.executable, "-m", "visionjax", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_shipped_configs_are_the_experiment_configs():
  # Old paths keep working: experiments/configs is the package's folder.
  assert os.path.realpath(os.path.join(REPO, "experiments", "configs")) == os.path.realpath(
      os.path.dirname(configs.__file__))
  assert {"unet_scenes", "cnn_digits"} <= set(configs.names())  # the README's two
  assert "__init__" not in configs.names()
  path = configs.resolve("unet_scenes:extra")
  assert path.endswith(os.path.join("visionjax", "configs", "unet_scenes.py:extra"))
  assert os.path.isfile(path.split(":")[0])
  assert configs.resolve("my/own.py") == "my/own.py"  # files are taken as given
  with pytest.raises(ValueError, match=r"'unet_scene' is neither a file nor a config shipped "
                                       r"with visionjax; shipped: \[.*'unet_scenes'"):
    configs.resolve("unet_scene")


def test_dispatch_usage_and_unknown_command(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["visionjax"])
  assert e.value.code == 2 and "usage: visionjax <command>" in capsys.readouterr().out
  with pytest.raises(SystemExit) as e:
    cli.main(["visionjax", "--help"])
  out = capsys.readouterr().out
  assert e.value.code == 0 and all(f"  {c} " in out for c in cli.COMMANDS)
  with pytest.raises(SystemExit) as e:
    cli.main(["visionjax", "trian"])
  assert str(e.value.code).startswith("error: unknown command 'trian'; expected one of "
                                      "['train', 'evaluate', 'predict', 'export', 'baselines']")


def test_train_by_config_name_then_export_outside_the_checkout(tiny_data_dir, tmp_path):
  wd = tmp_path / "run"
  r = _visionjax(tmp_path, "train", "--config=cnn_digits", f"--workdir={wd}",
                 *tiny_cli_flags(tiny_data_dir, 3))
  assert r.returncode == 0, r.stderr[-3000:]
  final = json.loads((wd / "final_metrics.json").read_text())
  assert final["step"] == 3
  assert json.loads((wd / "config.json").read_text())["model"]["name"] == "small_cnn"

  out = tmp_path / "exported"
  r = _visionjax(tmp_path, "export", f"--workdir={wd}", "--format=stablehlo", f"--out={out}")
  assert r.returncode == 0, r.stderr[-3000:]
  meta = json.loads((out / "export.json").read_text())
  assert meta["artifact"] == "model.stablehlo" and meta["step"] == 3
  assert meta["input_shape"] == [None, 32, 32, 3] and meta["class_names"][:2] == ["0", "1"]
  assert meta["postprocess"] is False

  from visionjax import export
  from visionjax.train import inference, parallel
  predictor = inference.Predictor.from_workdir(wd)
  model = parallel.clone_for_axis(predictor.exp.model, None)
  fn = export.load_stablehlo((out / "model.stablehlo").read_bytes())
  for batch in (1, 5):  # one artifact, any batch size
    x = np.random.default_rng(batch).normal(size=(batch, 32, 32, 3)).astype(np.float32)
    want = model.apply(predictor.variables, x, train=False)
    np.testing.assert_allclose(np.asarray(fn(x)), np.asarray(want), rtol=1e-5, atol=1e-6)

  r = _visionjax(tmp_path, "export", f"--workdir={wd}", "--format=tflite", f"--out={out}")
  assert r.returncode == 1 and "tflite" in r.stderr
