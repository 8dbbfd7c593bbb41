"""Faults that must not lose work or hang: damaged checkpoints, a second writer,
a changed config on resume, a file where the checkpoint folder should be."""
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from spine_fixtures import tiny_config

from visionjax.train import loop


def _config(data_dir, steps, **kw):
  return tiny_config(data_dir, num_train_steps=steps, **{"checkpoint.every_steps": 2,
                                                          "checkpoint.async_save": False,
                                                          "num_visualizations": 0, **kw})


def _train_steps(wd):
  return [json.loads(line)["step"] for line in open(os.path.join(wd, "metrics.jsonl"))
          if json.loads(line)["split"] == "train"]


def test_damaged_newest_checkpoints_fall_back_to_the_last_intact_one(tiny_data_dir, tmp_path,
                                                                      capsys):
  wd = str(tmp_path / "run")
  loop.train_and_evaluate(_config(tiny_data_dir, 4), wd)
  ckpts = os.path.join(wd, "checkpoints")
  assert sorted(os.listdir(ckpts)) == ["2", "4"]
  os.mkdir(os.path.join(ckpts, "999"))  # an empty "newest" checkpoint
  for root, _, files in os.walk(os.path.join(ckpts, "4")):  # step 4's bytes destroyed
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"\0garbage")
  loop.train_and_evaluate(_config(tiny_data_dir, 6), wd)
  out = capsys.readouterr()
  text = out.out + out.err
  assert "checkpoints/999 cannot be restored" in text
  assert "checkpoints/4 cannot be restored" in text
  moved = sorted(p.split(".")[0] for p in os.listdir(os.path.join(wd, "checkpoints_unreadable")))
  assert moved == ["4", "999"]
  # Resumed from step 2: steps 3..6 were trained again after the first run's 1..4.
  assert _train_steps(wd)[-2:] == [4, 6] and "6" in os.listdir(ckpts)
  assert json.load(open(os.path.join(wd, "final_metrics.json")))["step"] == 6


def test_resume_refuses_a_config_that_changes_the_run(tiny_data_dir, tmp_path):
  wd = str(tmp_path / "run")
  loop.train_and_evaluate(_config(tiny_data_dir, 2), wd)
  with pytest.raises(ValueError, match=r"(?s)would change what it means:\n"
                                       r"  optimizer.learning_rate: 0.001 -> 0.002\n"
                                       r"  seed: 0 -> 1\n.*resume_changed=True"):
    loop.train_and_evaluate(_config(tiny_data_dir, 4, seed=1,
                                    **{"optimizer.learning_rate": 0.002}), wd)
  # Allowed changes (a longer run) and a deliberate override both resume; every
  # config the run used is kept.
  loop.train_and_evaluate(_config(tiny_data_dir, 4, seed=1, resume_changed=True), wd)
  assert json.load(open(os.path.join(wd, "config.json")))["seed"] == 1
  archived = [json.load(open(os.path.join(wd, "configs", f)))
              for f in os.listdir(os.path.join(wd, "configs"))]
  assert [(c["seed"], c["num_train_steps"]) for c in archived] == [(0, 2)]


def test_a_second_writer_is_refused_at_once(tiny_data_dir, tmp_path):
  wd = tmp_path / "run"
  wd.mkdir()
  parent = os.getppid()  # a live process on this host holds the lock
  (wd / ".lock").write_text(json.dumps({"pid": parent, "host": socket.gethostname(),
                                        "since": time.time() - 60, "heartbeat": time.time()}))
  t = time.time()
  with pytest.raises(ValueError, match=rf"workdir .*run is in use by process {parent} on host "
                                       rf"{socket.gethostname()} since "):
    loop.train_and_evaluate(_config(tiny_data_dir, 2), str(wd))
  assert time.time() - t < 5
  assert not (wd / "metrics.jsonl").exists()


def test_a_crashed_writers_lock_does_not_block(tiny_data_dir, tmp_path):
  wd = tmp_path / "run"
  wd.mkdir()
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  (wd / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                        "since": 0, "heartbeat": 0}))
  loop.train_and_evaluate(_config(tiny_data_dir, 2), str(wd))
  assert not (wd / ".lock").exists()  # released at the end
  # Another host's lock whose heartbeat is older than the lease is stale too.
  (wd / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": 0,
                                        "heartbeat": time.time() - 3600}))
  loop.train_and_evaluate(_config(tiny_data_dir, 2), str(wd))


def test_checkpoints_that_is_a_file_is_named(tiny_data_dir, tmp_path):
  wd = tmp_path / "run"
  wd.mkdir()
  (wd / "checkpoints").write_text("oops")
  t = time.time()
  with pytest.raises(ValueError, match=r"checkpoints is a file"):
    loop.train_and_evaluate(_config(tiny_data_dir, 2), str(wd))
  assert time.time() - t < 5


@pytest.mark.parametrize("content,pattern", [
    (None, r"error: config file '.*cfg.py' does not exist"),
    ("def get_config(:\n", r"error: config file '.*cfg.py' has a syntax error at line 1"),
    ("raise RuntimeError('boom')\n", r"error: config file '.*cfg.py' raised RuntimeError: boom"),
    ("X = 1\n", r"error: config file '.*cfg.py' defines no get_config\(\) function"),
])
def test_bad_config_file_is_one_line(tmp_path, content, pattern):
  from spine_fixtures import run_train_cli
  cfg = tmp_path / "cfg.py"
  if content is not None:
    cfg.write_text(content)
  r = run_train_cli(str(cfg), str(tmp_path / "wd"), timeout=120)
  assert r.returncode == 1
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  last = r.stderr.strip().splitlines()[-1]  # (TensorFlow's start-up log lines come before)
  assert __import__("re").search(pattern, last), r.stderr[-2000:]


def test_sigterm_during_start_up_saves_after_the_first_step(tiny_data_dir, tmp_path):
  import signal

  from spine_fixtures import CNN_CONFIG, run_train_cli, tiny_cli_flags
  wd = tmp_path / "wd"
  proc = run_train_cli(CNN_CONFIG, str(wd), *tiny_cli_flags(tiny_data_dir, 1000),
                       background=True)
  deadline = time.time() + 120
  while time.time() < deadline and not (wd / ".lock").exists():
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)  # while it builds, prepares and compiles
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out[-3000:]
  assert "SIGTERM received: saved checkpoint at step 1" in out
  assert sorted(os.listdir(wd / "checkpoints")) == ["1"]


def test_stop_during_the_final_evaluation_keeps_the_final_checkpoint(tiny_data_dir, tmp_path,
                                                                     monkeypatch):
  from visionjax.train import checkpoint as ckpt_lib
  from visionjax.train import workdir as workdir_lib
  preempt = loop._Preemption()
  save = ckpt_lib.Checkpointer.save

  def save_then_signal(self, step, state, metrics=None):
    save(self, step, state, metrics)
    if step == 4:  # the final save: a SIGTERM arrives as the final evaluation starts
      preempt.requested, preempt.signal_name = True, "SIGTERM"

  monkeypatch.setattr(ckpt_lib.Checkpointer, "save", save_then_signal)
  wd = workdir_lib.Workdir.create(tmp_path / "run")
  out = loop._train_and_evaluate(_config(tiny_data_dir, 4), wd, None, preempt)
  assert out == {"preempted_at_step": 4}
  assert "4" in os.listdir(wd.checkpoints) and not wd.final_metrics.exists()


def _flip_array_bytes(step_dir):
  """Overwrites 8 bytes in the middle of the largest array chunk file of a
  saved checkpoint (the file stays the same size and Orbax's chunk index,
  which it checks with crc32c, stays intact)."""
  files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(step_dir, "default"))
           for f in fs if os.sep + "d" + os.sep in os.path.join(r, f)]
  big = max(files, key=os.path.getsize)
  data = bytearray(open(big, "rb").read())
  mid = len(data) // 2
  data[mid:mid + 8] = bytes(b ^ 0xA5 for b in data[mid:mid + 8])
  open(big, "wb").write(data)


def test_overwritten_checkpoint_bytes_are_detected_and_the_previous_one_restores(tmp_path):
  import jax
  import numpy as np
  import orbax.checkpoint as ocp

  from visionjax.train import checkpoint as ckpt_lib
  ckpts = tmp_path / "checkpoints"
  rng = np.random.default_rng(0)
  states = {s: {"w": rng.normal(size=(96, 96)).astype(np.float32), "step": np.int32(s)}
            for s in (2, 4)}
  ck = ckpt_lib.Checkpointer(str(ckpts), every_steps=2, async_save=False, config={"seed": 3})
  for s, state in states.items():
    ck.save(s, state)
  ck.close()
  before = ocp.StandardCheckpointer().restore(ckpts / "4" / "default")
  _flip_array_bytes(os.path.join(ckpts, "4"))
  # Orbax alone restores the damaged checkpoint without a word, as other numbers.
  after = ocp.StandardCheckpointer().restore(ckpts / "4" / "default")
  assert not np.array_equal(before["w"], after["w"]) and after["step"] == 4
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), states[2])
  ck = ckpt_lib.Checkpointer(str(ckpts), every_steps=2, async_save=False)
  assert ck.integrity(4)["config"] == {"seed": 3}
  with pytest.raises(ckpt_lib.CheckpointIntegrityError,
                     match=r"checkpoints/4: 1 of 2 arrays differ from the checksums saved with "
                           r"them \(first: w\); its bytes were changed after saving"):
    ck.restore(4, abstract)
  # The resume path (`restore_newest_intact`, as in the loop) moves it aside,
  # naming it, and restores step 2, which checks out.
  warnings = []
  step, state = ck.restore_newest_intact(abstract, warn=warnings.append)
  ck.close()
  assert step == 2
  np.testing.assert_array_equal(state["w"], states[2]["w"])
  assert len(warnings) == 1 and "checkpoints/4 cannot be restored (CheckpointIntegrityError: " \
      in warnings[0]
  assert [p.split(".")[0] for p in os.listdir(tmp_path / "checkpoints_unreadable")] == ["4"]


def test_after_a_nan_the_named_checkpoint_restores(tiny_data_dir, tmp_path, capsys, monkeypatch):
  """The newest checkpoints (5, 4) are damaged after saving and step 6's batch
  makes the loss NaN: the message names step 3, the newest one that restores."""
  import jax
  import numpy as np
  import tensorflow as tf

  from visionjax.train import checkpoint as ckpt_lib
  save = ckpt_lib.Checkpointer.save

  def save_then_damage(self, step, state, metrics=None):
    save(self, step, state, metrics)  # synchronous here (async_save=False)
    if step >= 4:
      _flip_array_bytes(os.path.join(self.directory, str(step)))

  train_dataset = loop.Experiment.train_dataset

  def nan_images_at_step_6(self, start_step=0):
    def poison(i, batch):
      nan = tf.fill(tf.shape(batch["image"]), float("nan"))
      return {**batch, "image": tf.where(i + start_step + 1 == 6, nan, batch["image"])}
    return train_dataset(self, start_step).enumerate().map(poison)

  monkeypatch.setattr(ckpt_lib.Checkpointer, "save", save_then_damage)
  monkeypatch.setattr(loop.Experiment, "train_dataset", nan_images_at_step_6)
  config = _config(tiny_data_dir, 8, **{"checkpoint.every_steps": 1, "log_every_steps": 1})
  wd = str(tmp_path / "nan")
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"non-finite loss at step 6 \(loss=nan, grad_norm=nan\); training "
                           r"stopped and the last good checkpoint is step 3 in .*checkpoints "
                           r"\(restored and verified\)"):
    loop.train_and_evaluate(config, wd)
  text = "".join(capsys.readouterr())
  assert "checkpoints/5 cannot be restored (CheckpointIntegrityError" in text
  assert "checkpoints/4 cannot be restored (CheckpointIntegrityError" in text
  ck = ckpt_lib.Checkpointer(os.path.join(wd, "checkpoints"), every_steps=0, async_save=False)
  assert max(ck.all_steps()) == 3
  assert ck.integrity(3)["config"] == json.loads(config.to_json_best_effort())  # resolved config
  restored = ck.restore(3, loop.build(config).abstract_state())  # verified against its checksums
  ck.close()
  assert int(restored.step) == 3
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored.params))


def test_a_real_second_process_on_the_workdir_is_refused_within_5_s(tiny_data_dir, tmp_path):
  """Two real training processes on one workdir: the second is refused at
  once (timed inside it, start-up excluded) naming the first, which goes on."""
  from fault_child import child_env
  child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_child.py")
  wd = tmp_path / "run"
  cmd = [sys.executable, child, tiny_data_dir, str(wd), "100000", "--checkpoint-every", "0"]
  first = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
  try:  # both start up together; the second tries once the first holds the lock
    second = subprocess.run(cmd + ["--after-lock"], env=child_env(), capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 1, second.stdout + second.stderr[-3000:]
    last = second.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"error: workdir {re.escape(str(wd))} is in use by process {first.pid} "
                        rf"on host {re.escape(socket.gethostname())} since [-0-9]+ [:0-9]+ "
                        rf"\(lock file {re.escape(str(wd))}/\.lock\); wait for it, stop it, or "
                        r"use another --workdir", last), last
    elapsed = float(re.search(r"elapsed ([0-9.]+)", second.stdout).group(1))
    assert elapsed < 5, elapsed  # refused before building anything
    assert first.poll() is None  # the first run goes on, still holding the lock
    assert json.loads((wd / ".lock").read_text())["pid"] == first.pid
    assert not (wd / "metrics.jsonl").exists() or _train_steps(wd) == sorted(set(_train_steps(wd)))
  finally:
    first.kill()  # (SIGTERM's clean stop is tested above; this keeps the test short)
    first.communicate(timeout=300)


def test_checksums_see_every_bit_and_not_the_sharding():
  import jax
  import jax.numpy as jnp
  from jax.sharding import Mesh, NamedSharding
  from jax.sharding import PartitionSpec as P
  import numpy as np

  from visionjax.train import checkpoint as ckpt_lib
  rng = np.random.default_rng(0)
  tree = {"w": rng.normal(size=(16, 8)).astype(np.float32),
          "h": rng.normal(size=(8,)).astype(jnp.bfloat16),
          "i": rng.integers(-9, 9, (5, 3)).astype(np.int8), "b": rng.random(7) > 0.5,
          "step": np.int32(7)}
  host = ckpt_lib.checksums(tree)
  mesh = Mesh(np.array(jax.devices()), ("d",))  # 8 devices: "w" split in 8 row blocks
  sharded = {**tree, "w": jax.device_put(tree["w"], NamedSharding(mesh, P("d")))}
  assert ckpt_lib.checksums(sharded) == ckpt_lib.checksums(jax.device_put(tree)) == host
  assert len(set(host.values())) == len(host)
  bits = tree["w"].view(np.uint32)
  for bit in range(32):  # one bit of one element, anywhere
    flipped = bits.copy()
    flipped[11, 5] ^= np.uint32(1 << bit)
    assert ckpt_lib.checksums({**tree, "w": flipped.view(np.float32)})["w"] != host["w"], bit
  swapped = tree["w"].copy()
  swapped[[0, 1]] = swapped[[1, 0]]  # same values, other places
  assert ckpt_lib.checksums({**tree, "w": swapped})["w"] != host["w"]
  with pytest.raises(ckpt_lib.CheckpointIntegrityError, match=r"ckpt 3: 1 of 5 arrays differ "
                                                              r"from the checksums saved with "
                                                              r"them \(first: w\)"):
    ckpt_lib.verify({**tree, "w": swapped}, host, "ckpt 3")
