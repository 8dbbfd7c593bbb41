"""A damaged prepared dataset is named: the file, what is wrong with it, and
how to re-prepare it (`visionjax.data.prepared`), instead of TFDS's
DataLossError without a file name or "its splits are []".

Each test copies the prepared `digit_scenes/tiny` into its own data_dir and
damages one file there.
"""
import os
import re
import shutil

import pytest
from spine_fixtures import tiny_config

from visionjax.data import builtin, prepared
from visionjax.train import loop

VERSION = os.path.join("digit_scenes", "tiny", str(builtin.DigitScenes.VERSION))
TRAIN = "digit_scenes-train.tfrecord-00000-of-00001"
TEST = "digit_scenes-test.tfrecord-00000-of-00001"


@pytest.fixture
def data_dir(tiny_data_dir, tmp_path):
  d = tmp_path / "tfds"
  shutil.copytree(tiny_data_dir, d)
  return d


def _hint(data_dir):
  folder = re.escape(str(data_dir / VERSION))
  return (rf"re-prepare the dataset: delete {folder} and run the same command again "
          r"\(it prepares 'digit_scenes/tiny' anew from its sources\)$")


def _overwrite(path, offset, n=64):
  data = bytearray(path.read_bytes())
  data[offset:offset + n] = b"\x00" * n  # same size: only the records' CRCs can tell
  path.write_bytes(bytes(data))


def _check(data_dir):
  loop.build(tiny_config(str(data_dir))).check_data()


def test_truncated_record_file_is_named_and_reprepare_fixes_it(data_dir):
  path = data_dir / VERSION / TRAIN
  full = path.read_bytes()
  path.write_bytes(full[:len(full) // 2])
  with pytest.raises(prepared.DatasetFilesError,
                     match=rf"^{re.escape(str(path))} is truncated \(split 'train' of "
                           rf"'digit_scenes/tiny' has {len(full) // 2} bytes of the {len(full)} "
                           rf"written when it was prepared\); " + _hint(data_dir)):
    _check(data_dir)
  shutil.rmtree(data_dir / VERSION)  # what the message says to do
  _check(data_dir)
  assert (data_dir / VERSION / TRAIN).read_bytes() == full  # the builder is deterministic


def test_missing_record_file_is_named(data_dir):
  path = data_dir / VERSION / TEST
  path.unlink()
  with pytest.raises(prepared.DatasetFilesError,
                     match=rf"^{re.escape(str(path))} is missing \(1 of the 1 record files of "
                           r"split 'test' of 'digit_scenes/tiny'\); " + _hint(data_dir)):
    _check(data_dir)


def test_missing_dataset_info_is_named(data_dir):
  path = data_dir / VERSION / "dataset_info.json"
  path.unlink()
  with pytest.raises(prepared.DatasetFilesError,
                     match=rf"^{re.escape(str(path))} is missing: the prepared dataset "
                           r"'digit_scenes/tiny' is incomplete; " + _hint(data_dir)):
    _check(data_dir)


def test_corrupt_dataset_info_is_named(data_dir):
  path = data_dir / VERSION / "dataset_info.json"
  path.write_text('{"name": "digit_scenes", "splits": [')
  with pytest.raises(prepared.DatasetFilesError,
                     match=rf"^{re.escape(str(path))} is not valid JSON \(.*line 1.*\); "
                           + _hint(data_dir)):
    loop.build(tiny_config(str(data_dir)))


def test_corrupt_eval_records_are_named_before_training(data_dir):
  path = data_dir / VERSION / TEST
  _overwrite(path, 5000)
  with pytest.raises(ValueError,
                     match=rf"^cannot read the evaluation split 'test' of 'digit_scenes/tiny': "
                           rf"{re.escape(str(path))} is damaged \(DataLossError: corrupted record "
                           r"at \d+\); " + _hint(data_dir)):
    _check(data_dir)


def test_corrupt_train_records_stop_the_run_naming_the_file(data_dir, tmp_path):
  path = data_dir / VERSION / TRAIN
  _overwrite(path, 50000)
  wd = tmp_path / "run"
  with pytest.raises(loop.BadBatchError,
                     match=r"^the training batch of step 1 could not be read; training stopped "
                           rf"before step 1: {re.escape(str(path))} is damaged \(DataLossError: "
                           r"corrupted record at \d+\); " + _hint(data_dir)):
    loop.train_and_evaluate(tiny_config(str(data_dir), num_visualizations=0), str(wd))
  assert not (wd / "checkpoints").exists() or not os.listdir(wd / "checkpoints")
