"""Bad input gets a clear ValueError naming the bad value and the valid ones."""
import os

import jax
import numpy as np
import pytest
import spine_fixtures
from spine_fixtures import REPO, run_train_cli, tiny_config

from visionjax.train import config as config_lib
from visionjax.train import loop


def test_unknown_config_key_lists_valid_keys(tiny_data_dir):
  c = tiny_config(tiny_data_dir)
  c.optimizer.learnig_rate = 0.1
  with pytest.raises(ValueError, match=r"unknown config key 'optimizer.learnig_rate'.*"
                                       r"'learning_rate'"):
    config_lib.validate(c)
  c = tiny_config(tiny_data_dir)
  c.num_train_step = 5
  with pytest.raises(ValueError, match=r"unknown config key 'num_train_step'.*num_train_steps"):
    loop.build(c)


@pytest.mark.parametrize("field,value,pattern", [
    ("model.name", "resnet9000", r"unknown model 'resnet9000'; valid names: .*unet_small"),
    ("dataset.name", "imagenet_xyz",
     r"unknown dataset 'imagenet_xyz'; known datasets: .*digit_scenes"),
    ("engine", "spmd", r"engine='spmd' is not valid; expected one of \['jit', 'pmap'\]"),
    ("optimizer.name", "lion", r"optimizer.name='lion' is not valid; expected one of"),
    ("task", "captioning", r"task='captioning' is not valid"),
    ("batch_size", 12, r"batch_size=12 must be divisible by the number of devices \(8\)"),
    ("optimizer.learning_rate", -0.1, r"optimizer.learning_rate=-0.1 must be > 0"),
    ("optimizer.learning_rate", float("nan"), r"optimizer.learning_rate=nan must be > 0"),
    ("eval_every_steps", -1, r"eval_every_steps=-1 must be >= 0 \(0: never\)"),
    ("checkpoint.every_steps", -1, r"checkpoint.every_steps=-1 must be >= 0"),
    ("checkpoint.keep", 0, r"checkpoint.keep=0 must be >= 1"),
    ("checkpoint.best_metric", "mIoU", r"best_metric='mIoU' is not a metric of task "
                                       r"'classification'; expected one of \['loss', 'accuracy'"),
    ("model.name", "unet_small", r"model 'unet_small' is a segmentation model; task "
                                 r"'classification' needs one of \[.*'small_cnn'"),
])
def test_bad_names_and_values(tiny_data_dir, field, value, pattern):
  c = tiny_config(tiny_data_dir)
  node, *path = field.split(".")
  if path:
    c[node][path[0]] = value
  else:
    c[node] = value
  with pytest.raises(ValueError, match=pattern):
    exp = loop.build(c)
    spine_fixtures.train_dataset(c)  # the batch-size check lives with the pipeline
    del exp


def test_bad_model_option_is_named(tiny_data_dir):
  c = tiny_config(tiny_data_dir)
  c.model.widthh = 3
  with pytest.raises(ValueError, match=r"bad option for model 'small_cnn'.*widthh"):
    loop.build(c)


@pytest.mark.parametrize("change,pattern", [
    (lambda b: {**b, "image": b["image"][0]}, r"rank 3\); expected rank 4"),
    (lambda b: {**b, "image": (b["image"] * 255).astype(np.uint8)},
     r"dtype uint8; expected a float dtype"),
    (lambda b: {**b, "image": b["image"][..., :1]}, r"has 1 channels .* the model expects 3"),
    (lambda b: {**b, "label": b["label"].astype(np.float32)}, r"'label'\] has dtype float32"),
    (lambda b: {k: v for k, v in b.items() if k != "label"}, r"batch has no 'label'"),
])
def test_malformed_batch_is_rejected_before_xla(tiny_data_dir, change, pattern):
  config = tiny_config(tiny_data_dir)
  exp = loop.build(config, devices=jax.devices()[:1])
  batch = next(spine_fixtures.train_dataset(config).as_numpy_iterator())
  with pytest.raises(ValueError, match=pattern):
    exp.train_step(exp.create_state(), exp.engine.put_batch(change(batch)))


@pytest.mark.parametrize("deep_supervision,aux_weight,pattern", [
    (False, 0.5, r"aux_weight=0.5 but the model returns no deep-supervision aux_logits"),
    (True, 0.0, r"returns deep-supervision aux_logits but .* aux_weight is 0"),
])
def test_aux_weight_and_deep_supervision_must_agree_before_the_first_step(
    tiny_data_dir, deep_supervision, aux_weight, pattern):
  """A deep-supervision weight with a model that has no aux heads was silently
  ignored (and the reverse silently trained the heads on nothing): now the
  first train step's trace refuses both, so the state never changes."""
  config = tiny_config(tiny_data_dir, "segmentation", **{
      "model.deep_supervision": deep_supervision, "task_kwargs.aux_weight": aux_weight})
  exp = loop.build(config, devices=jax.devices()[:1])
  batch = next(spine_fixtures.train_dataset(config).as_numpy_iterator())
  with pytest.raises(ValueError, match=pattern):
    exp.train_step(exp.create_state(), exp.engine.put_batch(batch))


def test_eval_batch_size_is_rounded_up_to_the_devices(tiny_data_dir):
  c = tiny_config(tiny_data_dir, eval_batch_size=250)  # cnn_digits' value, 8 devices
  exp = loop.build(c)
  assert exp.eval_batch_size == 256
  batches = list(exp.eval_batches())
  assert len(batches) == 1 and batches[0]["valid"].sum() == 32  # tiny: 32 test images


def test_missing_eval_split_fails_before_training(tiny_data_dir, tmp_path):
  c = tiny_config(tiny_data_dir)
  c.dataset.eval_split = "validation"
  with pytest.raises(ValueError, match=r"has no split 'validation'.*its splits are \['test', "
                                       r"'train'\]"):
    loop.train_and_evaluate(c, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no step was taken


def test_unwritable_workdir(tiny_data_dir, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(ValueError, match=r"workdir '.*a_file/run' is not writable"):
    loop.train_and_evaluate(tiny_config(tiny_data_dir), str(blocker / "run"))


def test_cli_reports_bad_override_in_one_line(tmp_path):
  cfg = os.path.join(REPO, "experiments", "configs", "cnn_digits.py")
  r = run_train_cli(cfg, str(tmp_path), "--config.optimizer.learnig_rate=0.1")
  assert r.returncode != 0
  assert "unknown config key learnig_rate" in r.stderr
  assert 'Did you mean "learning_rate"' in r.stderr
  assert "Traceback" not in r.stderr


def test_out_of_range_label_stops_before_its_step(tiny_data_dir, tmp_path, monkeypatch):
  """Host-side batch checks (`Task.check_values`): a label outside [0, K) in the
  training stream stops the run before the step that would use it, naming the
  step, field, element, value and range, with the step before it saved."""
  import tensorflow as tf
  train_dataset = loop.Experiment.train_dataset

  def with_a_bad_label(self, start_step=0):
    def corrupt(i, batch):  # the batch of step 5 gets label 12 at index 3
      bad = tf.tensor_scatter_nd_update(batch["label"], [[3]], [12])
      return {**batch, "label": tf.where(i + start_step + 1 == 5, bad, batch["label"])}
    return train_dataset(self, start_step).enumerate().map(corrupt)

  monkeypatch.setattr(loop.Experiment, "train_dataset", with_a_bad_label)
  wd = tmp_path / "run"
  with pytest.raises(loop.BadBatchError) as e:
    loop.train_and_evaluate(tiny_config(tiny_data_dir, num_train_steps=8), str(wd))
  msg = str(e.value)
  assert "\n" not in msg
  assert msg.startswith("the training batch of step 5 has a bad value: batch['label'][3] = 12; "
                        "expected class ids in [0, 10); training stopped before step 5 "
                        "(checkpoint of step 4 saved)"), msg
  assert sorted(os.listdir(wd / "checkpoints")) == ["4"]
  steps = [__import__("json").loads(line)["step"] for line in open(wd / "metrics.jsonl")]
  assert max(steps) == 4  # steps 1..4 trained, step 5 never ran
