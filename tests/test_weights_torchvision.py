"""torchvision -> visionjax conversion: eval outputs equal torchvision's.

Every torchvision model is built with random weights (`weights=None`, no
download), its BatchNorm statistics/affines and conv/linear biases are
randomised too (default init leaves them at 0/1, which would hide a
mis-mapped statistic), and its eval-mode output on a random input is the
reference. The visionjax model built from the converted variables must give
the same output to a max relative difference (max |a - b| / max |b|) of
1e-5 in float32, at a size divisible by 32 and one that is not.

SSD300 is compared after post-processing: visionjax.detection's
`postprocess` with torchvision's settings must return torchvision's
detections (boxes to 1e-4 of the image, same scores, same order), except
the zero-area boxes (clipped wholly off the image) that torchvision keeps
and visionjax's NMS never keeps.

The fast set covers every converter code path (basic and bottleneck ResNet
blocks, VGG with BatchNorm, VGG without it in SSD300's trunk, AlexNet,
EfficientNet with and without expansion, DeepLabV3, FCN, SSD300); the
deeper/wider variants of the same paths are marked slow.

Models are compiled at XLA -O0 (tests/weights_parity.py): ~40 % less
compile time, same results.
"""
import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("torchvision.models")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from weights_parity import RTOL, jitted, max_rel  # noqa: E402

from visionjax import detection  # noqa: E402
from visionjax import weights as vw  # noqa: E402
from visionjax.weights import __main__ as cli  # noqa: E402
from visionjax.weights import torchvision as vwt  # noqa: E402

SIZES = ((64, 64), (45, 37))        # divisible by 32, and not.


def randomize(module, seed=0):
  """Random BN statistics/affines and biases on top of torch's init."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in module.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape,
                                               generator=g))
        m.running_var.copy_(0.5 + torch.rand(m.running_var.shape,
                                             generator=g))
        m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
        m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
      elif isinstance(getattr(m, "bias", None), torch.Tensor):
        m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
  return module.eval()


def torch_forward(module, x_nhwc):
  """torchvision eval output for NHWC numpy input, as NHWC numpy."""
  with torch.no_grad():
    out = module(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy()))
  out = (out["out"] if isinstance(out, dict) else out).numpy()
  return out.transpose(0, 2, 3, 1) if out.ndim == 4 else out


def _image(size, seed=1):
  return np.random.default_rng(seed).standard_normal(
      (1, *size, 3)).astype(np.float32)


def _build(name):
  torch.manual_seed(0)
  kwargs = {"weights": None}
  if name.startswith(("deeplabv3", "fcn")):
    # The auxiliary head is in torchvision's published weights; convert it
    # too so its keys are known to be dropped, not missed.
    kwargs.update(weights_backbone=None, aux_loss=True)
  return randomize(tvm.get_model(name, **kwargs))


def check_parity(name, sizes=SIZES, **model_overrides):
  module = _build(name)
  conv = vw.from_torchvision(name, module)
  apply = jitted(conv.model(**model_overrides))
  rels = []
  for size in sizes:
    x = _image(size)
    rel = max_rel(apply(conv.variables, jnp.asarray(x)),
                  torch_forward(module, x))
    print(f"{name} {size[0]}x{size[1]}: max relative difference {rel:.2e}")
    rels.append(rel)
  assert max(rels) <= RTOL, rels
  return module, conv


FAST = ("resnet18", "resnet50", "efficientnet_b0", "deeplabv3_resnet50",
        "fcn_resnet50")
# VGG without BatchNorm maps through the same code as SSD300's VGG-16 trunk,
# which the SSD test covers.
SLOW = ("resnet34", "resnet101", "resnet152", "vgg11", "vgg13", "vgg13_bn",
        "vgg16",
        "vgg16_bn", "vgg19", "vgg19_bn", "efficientnet_b1",
        "efficientnet_b2", "efficientnet_b3", "deeplabv3_resnet101",
        "fcn_resnet101")


@pytest.mark.parametrize("name", FAST)
def test_output_equals_torchvision(name):
  check_parity(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_output_equals_torchvision_slow(name):
  check_parity(name)


def test_alexnet_output_equals_torchvision():
  check_parity("alexnet", sizes=((64, 64), (67, 95)))  # at least 63×63


def test_every_registered_torchvision_twin_has_a_converter():
  expected = {f"resnet{d}" for d in (18, 34, 50, 101, 152)}
  expected |= {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")}
  expected |= {"alexnet", "ssd300_vgg16"} | {
      f"efficientnet_b{b}" for b in range(4)}
  expected |= {f"{m}_resnet{d}" for m in ("deeplabv3", "fcn")
               for d in (50, 101)}
  expected |= {"maskrcnn_resnet50_fpn"}      # tests/test_weights_maskrcnn.py
  assert set(vwt.TORCHVISION_MODELS) == expected
  assert set(FAST) | set(SLOW) | {"vgg11_bn", "alexnet", "ssd300_vgg16",
                                  "maskrcnn_resnet50_fpn"} == expected


def test_vgg11_bn_equals_torchvision_and_ceil_pools_differ_off_multiples_of_32():
  module, conv = check_parity("vgg11_bn")
  assert conv.model_kwargs["ceil_mode"] is False
  # visionjax's default ceil-mode pools: the same at 64×64, not at 45×37.
  ceil = jitted(conv.model(ceil_mode=True))
  x = _image((64, 64))
  assert max_rel(ceil(conv.variables, x), torch_forward(module, x)) <= RTOL
  x = _image((45, 37))
  assert max_rel(ceil(conv.variables, x), torch_forward(module, x)) > 1e-3


def _ssd_detections(conv, module, image01):
  """Both detectors on one 300×300 image in [0, 1]: (ours, torchvision's)
  post-processed detections, and both raw outputs and default boxes."""
  x = conv.preprocessing.normalize(255.0 * image01.transpose(1, 2, 0))[None]
  out = jitted(conv.model())(conv.variables, x)
  post = jax.jit(lambda l, o, a: detection.postprocess(
      l, o, a, score_threshold=0.01, iou_threshold=0.45, pre_nms_top_k=400,
      max_detections=200, clip=True))
  ours = post(out["logits"][0], out["offsets"][0], out["anchors"])
  raw = {}
  hooks = [module.head.register_forward_hook(
               lambda m, i, o: raw.update(head=o)),
           module.anchor_generator.register_forward_hook(
               lambda m, i, o: raw.update(anchors=o[0]))]
  with torch.no_grad():
    theirs = module([torch.from_numpy(image01)])[0]
  for h in hooks:
    h.remove()
  return ours, theirs, out, raw["head"], raw["anchors"]


def test_ssd300_vgg16_detections_equal_torchvision():
  torch.manual_seed(0)
  module = randomize(tvm.get_model("ssd300_vgg16", weights=None,
                                   weights_backbone=None, num_classes=21))
  with torch.no_grad():
    # Random VGG features are large enough to saturate the softmax at
    # exactly 1.0, and tied scores have no defined order. Smaller class
    # logits spread the 200 kept scores over 0.12-0.25 (closest two 1.3e-6
    # apart, far above the float differences between the two).
    for conv in module.head.classification_head.module_list:
      conv.weight.mul_(0.05)
  conv = vw.from_torchvision("ssd300_vgg16", module)
  assert conv.name == "ssd300_vgg16_tv"
  assert conv.model_kwargs["num_classes"] == 20  # torchvision counts bg
  image = np.random.default_rng(3).uniform(
      0, 1, (3, 300, 300)).astype(np.float32)
  ours, theirs, out, head, anchors = _ssd_detections(conv, module, image)

  # Raw outputs and default boxes first: a mismatch there is easier to read.
  assert max_rel(out["logits"][0], head["cls_logits"][0]) <= RTOL
  assert max_rel(out["offsets"][0], head["bbox_regression"][0]) <= RTOL
  anchors = anchors.numpy() / 300.0                              # xyxy
  ref_cxcywh = np.concatenate([(anchors[:, :2] + anchors[:, 2:]) / 2,
                               anchors[:, 2:] - anchors[:, :2]], -1)
  np.testing.assert_allclose(out["anchors"], ref_cxcywh, atol=1e-6)

  # The one known difference: torchvision keeps boxes that clipping to the
  # image made zero-area (predicted wholly outside it); visionjax's NMS
  # never keeps such boxes. Everything else must be equal, in order.
  boxes = theirs["boxes"].numpy() / 300.0
  proper = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  boxes = boxes[proper]
  scores = theirs["scores"].numpy()[proper]
  labels = theirs["labels"].numpy()[proper]
  n, m = int(ours.valid.sum()), len(scores)
  print(f"ssd300_vgg16: torchvision {len(proper)} detections "
        f"({len(proper) - m} zero-area), visionjax {n}")
  assert 200 >= n >= m > 100 and bool(ours.valid[:n].all())
  ob, osc, ocl = (np.asarray(a)[:m] for a in (ours.boxes, ours.scores,
                                               ours.classes))
  print(f"ssd300_vgg16: max box difference {np.abs(ob - boxes).max():.1e}, "
        f"max score difference {np.abs(osc - scores).max():.1e}")
  np.testing.assert_allclose(ob, boxes, atol=1e-4)
  np.testing.assert_allclose(osc, scores, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(ocl + 1, labels)
  # Ours go on past torchvision's cut-off at 200 with lower scores only.
  assert np.all(np.asarray(ours.scores)[m:n] <= scores[-1])


def test_preprocessing_and_provenance_follow_torchvision_metadata():
  conv = vw.from_torchvision("deeplabv3_resnet50", _build(
      "deeplabv3_resnet50").state_dict(), weights="COCO_WITH_VOC_LABELS_V1")
  assert conv.model_kwargs == {"num_classes": 21, "output_stride": 8,
                               "pad_input": False}
  p = conv.preprocessing
  assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225)
  assert p.value_range == (0.0, 1.0) and p.resize_size == 520
  assert p.input_size is None
  prov = conv.provenance
  assert prov.weights == "DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1"
  assert prov.url.endswith("deeplabv3_resnet50_coco-cd0a2569.pth")
  assert len(prov.categories) == 21 and prov.categories[0] == "__background__"
  assert any("aux_classifier" in n for n in prov.notes)
  assert "BSD-3-Clause" in prov.license


def test_mismatched_state_dicts_are_refused():
  state = _build("resnet18").state_dict()
  with pytest.raises(ValueError, match="not converted"):
    vw.from_torchvision("resnet34", state)  # fewer blocks than the model
  with pytest.raises(ValueError, match="no place"):
    vw.from_torchvision("resnet18", {**state, "extra.weight": torch.ones(3)})
  with pytest.raises(ValueError, match="no torchvision converter"):
    vw.from_torchvision("resnet9000", state)


def test_cli_converts_a_local_pth_to_orbax_and_json(tmp_path, capsys):
  module = _build("resnet18")
  # Named as torchvision's IMAGENET1K_V1 file: provenance is matched by name.
  path = tmp_path / "resnet18-f37072fd.pth"
  torch.save(module.state_dict(), path)
  out = tmp_path / "weights" / "resnet18"
  assert cli.main(["fetch", "resnet18", "--from=torchvision",
                   f"--file={path}", f"--out={out}"]) == 0
  assert json.loads(capsys.readouterr().out)["model"] == "resnet18"
  info = json.loads((out / "visionjax_weights.json").read_text())
  assert info["model"] == "resnet18"
  assert info["model_kwargs"] == {"num_classes": 1000}
  assert info["preprocessing"]["input_size"] == [224, 224]
  assert info["preprocessing"]["resize_size"] == 256
  prov = info["provenance"]
  assert prov["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
  assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
  assert prov["library_versions"]["torch"] == torch.__version__

  loaded = vw.load(str(out))
  x = _image((64, 64))
  assert max_rel(jitted(loaded.model())(loaded.variables, x),
                 torch_forward(module, x)) <= RTOL
  # The same weights from an unnamed source: origin unknown, said so.
  conv = vw.from_torchvision("resnet18", module.state_dict())
  assert conv.provenance.weights is None and conv.provenance.url is None
  assert any("unknown" in n for n in conv.provenance.notes)
  assert conv.preprocessing == loaded.preprocessing
