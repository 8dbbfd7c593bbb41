"""Parameter counts pinned against published numbers.

Counted from `jax.eval_shape(model.init, ...)` (no allocation, no compile),
over the 'params' collection only: BatchNorm running statistics are buffers
in PyTorch and do not count, as in the published numbers.

Sources:
  torchvision  https://pytorch.org/vision/stable/models.html (each model's
               "num_params" in its weights table).
  seed         the project seed's CIFAR-10 CNN (Keras summary: 122,570).
  d2l          Dive into Deep Learning §7.6, LeNet with full C3 and a dense
               output: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.
  kuangliu     github.com/kuangliu/pytorch-cifar ResNet18/ResNet50 with the
               3×3 CIFAR stem: 11,173,962 / 23,520,842 at 10 classes.
"""
import jax
import jax.numpy as jnp
import pytest

import visionjax.models as vm

PUBLISHED = {  # name: (published count, source, create kwargs)
    "small_cnn": (122_570, "seed", {}),
    "lenet5": (61_706, "d2l", {}),
    "alexnet": (61_100_840, "torchvision", {}),
    "vgg11": (132_863_336, "torchvision", {}),
    "vgg11_bn": (132_868_840, "torchvision", {}),
    "vgg13": (133_047_848, "torchvision", {}),
    "vgg13_bn": (133_053_736, "torchvision", {}),
    "vgg16": (138_357_544, "torchvision", {}),
    "vgg16_bn": (138_365_992, "torchvision", {}),
    "vgg19": (143_667_240, "torchvision", {}),
    "vgg19_bn": (143_678_248, "torchvision", {}),
    "resnet18": (11_689_512, "torchvision", {}),
    "resnet34": (21_797_672, "torchvision", {}),
    "resnet50": (25_557_032, "torchvision", {}),
    "resnet101": (44_549_160, "torchvision", {}),
    "resnet152": (60_192_808, "torchvision", {}),
    "resnet18_cifar": (11_173_962, "kuangliu", {}),
    "resnet50_cifar": (23_520_842, "kuangliu", {}),
    "efficientnet_b0": (5_288_548, "torchvision", {}),
    "efficientnet_b1": (7_794_184, "torchvision", {}),
    "efficientnet_b2": (9_109_994, "torchvision", {}),
    "efficientnet_b3": (12_233_232, "torchvision", {}),
    # torchvision's deeplabv3_resnet50/101 (42,004,074 / 60,996,202) include
    # the optional auxiliary FCNHead on layer3, which we do not build:
    # 1024·256·9 (3×3 conv) + 2·256 (BN) + 256·21 + 21 (1×1) = 2,365,205.
    "deeplabv3_resnet50": (42_004_074 - 2_365_205, "torchvision", {}),
    "deeplabv3_resnet101": (60_996_202 - 2_365_205, "torchvision", {}),
}


def _count(name, kwargs, size=None, channels=None):
  spec = vm.spec_of(name)
  model = vm.create(name, **kwargs)
  h, w = size or spec.input_size
  x = jax.ShapeDtypeStruct((1, h, w, channels or spec.in_channels),
                           jnp.float32)
  return vm.count_params(jax.eval_shape(model.init, jax.random.key(0), x))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_equals_published(name):
  published, _source, kwargs = PUBLISHED[name]
  assert _count(name, kwargs) == published


def _conv(k, cin, cout, bias=True):
  return k * k * cin * cout + (cout if bias else 0)


def test_unet_paper_counts_23_conv_layers_by_hand():
  # Ronneberger et al.: 1 input channel, 2 classes, unpadded, no BN.
  enc = [(1, 64), (64, 128), (128, 256), (256, 512), (512, 1024)]
  total = sum(_conv(3, a, b) + _conv(3, b, b) for a, b in enc)
  for c in (512, 256, 128, 64):  # up-conv 2×2, then two 3×3 on the concat.
    total += 4 * 2 * c * c + c + _conv(3, 2 * c, c) + _conv(3, c, c)
  total += _conv(1, 64, 2)
  assert total == 31_030_658
  assert _count("unet_paper", {"num_classes": 2}, (388, 388), 1) == total
  # Bilinear upsampling swaps each 2×2 up-conv for a 1×1 conv.
  bilinear = total - sum(3 * 2 * c * c for c in (512, 256, 128, 64))
  assert _count("unet_bilinear", {"use_batchnorm": False, "num_classes": 2},
                (64, 64), 1) == bilinear


def test_fcn_vgg16_counts_follow_from_vgg16():
  # VGG-16 conv layers = 138,357,544 (torchvision) minus its classifier.
  convs = 138_357_544 - (_conv(1, 25088, 4096) + _conv(1, 4096, 4096)
                         + _conv(1, 4096, 1000))
  fcn32 = convs + _conv(7, 512, 4096) + _conv(1, 4096, 4096) + _conv(
      1, 4096, 21)
  assert _count("fcn32s", {}) == fcn32 == 134_346_581
  assert _count("fcn16s", {}) == fcn32 + _conv(1, 512, 21)
  assert _count("fcn8s", {}) == fcn32 + _conv(1, 512, 21) + _conv(1, 256, 21)


def test_segnet_counts_vgg16_bn_encoder_plus_mirrored_decoder():
  widths, stages = (64, 128, 256, 512, 512), (2, 2, 3, 3, 3)
  enc, dec, cin = 0, 0, 3
  for n, w in zip(stages, widths):
    for _ in range(n):
      enc += _conv(3, cin, w, bias=False) + 2 * w
      cin = w
  # The encoder's conv weights are VGG-16's 13 convs (14,714,688 with bias).
  assert enc - 2 * sum(n * w for n, w in zip(stages, widths)) + sum(
      n * w for n, w in zip(stages, widths)) == 14_714_688
  for i in reversed(range(5)):
    w = widths[i]
    for j in reversed(range(stages[i])):
      out = w if j else (widths[i - 1] if i else None)
      dec += (_conv(3, w, out, bias=False) + 2 * out) if out else _conv(
          3, w, 21)
  assert _count("segnet", {}) == enc + dec
