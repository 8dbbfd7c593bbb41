"""A full disk: one line naming what failed and where, with 'free space and
rerun the same command to resume', and the rerun resumes.

The checkpoint case is real: the run is a process of its own under a file
size limit (RLIMIT_FSIZE, SIGXFSZ ignored), so TensorStore's write of the
checkpoint's array file fails with EFBIG inside Orbax's asynchronous save.
The metrics and picture cases fail the write itself with ENOSPC (injected
at the file's ``write``: a size limit cannot single out those files).
"""
import errno
import io
import json
import os
import re
import subprocess
import sys

from etils import epath
from fault_child import child_env
import pytest
from spine_fixtures import tiny_config

from visionjax.train import disk, loop

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_child.py")


def _child(data_dir, wd, *flags):
  return subprocess.run([sys.executable, CHILD, data_dir, str(wd), "6", *flags],
                        env=child_env(wd.parent / "jax_cache"), capture_output=True, text=True,
                        timeout=600)


def test_checkpoint_save_on_a_full_disk_is_one_line_then_resumes(tiny_data_dir, tmp_path):
  wd = tmp_path / "run"
  # The checkpoint's array file is ~1.3 MB; config, metrics and events are small.
  r = _child(tiny_data_dir, wd, "--fsize", "500000")
  out = r.stdout + r.stderr
  assert r.returncode == 1, out[-3000:]
  assert "Traceback" not in out, out[-5000:]
  last = r.stderr.strip().splitlines()[-1]
  assert re.fullmatch(rf"error: saving checkpoint 2 failed: File too large \({re.escape(str(wd))}"
                      r"/checkpoints\); free space and rerun the same command to resume",
                      last), last
  assert not [s for s in os.listdir(wd / "checkpoints") if s.isdigit()]  # nothing half-saved
  r = _child(tiny_data_dir, wd)  # space freed: the same command
  assert r.returncode == 0 and "done" in r.stdout, (r.stdout + r.stderr)[-3000:]
  assert sorted(s for s in os.listdir(wd / "checkpoints") if s.isdigit()) == ["2", "4", "6"]


class _FullFile(io.BytesIO):
  def write(self, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _full_disk_for(monkeypatch, name, after=0):
  """Writes to files called ``name`` fail with ENOSPC after ``after`` opens."""
  cls = type(epath.Path("/"))
  real_open = cls.open
  opened = []

  def open_(self, mode="r", *args, **kwargs):
    if self.name == name and ("a" in mode or "w" in mode):
      opened.append(1)
      if len(opened) > after:
        return _FullFile()
    return real_open(self, mode, *args, **kwargs)

  monkeypatch.setattr(cls, "open", open_)


def test_metrics_and_picture_writes_on_a_full_disk_are_one_line_then_resume(
    tiny_data_dir, tmp_path, monkeypatch):
  wd = tmp_path / "run"
  config = tiny_config(tiny_data_dir, num_train_steps=4, num_visualizations=0,
                       **{"checkpoint.every_steps": 2, "checkpoint.async_save": False})
  with monkeypatch.context() as m:
    _full_disk_for(m, "metrics.jsonl", after=1)  # step 2's line is written, step 4's is not
    with pytest.raises(disk.DiskFullError) as e:
      loop.train_and_evaluate(config, str(wd))
  assert str(e.value) == (f"writing metrics.jsonl failed: No space left on device "
                          f"({wd}/metrics.jsonl); free space and rerun the same command to resume")
  assert sorted(os.listdir(wd / "checkpoints")) == ["2"]
  with monkeypatch.context() as m:
    _full_disk_for(m, "learning_curves.png")
    with pytest.raises(disk.DiskFullError, match=r"^writing learning_curves.png failed: No space "
                                                 rf"left on device \({re.escape(str(wd))}/"
                                                 r"learning_curves.png\); free space and rerun "
                                                 r"the same command to resume$"):
      loop.train_and_evaluate(config, str(wd))  # resumes at 2, trains to 4, then the picture
  assert json.load(open(wd / "final_metrics.json"))["step"] == 4
  assert not (wd / "learning_curves.png").exists()
  loop.train_and_evaluate(config, str(wd))  # nothing left to train: evaluates, draws
  assert (wd / "learning_curves.png").stat().st_size > 0
  steps = [json.loads(line)["step"] for line in open(wd / "metrics.jsonl")]
  assert steps == [2, 4, 4, 4]  # train 2; train 4, eval 4; the rerun's eval 4


def test_disk_full_error_recognizes_each_shape():
  wd = "/runs/a"
  tensorstore = ValueError(
      'OUT_OF_RANGE: Error writing "params.w/0" in OCDBT database at local file '
      '"/runs/a/checkpoints/8.orbax-checkpoint-tmp/default/ocdbt.process_0/": Failed writing: '
      '"/runs/a/checkpoints/8.orbax-checkpoint-tmp/default/ocdbt.process_0/d/ab12": Failed to '
      "write 591900 bytes to file 5: No space left on device [os_error_code='28']")
  assert str(disk.disk_full_error(tensorstore, wd)) == (
      "saving checkpoint 8 failed: No space left on device (/runs/a/checkpoints); free space "
      "and rerun the same command to resume")
  try:
    try:
      raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/runs/a/tensorboard/events.out")
    except OSError as inner:
      raise RuntimeError("writer failed") from inner
  except RuntimeError as outer:
    assert str(disk.disk_full_error(outer, wd)).startswith(
        "writing TensorBoard events failed: Disk quota exceeded (/runs/a/tensorboard/events.out)")
  assert disk.disk_full_error(OSError(errno.EACCES, "Permission denied", "/runs/a/x"), wd) is None
  assert disk.disk_full_error(ValueError("os_error_code='2' not found"), wd) is None
