"""init_from (converted weights, another run) and freezing, against hand-built cases."""
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from spine_fixtures import tiny_config

from visionjax import models, weights
from visionjax.train import checkpoint as ckpt_lib
from visionjax.train import config as config_lib
from visionjax.train import loop, optim, transfer
from visionjax.train import workdir as workdir_lib

# A 4-stage ResNet small enough to compile in seconds: the classifier's trunk
# and the U-Net's encoder are the same module, so their variables share paths.
ENCODER = {"stage_sizes": (1, 1, 1, 1), "widths": (4, 8, 8, 16), "stem_width": 4}


def _sds(*shape):
  return jax.ShapeDtypeStruct(shape, jnp.float32)


def _flat(tree):
  return {k: np.asarray(v) for k, v in transfer._flat(tree).items()}


def _resnet_config(data_dir, **overrides):
  c = tiny_config(data_dir, **{"model.name": "resnet18", **overrides})
  c.model.update(ENCODER)
  return c


def _unet_config(data_dir, **overrides):
  c = tiny_config(data_dir, task="segmentation", **{"model.name": "unet", **overrides})
  c.model.features = (4, 4, 8, 8)
  c.model.encoder = "resnet18"
  c.model.encoder_kwargs = ENCODER
  return c


# -- matching, pure ---------------------------------------------------------


def test_match_report_on_a_hand_built_case():
  model = {"params": {"encoder": {"conv": {"kernel": _sds(3, 3, 3, 8)},
                                  "norm": {"scale": _sds(8), "bias": _sds(8)}},
                      "decoder": {"kernel": _sds(1, 1, 8, 4)},
                      "head": {"kernel": _sds(8, 5), "bias": _sds(5)}},
           "batch_stats": {"encoder": {"norm": {"mean": _sds(8), "var": _sds(8)}}}}
  # The source names its trunk 'features' and has a 10-class head and an aux head.
  source = {"params": {"features": {"conv": {"kernel": np.ones((3, 3, 3, 8))},
                                    "norm": {"scale": np.ones(8), "bias": np.ones(8)}},
                       "head": {"kernel": np.ones((8, 10)), "bias": np.ones(10)},
                       "aux": {"kernel": np.ones((8, 2))}},
            "batch_stats": {"features": {"norm": {"mean": np.ones(8), "var": np.ones(8)}}}}
  plan = transfer.match(model, source, rename=config_lib.parse_rename("encoder=features"),
                        skip="^head/")
  assert plan.loaded == {
      "params/encoder/conv/kernel": "params/features/conv/kernel",
      "params/encoder/norm/scale": "params/features/norm/scale",
      "params/encoder/norm/bias": "params/features/norm/bias",
      "batch_stats/encoder/norm/mean": "batch_stats/features/norm/mean",
      "batch_stats/encoder/norm/var": "batch_stats/features/norm/var"}
  assert set(plan.skipped) == {"params/head/kernel", "params/head/bias"}
  assert "(8, 10), model (8, 5)" in plan.skipped["params/head/kernel"]
  assert plan.random == ("params/decoder/kernel",)
  assert set(plan.unused) == {"params/head/kernel", "params/head/bias", "params/aux/kernel"}
  lines = plan.summary("src")
  assert lines[1].startswith("  loaded 5 variables, 3*3*3*8+8*4 values".replace(
      "3*3*3*8+8*4", f"{3 * 3 * 3 * 8 + 8 * 4:,}"))
  assert lines[3] == "  left random 1, 32 values: decoder (1)"
  # 'encoder=' puts a whole bare source under encoder/.
  bare = {"params": {"conv": {"kernel": np.ones((3, 3, 3, 8))}}}
  assert transfer.match(model, bare, rename=(("encoder", ""),)).loaded == {
      "params/encoder/conv/kernel": "params/conv/kernel"}


def test_shape_mismatch_names_the_parameter_and_both_shapes():
  """A 10-class ResNet classifier into a 7-class one: refused naming fc's kernel,
  accepted with the head skipped (everything else loaded, nothing random)."""
  def variables(num_classes):
    model = models.create("resnet18", num_classes=num_classes, **ENCODER)
    return jax.eval_shape(model.init, jax.random.key(0), _sds(1, 32, 32, 3))

  src, dst = variables(10), variables(7)
  with pytest.raises(ValueError) as e:
    transfer.match(dst, src, where="init_from 'x'")
  msg = str(e.value)
  assert "\n" not in msg
  assert msg.startswith("init_from: params/fc/bias has shape (10,) in init_from 'x' but (7,) in "
                        "the model")
  assert "init_from_skip='^fc/'" in msg
  plan = transfer.match(dst, src, skip="^fc/")
  assert set(plan.skipped) == {"params/fc/kernel", "params/fc/bias"}
  assert plan.random == () and len(plan.loaded) == len(transfer._flat(dst)) - 2


@pytest.mark.parametrize("rename, skip, expected", [
    ((), "", "no variable of the source has the path and shape"),
    ((("encoder", "trunk"),), "", "init_from_rename 'encoder=trunk': the source has no "
                                  "module 'trunk'"),
    ((), "^fc/", "init_from_skip='^fc/' matches no variable of the model"),
])
def test_match_refuses_what_matches_nothing(rename, skip, expected):
  model = {"params": {"encoder": {"kernel": _sds(2, 2)}}}
  source = {"params": {"features": {"kernel": np.ones((2, 2))}}}
  with pytest.raises(ValueError, match=re.escape(expected)):
    transfer.match(model, source, rename=rename, skip=skip)


def test_config_errors_are_one_line(tmp_path):
  cases = [
      ({"freeze": "encoder/(stem"}, "freeze='encoder/(stem' is not a valid regular expression"),
      ({"init_from_skip": "[fc"}, "init_from_skip='[fc' is not a valid regular expression"),
      ({"init_from_rename": "encoder"}, "init_from_rename entry 'encoder' is not 'dst=src'"),
      ({"init_from_checkpoint": "newest"}, "init_from_checkpoint='newest'"),
      ({"freeze_until_step": 2}, "freeze_until_step=2 needs a freeze regex"),
      ({"freeze": "enc", "freeze_until_step": 4}, "freeze_until_step=4 must be < "
                                                  "num_train_steps=4"),
      ({"freeze": "enc", "freeze_until_step": 1, "finetune_learning_rate_scale": 0.0},
       "finetune_learning_rate_scale=0.0 must be > 0"),
      ({"finetune_learning_rate_scale": 0.1}, "set freeze_until_step > 0"),
  ]
  for overrides, expected in cases:
    c = tiny_config(str(tmp_path), **overrides)
    with pytest.raises(ValueError) as e:
      config_lib.validate(c)
    assert expected in str(e.value) and "\n" not in str(e.value), (overrides, str(e.value))
  params = {"conv1": {"kernel": np.ones(2)}, "fc1": {"kernel": np.ones(2)}}
  with pytest.raises(ValueError, match=r"^freeze='encoder' matches no parameter of model "
                                       r"'small_cnn'; its top-level modules: \['conv1', 'fc1'\]"):
    transfer.check_freeze(tiny_config(str(tmp_path), freeze="encoder"), params)
  with pytest.raises(ValueError, match="matches every parameter"):
    transfer.check_freeze(tiny_config(str(tmp_path), freeze="."), params)
  with pytest.raises(ValueError, match=r"^init_from='/no/such/run' does not exist$"):
    transfer.load_source("/no/such/run")
  with pytest.raises(ValueError, match="is neither converted weights"):
    transfer.load_source(str(tmp_path))


# -- the optimizer ------------------------------------------------------------


def test_two_phase_optimizer_against_the_adam_formula():
  """Constant gradients make every Adam update -lr * g / (|g| + eps) (first and
  second moments are exact after bias correction), so each step's update is
  known: the frozen group is zero, then moves by the scaled rate from its first
  phase-2 step (fresh moments: no 1/sqrt(1 - b2) jump), without weight decay."""
  oc = config_lib.base_config().optimizer
  oc.update({"name": "adamw", "learning_rate": 0.1, "schedule": "constant",
             "weight_decay": 0.5})
  tx, schedule = optim.make_optimizer(oc, 10, freeze="^enc/", freeze_until_step=2,
                                      finetune_learning_rate_scale=0.25)
  params = {"enc": {"bias": jnp.ones(3)}, "head": {"bias": jnp.ones(2)}}
  grads = {"enc": {"bias": jnp.array([1.0, -2.0, 3.0])}, "head": {"bias": jnp.array([4.0, -5.0])}}
  state = tx.init(params)
  adam = lambda g, lr: -lr * g / (jnp.abs(g) + 1e-8)
  for step, (lr_enc, lr_head) in enumerate([(0, 0.1), (0, 0.1), (0.025, 0.025), (0.025, 0.025)]):
    updates, state = tx.update(grads, state, params)
    # float32 bias corrections: ~1e-6 relative; a stale moment would be 3x off
    np.testing.assert_allclose(updates["enc"]["bias"], adam(grads["enc"]["bias"], lr_enc),
                               rtol=2e-5, atol=0)
    # biases get no weight decay (rank 1), in either group
    np.testing.assert_allclose(updates["head"]["bias"], adam(grads["head"]["bias"], lr_head),
                               rtol=2e-5)
    assert float(schedule(step)) == pytest.approx(lr_head)


def test_frozen_parameters_get_no_decay_no_state_and_leave_the_clipping_norm():
  oc = config_lib.base_config().optimizer
  oc.update({"name": "sgd", "momentum": 0.0, "learning_rate": 1.0, "schedule": "constant",
             "weight_decay": 0.5, "grad_clip_norm": 1.0})
  tx, _ = optim.make_optimizer(oc, 10, freeze="^enc/")
  params = {"enc": {"kernel": jnp.ones((2, 2))}, "head": {"kernel": jnp.ones((1, 2))}}
  grads = {"enc": {"kernel": jnp.full((2, 2), 100.0)}, "head": {"kernel": jnp.array([[3.0, 4.0]])}}
  state = tx.init(params)
  updates, _ = tx.update(grads, state, params)
  np.testing.assert_array_equal(updates["enc"]["kernel"], 0.0)
  # head clipped by its own norm (5), then L2 decay 0.5 * param: -(g/5 + 0.5)
  np.testing.assert_allclose(updates["head"]["kernel"], [[-(0.6 + 0.5), -(0.8 + 0.5)]],
                             rtol=1e-6)
  assert not any(leaf.shape == (2, 2) for leaf in jax.tree.leaves(state))  # no state for enc


# -- the loop -----------------------------------------------------------------


def _save_weights(path, variables, num_classes=10):
  conv = weights.Converted(
      name="resnet18", model_kwargs={**ENCODER, "num_classes": num_classes},
      variables=variables,
      preprocessing=weights.Preprocessing(mean=(0.5,) * 3, std=(0.25,) * 3),
      provenance=weights.Provenance(source="test", source_model="resnet18"))
  return weights.save(conv, str(path))


def test_init_from_weights_then_freeze_keeps_encoder_and_bn_stats_bit_identical(
    tiny_data_dir, tmp_path):
  """A run from converted weights with the encoder frozen: after 3 AdamW steps
  (weight decay on) the encoder's parameters and BatchNorm statistics are the
  source's bit for bit, the head moved."""
  model = models.create("resnet18", num_classes=10, **ENCODER)
  source = dict(model.init(jax.random.key(7), jnp.ones((1, 32, 32, 3))))
  # Non-trivial statistics, so "unchanged" cannot pass by both being init values.
  source["batch_stats"] = jax.tree.map(lambda x: x + 0.3, source["batch_stats"])
  src_dir = _save_weights(tmp_path / "weights", source)
  config = _resnet_config(tiny_data_dir, init_from=src_dir, freeze="^encoder/",
                          num_train_steps=3, num_visualizations=0,
                          **{"optimizer.weight_decay": 0.1})
  wd = tmp_path / "run"
  loop.train_and_evaluate(config, str(wd))
  final = ocp.PyTreeCheckpointer().restore(os.fspath(wd / "checkpoints" / "3" / "default"))
  got, want = _flat(final), _flat(source)
  encoder = [k for k in want if k.split("/")[1] == "encoder"]
  assert encoder and any(k.startswith("batch_stats/") for k in encoder)
  for k in encoder:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  for k in ("params/fc/kernel", "params/fc/bias"):
    assert not np.array_equal(got[k], want[k]), k
  report = json.loads((wd / transfer.REPORT_FILE).read_text())
  assert set(report["loaded"]) == set(want) and report["random"] == [] == report["unused"]
  assert report["source"].startswith("resnet18 weights from")


def test_init_from_a_run_workdir_loads_its_best_encoder_into_a_unet(tiny_data_dir, tmp_path):
  """A classifier run's 'best' (and 'latest') checkpoint into a U-Net with the same
  ResNet encoder: the encoder loads, the decoder stays as initialized, fc is unused."""
  seg = loop.build(_unet_config(tiny_data_dir))
  fresh = seg.create_state()
  before = _flat({"params": fresh.params, "batch_stats": fresh.batch_stats})
  encoder = {k for k in before if k.split("/")[1] == "encoder"}
  # The classifier run's workdir, written by hand: its config, two checkpoints
  # of the TrainState layout (trunk shifted by the step, a 10-class fc) and
  # evaluations saying step 3 is the best, step 5 the latest.
  wd = workdir_lib.Workdir.create(tmp_path / "pretrain")
  cls_config = _resnet_config(tiny_data_dir, **{"checkpoint.best_metric": "accuracy"})
  wd.config_json.write_text(cls_config.to_json_best_effort())
  ckpt = ckpt_lib.Checkpointer(wd.checkpoints, every_steps=1, keep=5, async_save=False)
  saved = {}
  for step in (3, 5):
    params = {"encoder": jax.tree.map(lambda p, d=step: np.asarray(p) + d,
                                      fresh.params["encoder"]),
              "fc": {"kernel": np.full((16, 10), step, np.float32),
                     "bias": np.zeros(10, np.float32)}}
    stats = {"encoder": jax.tree.map(lambda p, d=step: np.asarray(p) - d,
                                     fresh.batch_stats["encoder"])}
    ckpt.save(step, {"step": np.int32(step), "params": params, "batch_stats": stats,
                     "opt_state": {"mu": np.zeros(3, np.float32)}, "rng": np.zeros(2, np.uint32)})
    saved[step] = _flat({"params": params, "batch_stats": stats})
  ckpt.close()
  wd.metrics_jsonl.write_text("".join(
      json.dumps({"step": s, "split": "eval", "accuracy": a}) + "\n"
      for s, a in ((3, 0.9), (5, 0.7))))

  for which, step in (("best", 3), ("latest", 5)):
    config = _unet_config(tiny_data_dir, init_from=os.fspath(wd.path),
                          init_from_checkpoint=which)
    lines = []
    new, plan = transfer.start_from(config, fresh, engine=seg.engine, tx=seg.tx,
                                    log=lines.append)
    got = _flat({"params": new.params, "batch_stats": new.batch_stats})
    assert set(plan.loaded) == encoder and set(plan.random) == set(before) - encoder
    assert set(plan.unused) == {"params/fc/kernel", "params/fc/bias"}
    for k in before:
      np.testing.assert_array_equal(got[k], saved[step][k] if k in encoder else before[k],
                                    err_msg=k)
    assert lines[0].endswith(f"step {step} ({which})")
    assert int(new.step) == 0
    jax.tree.map(np.testing.assert_array_equal, new.opt_state, fresh.opt_state)


def test_two_phase_schedule_freezes_then_finetunes_everything(tiny_data_dir):
  """freeze_until_step=2: two steps leave the encoder's parameters and statistics
  bit-identical while the head moves; from step 3 the encoder trains too, and the
  logged learning rate is scaled by finetune_learning_rate_scale."""
  config = _resnet_config(tiny_data_dir, freeze="^encoder/stem/", freeze_until_step=2,
                          finetune_learning_rate_scale=0.5, **{"optimizer.name": "adam"})
  exp = loop.build(config, devices=jax.devices()[:1])  # one device compiles faster
  state = exp.create_state()
  initial = _flat({"params": state.params, "batch_stats": state.batch_stats})
  frozen = {k for k in initial if k.split("/")[1:3] == ["encoder", "stem"]}
  assert any(k.startswith("batch_stats/") for k in frozen)
  batches = exp.train_dataset().as_numpy_iterator()
  history, rates = [], []
  for _ in range(3):
    state, metrics = exp.train_step(state, exp.engine.put_batch(next(batches)))
    history.append(_flat({"params": state.params, "batch_stats": state.batch_stats}))
    rates.append(float(metrics["learning_rate"]))
  for k in initial:
    if k in frozen:
      np.testing.assert_array_equal(history[1][k], initial[k], err_msg=k)
    elif k.startswith("params/") and not k.endswith("bias"):  # biases may get zero grads
      assert not np.array_equal(history[1][k], initial[k]), k
  moved = [k for k in frozen if not np.array_equal(history[2][k], initial[k])]
  assert set(moved) == frozen
  lr = config.optimizer.learning_rate
  assert rates == pytest.approx([lr, lr, 0.5 * lr])


def test_runs_saved_before_these_keys_resume_unchanged(tmp_path):
  """A config.json written before init_from/freeze existed: the new keys at their
  defaults are no change, set to something else they are one."""
  config = tiny_config(str(tmp_path))
  saved = json.loads(config.to_json_best_effort())
  for key in ("init_from", "init_from_checkpoint", "init_from_rename", "init_from_skip",
              "freeze", "freeze_until_step", "finetune_learning_rate_scale"):
    del saved[key]
  assert config_lib.resume_changes(json.dumps(saved), config) == ([], [])
  config.freeze = "^encoder/"
  assert config_lib.resume_changes(json.dumps(saved), config) == (
      ["freeze: None -> '^encoder/'"], [])
