"""Evaluate-only: a checkpoint of a run, without training; paths on any filesystem."""
import json
import os
import subprocess
import sys

import pytest
from spine_fixtures import REPO, tiny_config

from visionjax import paths
from visionjax.train import evaluation, loop
from visionjax.train import workdir as workdir_lib


@pytest.fixture(scope="module")
def trained(tiny_data_dir, tmp_path_factory):
  """A 6-step segmentation run with checkpoints at 3 and 6, eval at both."""
  wd = str(tmp_path_factory.mktemp("run"))
  c = tiny_config(tiny_data_dir, task="segmentation", num_train_steps=6,
                  eval_every_steps=3, **{"checkpoint.every_steps": 3,
                                         "checkpoint.best_metric": "miou",
                                         "checkpoint.best_mode": "min"})
  final = loop.train_and_evaluate(c, wd)
  return wd, final


def _scalars(m):
  return {k: v for k, v in m.items() if not isinstance(v, list)}


def test_latest_checkpoint_reproduces_final_metrics_exactly(trained):
  wd, final = trained
  metrics = evaluation.evaluate_workdir(wd, checkpoint="latest")
  saved = json.load(open(os.path.join(wd, "final_metrics.json")))
  assert saved["step"] == 6
  for k, v in _scalars(metrics).items():
    assert saved[k] == v, k  # bit-equal: same checkpoint, same evaluation
  written = json.load(open(os.path.join(wd, "eval", "6", "metrics.json")))
  assert written["step"] == 6 and written["miou"] == metrics["miou"]
  assert os.path.exists(os.path.join(wd, "eval", "6", "predictions.png"))


def test_best_follows_the_metric_and_mode(trained):
  wd, _ = trained
  evals = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
  by_step = {r["step"]: r["miou"] for r in evals if r["split"] == "eval"}
  best = min(by_step, key=lambda s: (by_step[s], s))  # best_mode='min' in this run
  cfg = evaluation.load_config(workdir_lib.Workdir.existing(wd))
  assert cfg.checkpoint.best_mode == "min"
  from visionjax.train import checkpoint as ckpt_lib
  ck = ckpt_lib.Checkpointer(os.path.join(wd, "checkpoints"), every_steps=0, async_save=False)
  try:
    assert evaluation.select_step(workdir_lib.Workdir.existing(wd), ck, cfg, "best") == best
  finally:
    ck.close()


def test_split_and_step_choice(trained):
  wd, _ = trained
  m = evaluation.evaluate_workdir(wd, checkpoint=3, split="train[:16]", visualize=False)
  written = json.load(open(os.path.join(wd, "eval", "3", "metrics_train[:16].json")))
  assert written["split"] == "train[:16]" and written["step"] == 3
  assert written["miou"] == m["miou"]
  with pytest.raises(ValueError, match=r"no checkpoint at step 4; it has \[3, 6\]"):
    evaluation.evaluate_workdir(wd, checkpoint=4)
  with pytest.raises(ValueError, match="expected 'latest', 'best' or a step"):
    evaluation.evaluate_workdir(wd, checkpoint="newest")


def test_not_a_workdir_is_named(tmp_path):
  with pytest.raises(ValueError, match="is not a visionjax workdir: it has no config.json"):
    evaluation.evaluate_workdir(str(tmp_path))


def test_cli_evaluates_in_one_line(trained):
  wd, final = trained
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  r = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "evaluate.py"),
                      f"--workdir={wd}", "--checkpoint=latest"], capture_output=True, text=True,
                     env=env, cwd=REPO, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"'miou': {final['miou']}" in r.stdout
  r = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "evaluate.py"),
                      f"--workdir={wd}", "--checkpoint=99"], capture_output=True, text=True,
                     env=env, cwd=REPO, timeout=300)
  assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error: ")


def test_storage_urls_stay_urls(tmp_path, monkeypatch):
  # The reported bug: os.path.abspath('gs://b/x') == '<cwd>/gs:/b/x', a local
  # folder. No I/O here (gs:// would need the network).
  monkeypatch.chdir(tmp_path)
  for url in ("gs://bucket/runs/unet", "s3://bucket/x"):
    p = paths.resolve(url)
    assert os.fspath(p) == url
    wd = workdir_lib.Workdir(p)
    assert os.fspath(wd.checkpoints) == url + "/checkpoints"
    assert os.fspath(wd.config_json) == url + "/config.json"
    assert not paths.is_local(wd.metrics_jsonl)
  assert os.fspath(paths.resolve("~/x")) == os.path.expanduser("~/x")
  assert os.fspath(paths.resolve("rel/dir")) == str(tmp_path / "rel" / "dir")
  assert os.listdir(tmp_path) == []


def test_a_workdir_orbax_cannot_checkpoint_to_is_refused_before_any_write(
    tiny_data_dir, tmp_path, monkeypatch):
  # Orbax keeps only gs:// URLs: an s3:// workdir would train, then write its
  # first checkpoint into a local folder named 's3:'. Refused up front instead.
  from visionjax.train import checkpoint as ckpt_lib
  monkeypatch.chdir(tmp_path)
  for url in ("s3://bucket/runs/x", "az://container/runs/x"):
    with pytest.raises(ValueError, match=r"://bucket/runs/x: checkpoints can be written to a "
                       r"local path or gs:// only|://container/runs/x: checkpoints can be"):
      loop.train_and_evaluate(tiny_config(tiny_data_dir), url)
  with pytest.raises(ValueError, match="s3://b/c/checkpoints: checkpoints can be written"):
    ckpt_lib.Checkpointer("s3://b/c/checkpoints", every_steps=1)
  ckpt_lib.check_storage("gs://bucket/runs/x")  # Orbax's own scheme
  ckpt_lib.check_storage(str(tmp_path / "local"))
  assert os.listdir(tmp_path) == []


def test_torn_metrics_line_is_skipped_and_the_next_record_starts_clean(tmp_path):
  from visionjax.train import reporting
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "split": "train", "loss": 1.0}\n{"step": 2, "spl')
  assert [r["step"] for r in reporting.read_metrics(tmp_path)] == [1]
  w = reporting.MetricWriter(tmp_path)
  w.write(3, "train", {"loss": 0.5})
  w.close()
  assert [r["step"] for r in reporting.read_metrics(tmp_path)] == [1, 3]
  path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
  with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not JSON"):
    reporting.read_metrics(tmp_path)
