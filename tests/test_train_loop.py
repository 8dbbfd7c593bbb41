"""The training loop end to end: resume, preemption, NaN stop, outputs."""
import json
import os
import signal
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from spine_fixtures import CNN_CONFIG, run_train_cli, tiny_cli_flags, tiny_config

from visionjax.train import loop


def _params(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "default")
  return ocp.StandardCheckpointer().restore(path)["params"]


def test_resume_in_fresh_process_matches_uninterrupted(tiny_data_dir, tmp_path):
  full, split = str(tmp_path / "full"), str(tmp_path / "split")
  r = run_train_cli(CNN_CONFIG, full, *tiny_cli_flags(tiny_data_dir, 10))
  assert r.returncode == 0, r.stdout + r.stderr
  r = run_train_cli(CNN_CONFIG, split, *tiny_cli_flags(tiny_data_dir, 5))
  assert r.returncode == 0, r.stdout + r.stderr
  assert sorted(os.listdir(os.path.join(split, "checkpoints"))) == ["5"]
  r = run_train_cli(CNN_CONFIG, split, *tiny_cli_flags(tiny_data_dir, 10))
  assert r.returncode == 0, r.stdout + r.stderr
  a, b = _params(full, 10), _params(split, 10)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  # The second half only ran steps 6..10 (it resumed; it did not restart).
  steps = [json.loads(l)["step"] for l in open(os.path.join(split, "metrics.jsonl"))
           if json.loads(l)["split"] == "train"]
  assert steps == list(range(1, 11))
  for name in ("final_metrics.json", "learning_curves.png", "predictions.png", "config.json"):
    assert os.path.exists(os.path.join(full, name)), name
  assert any(f.startswith("events.") for f in os.listdir(os.path.join(full, "tensorboard")))


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tiny_data_dir, tmp_path):
  wd = str(tmp_path / "wd")
  proc = run_train_cli(CNN_CONFIG, wd, *tiny_cli_flags(tiny_data_dir, 100_000), background=True)
  metrics = os.path.join(wd, "metrics.jsonl")
  deadline = time.time() + 120
  while time.time() < deadline and not (os.path.exists(metrics)
                                        and sum(1 for _ in open(metrics)) >= 3):
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert "SIGTERM" in out
  listing = os.listdir(os.path.join(wd, "checkpoints"))
  saved = [int(s) for s in listing if s.isdigit()]
  assert len(saved) == 1, (listing, out[-3000:])
  assert 3 <= saved[0] < 100_000
  # A restart resumes from it.
  exp = loop.build(tiny_config(tiny_data_dir))
  assert ocp.CheckpointManager(os.path.join(wd, "checkpoints")).latest_step() == saved[0]
  del exp


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tiny_data_dir, tmp_path):
  # Plain SGD at lr=1e12 blows the weights up within a few steps.
  config = tiny_config(tiny_data_dir, num_train_steps=50, **{
      "optimizer.name": "sgd", "optimizer.learning_rate": 1e12,
      "optimizer.momentum": 0.0, "optimizer.weight_decay": 0.0,
      "checkpoint.every_steps": 1, "log_every_steps": 1})
  wd = str(tmp_path / "nan")
  with pytest.raises(loop.NonFiniteLossError, match=r"non-finite loss at step (\d+)") as e:
    loop.train_and_evaluate(config, wd)
  bad_step = int(str(e.value).split("at step ")[1].split(" ")[0])
  saved = sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints")) if s.isdigit())
  assert saved and saved[-1] == bad_step - 1
  for leaf in jax.tree.leaves(_params(wd, saved[-1])):
    assert np.all(np.isfinite(leaf))
  assert f"step {saved[-1]}" in str(e.value)


def test_quickstart_outputs_and_exact_eval_count(tiny_data_dir, tmp_path):
  config = tiny_config(tiny_data_dir, task="segmentation", num_train_steps=3,
                       eval_batch_size=24)  # 32 test images -> a padded second batch
  metrics = loop.train_and_evaluate(config, str(tmp_path / "seg"))
  for k in ("miou", "pixel_accuracy", "mean_pixel_accuracy", "fwiou", "mean_dice"):
    assert 0.0 <= metrics[k] <= 1.0
  cls = loop.train_and_evaluate(tiny_config(tiny_data_dir, eval_batch_size=24,
                                            num_train_steps=3), str(tmp_path / "cls"))
  assert cls["num_examples"] == 32  # every test example once, padding excluded
