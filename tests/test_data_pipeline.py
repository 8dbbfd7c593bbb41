"""Pipeline guarantees: determinism, resume, per-host splits, exact padded
evaluation, static shapes, device placement; mock-data smoke test of every
experiment config."""
import glob
import os

import fixtures_data as F
import jax
import numpy as np
import pytest
import spine_fixtures
from spine_fixtures import REPO
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from visionjax.data import augment_config, pipeline
from visionjax.train import parallel


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  return F.real_datasets(tmp_path_factory)


def _seg_config(built, **kw):
  return F.data_config(built, "voc_segmentation/2012_sbd", "segmentation", **{
      "dataset.image_size": (40, 40), "batch_size": 8,
      "dataset.augment": ("random_resized_crop", "horizontal_flip", "color_jitter"),
      **kw})


def _take(ds, n):
  it = ds.as_numpy_iterator()
  return [next(it) for _ in range(n)]


def _same(a, b):
  return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_train_pipeline_is_deterministic_given_the_seed(built):
  a = _take(spine_fixtures.train_dataset(_seg_config(built)), 3)
  b = _take(spine_fixtures.train_dataset(_seg_config(built)), 3)
  assert _same(a, b)
  c = _take(spine_fixtures.train_dataset(_seg_config(built, seed=1)), 3)
  assert not _same(a, c)
  assert a[0]["image"].shape == (8, 40, 40, 3) and a[0]["mask"].shape == (8, 40, 40)


def test_resume_skips_exactly_the_consumed_batches(built):
  full = _take(spine_fixtures.train_dataset(_seg_config(built)), 4)
  resumed = _take(spine_fixtures.train_dataset(_seg_config(built), start_step=2), 2)
  assert _same(full[2:], resumed)


def _fake_processes(monkeypatch, index, count):
  monkeypatch.setattr(jax, "process_index", lambda *a: index)
  monkeypatch.setattr(jax, "process_count", lambda *a: count)


def _keys(images):
  return [np.round(im).astype(np.uint8).tobytes() for im in images]


def test_hosts_read_disjoint_parts_and_eval_counts_each_example_once(built, monkeypatch):
  raw = {img.tobytes() for img in built["truth"]["cifar10"]["train"][0]}
  train_seen, eval_seen, n_batches = [], [], set()
  for host in range(2):
    _fake_processes(monkeypatch, host, 2)
    c = F.data_config(built, "cifar10", "classification", batch_size=8,
                      eval_batch_size=8, **{"dataset.mean": (0.0,) * 3,
                                            "dataset.std": (1 / 255,) * 3})
    assert pipeline.host_batch_size(8) == 4
    # Two epochs of this host's (shuffled, endless) train stream: its share.
    train_seen.append({k for b in _take(spine_fixtures.train_dataset(c), 3)
                       for k in _keys(b["image"])})
    batches = list(spine_fixtures.eval_batches(c, "train"))
    n_batches.add(len(batches))
    for b in batches:
      assert b["image"].shape == (4, 32, 32, 3)
      eval_seen += _keys(b["image"][b["valid"]])
  assert train_seen[0].isdisjoint(train_seen[1])
  assert train_seen[0] | train_seen[1] == raw
  assert len(n_batches) == 1  # every host runs the same number of eval steps
  assert sorted(eval_seen) == sorted(raw) and len(eval_seen) == 10


def test_a_host_without_examples_yields_padding_batches(built, monkeypatch):
  seen = []
  for host in range(8):  # 8 processes, 4 test images: half the hosts get none
    _fake_processes(monkeypatch, host, 8)
    c = F.data_config(built, "cifar10", "classification", eval_batch_size=8)
    batches = list(spine_fixtures.eval_batches(c))
    assert len(batches) == 1
    b = batches[0]
    assert b["image"].shape == (1, 32, 32, 3) and b["label"].shape == (1,)
    assert b["valid"].dtype == bool
    seen.append(int(b["valid"].sum()))
  assert seen == [1, 1, 1, 1, 0, 0, 0, 0]


def test_padded_segmentation_eval_counts_every_labelled_pixel_once(built):
  c = F.data_config(built, "voc_segmentation/2012", "segmentation",
                    **{"dataset.image_size": (64, 64), "dataset.eval_split": "validation"})
  labelled = 0
  for b in spine_fixtures.eval_batches(c):
    assert b["mask"].shape == (8, 64, 64)
    labelled += int(((b["mask"] != 255) & b["valid"][:, None, None]).sum())
  truth = built["truth"]["voc2012"]
  assert labelled == sum(int((t["mask"] != 255).sum()) for t in truth.values()
                         if t["split"] == "val")


def test_variable_size_images_need_image_size(built):
  c = F.data_config(built, "voc/2007", "detection")
  with pytest.raises(ValueError, match=r"varying size.*image_size"):
    next(spine_fixtures.eval_batches(c))


# ------------------------------------------- epochs and resume by position
@pytest.fixture(scope="module")
def sharded_tiny(tmp_path_factory):
  """`digit_scenes/tiny` (64 train examples) written as 4 files of 16, so
  file-level shuffling is observable."""
  from visionjax.data import builtin  # noqa: F401  registers the builder
  d = str(tmp_path_factory.mktemp("tiny4"))
  b = tfds.builder("digit_scenes/tiny", data_dir=d)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=4))
  assert [f.take for f in b.info.splits["train"].file_instructions] == [16] * 4
  # Each file's images, in file order ('train[16:32]' is the second file).
  files = [_keys(x["image"] for x in tfds.as_numpy(b.as_dataset(split=f"train[{i}:{i + 16}]")))
           for i in range(0, 64, 16)]
  return d, files


def _tiny(data_dir, **kw):
  """Batch 16 over 64 examples (4 steps an epoch); pixels pass through
  unnormalized so images can be matched to the raw examples."""
  return spine_fixtures.tiny_config(data_dir, **{
      "batch_size": 16, "dataset.shuffle_buffer": 16,
      "dataset.mean": (0.0,) * 3, "dataset.std": (1 / 255,) * 3, **kw})


@pytest.mark.parametrize("processes,devices", [(1, 1), (1, 8), (2, 8)])
def test_resume_across_epochs_equals_the_uninterrupted_run(sharded_tiny, monkeypatch,
                                                           processes, devices):
  """Steps 0..9 cross two epoch boundaries; resuming at 3 (inside epoch 0)
  and at 7 (inside epoch 1) continues the same batches, augmentation
  included, for one device, 8 devices and the last of two processes."""
  _fake_processes(monkeypatch, processes - 1, processes)
  monkeypatch.setattr(jax, "device_count", lambda *a: devices)
  c = _tiny(sharded_tiny[0], **{"dataset.augment": ("horizontal_flip", "color_jitter")})
  full = _take(spine_fixtures.train_dataset(c), 10)
  assert full[0]["image"].shape == (16 // processes, 32, 32, 3)
  for start in (3, 7):
    assert _same(full[start:], _take(spine_fixtures.train_dataset(c, start_step=start),
                                     10 - start))
  assert not _same(full[:1], full[4:5])  # epoch 1 is not epoch 0 again


def test_resume_far_into_training_reads_at_most_one_epoch(sharded_tiny):
  """Step 10**6 (16M examples in) is reached without replaying the stream:
  the old skip-based resume would read 16M examples here."""
  c = _tiny(sharded_tiny[0])
  far = _take(spine_fixtures.train_dataset(c, start_step=10**6), 4)
  assert _same(far[3:], _take(spine_fixtures.train_dataset(c, start_step=10**6 + 3), 1))


def test_examples_and_the_augmentation_preview_are_what_training_sees(tiny_data_dir):
  """`examples` reads the split in file order, unaugmented; `preview`'s draw i
  of example i is training's example i (shuffle buffer 1: file order)."""
  augment = ("horizontal_flip", "color_jitter", ("rotation", {"max_degrees": 30.0}))
  c = _tiny(tiny_data_dir, **{"dataset.shuffle_buffer": 1, "seed": 3,
                              "dataset.augment": augment})
  data = pipeline.resolve(c.dataset)
  raw = list(tfds.as_numpy(data.builders[0].as_dataset(split="test")))[:5]
  test = pipeline.examples(data, count=5)  # the eval split
  assert len(test) == 5 and set(test[0]) >= {"image", "label", "mask", "boxes"}
  for ex, r in zip(test, raw):
    np.testing.assert_array_equal(ex["image"], r["image"])
    np.testing.assert_array_equal(ex["mask"], r["segmentation_mask"][..., 0])
    assert ex["image"].dtype == np.uint8
  train = pipeline.examples(data, "train", count=4)
  batch = _take(spine_fixtures.train_dataset(c), 1)[0]  # pixels unnormalized (_tiny)
  draws = [augment_config.preview(c.dataset, ex, 4, seed=3) for ex in train]
  for i, ex in enumerate(train):
    np.testing.assert_array_equal(batch["image"][i], draws[i][i]["image"])
    assert batch["label"][i] == ex["label"]
  assert not np.array_equal(draws[0][0]["image"], draws[0][1]["image"])  # draws differ
  assert not np.array_equal(draws[0][0]["image"], train[0]["image"])


@pytest.mark.parametrize("processes", [1, 2])
def test_every_epoch_is_a_permutation_of_the_host_share(sharded_tiny, monkeypatch, processes):
  """Per host, each epoch shows each of its examples exactly once, in a new
  order; hosts read disjoint parts that together make the split."""
  raw = {k for f in sharded_tiny[1] for k in f}
  per_epoch = 64 // processes
  shares = []
  for host in range(processes):
    _fake_processes(monkeypatch, host, processes)
    seen = [k for b in _take(spine_fixtures.train_dataset(_tiny(sharded_tiny[0])),
                             3 * per_epoch // (16 // processes))
            for k in _keys(b["image"])]
    epochs = [seen[i:i + per_epoch] for i in range(0, len(seen), per_epoch)]
    assert len(epochs) == 3 and all(len(set(e)) == per_epoch for e in epochs)
    assert set(epochs[0]) == set(epochs[1]) == set(epochs[2])
    assert len({tuple(e) for e in epochs}) == 3  # reshuffled every epoch
    shares.append(set(epochs[0]))
  assert set.union(*shares) == raw
  assert sum(len(s) for s in shares) == len(raw)  # disjoint


def test_files_are_read_in_a_new_order_every_epoch(sharded_tiny):
  """With a buffer of 1 an epoch is whole files back to back: their order
  changes between epochs (file-level shuffling survives)."""
  d, files = sharded_tiny
  c = _tiny(d, **{"dataset.shuffle_buffer": 1})
  seen = [k for b in _take(spine_fixtures.train_dataset(c), 16) for k in _keys(b["image"])]
  orders = []
  for e in range(4):
    runs = [seen[i:i + 16] for i in range(64 * e, 64 * (e + 1), 16)]
    assert sorted(map(files.index, runs)) == [0, 1, 2, 3]  # each run is one whole file
    orders.append(tuple(map(files.index, runs)))
  assert len(set(orders)) > 1


def test_batches_are_placed_on_the_mesh_and_prefetched(built):
  c = _seg_config(built)
  engine = parallel.JitEngine()
  host = _take(spine_fixtures.train_dataset(c), 2)
  on_device = list(parallel.prefetch_to_device(iter(host), engine.put_batch, size=2))
  assert len(on_device) == 2
  for h, d in zip(host, on_device):
    x = d["image"]
    assert isinstance(x, jax.Array) and x.sharding == engine.data
    assert len(x.addressable_shards) == 8 and x.addressable_shards[0].data.shape[0] == 1
    np.testing.assert_array_equal(np.asarray(x), h["image"])
    np.testing.assert_array_equal(np.asarray(d["mask"]), h["mask"])


# -------------------------------------------------- every experiment config
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, "experiments", "configs", "*.py"))
                 if not os.path.basename(p).startswith("_"))  # the package's __init__


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p)[:-3])
def test_experiment_config_pipeline_on_mock_data(path, monkeypatch):
  """Fast smoke test: random examples with each dataset's real features."""
  c = F.load_config(os.path.basename(path)[:-3])
  c.batch_size = c.eval_batch_size = 8
  c.dataset.shuffle_buffer = 8
  if c.dataset.get("path"):
    pytest.skip("your-own-data config (a folder path, nothing for mock_data to fake): "
                "it validates in test_configs_maskrcnn.py, and the coco_json pipeline "
                "runs on real-format folders in test_data_instances_coco.py")
  if c.dataset.name.startswith("cityscapes"):
    pytest.skip("16 random 1024x2048 PNG frames take ~20 s to fake; the config "
                "trains on real-format Cityscapes zips in test_data_configs.py")
  # Mocked builders are "prepared" (no archives needed) and have 8 examples
  # in every split (mock_data itself leaves split sizes unknown).
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  # mock_data serves examples with no record files on disk: nothing to check.
  from visionjax.data import prepared
  monkeypatch.setattr(prepared, "check_files", lambda builder: None)
  fake = tfds.core.SplitDict([tfds.core.SplitInfo(name=n, shard_lengths=[8], num_bytes=0)
                              for n in ("train", "validation", "test")])
  monkeypatch.setattr(tfds.core.DatasetInfo, "splits", property(lambda self: fake))
  # TFDS's fake generator draws each field of a Sequence(dict) with its own
  # random length (boxes and labels would disagree) and unordered box
  # corners (which its own BBoxFeature rejects): fix lengths, sort corners.
  gen = mocking.RandomFakeGenerator
  init, obj = gen.__init__, gen._generate_random_obj
  monkeypatch.setattr(gen, "__init__", lambda self, *a, **k: init(
      self, *a, **{**k, "constant_dynamic_shape": True}))

  def random_obj(self, feature, tensor_info, rng):
    x = obj(self, feature, tensor_info, rng)
    if isinstance(feature, tfds.features.BBoxFeature):
      x = np.concatenate([np.minimum(x[..., :2], x[..., 2:]),
                          np.maximum(x[..., :2], x[..., 2:])], -1)
    return x

  monkeypatch.setattr(gen, "_generate_random_obj", random_obj)
  with tfds.testing.mock_data(num_examples=8):
    train = _take(spine_fixtures.train_dataset(c), 1)[0]
    evalb = next(spine_fixtures.eval_batches(c))
  shape = tuple(c.dataset.image_size
                or pipeline.resolve(c.dataset).info.features["image"].shape[:2])
  assert evalb["image"].shape == (8, *shape, 3) and evalb["valid"].all()
  assert train["image"].shape[0] == 8 and train["image"].shape[-1] == 3
  for b in (train, evalb):
    assert np.isfinite(b["image"]).all()
    if c.task == "segmentation":
      assert b["mask"].shape == b["image"].shape[:3]
    if c.task == "detection":
      assert b["boxes"].shape == (8, c.task_kwargs.max_boxes, 4)
    if c.task in ("classification", "localization"):
      assert b["label"].shape == (8,)
