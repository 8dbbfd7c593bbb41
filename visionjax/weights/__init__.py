"""visionjax.weights: pretrained weights from torchvision and Keras.

    from visionjax import weights
    conv = weights.from_torchvision("resnet50", "resnet50-11ad3fa6.pth")
    conv = weights.from_keras("resnet50", keras_model_or_h5_file)
    weights.save(conv, "weights/resnet50")       # Orbax + JSON
    conv = weights.load("weights/resnet50")
    logits = conv.model().apply(conv.variables,
                                conv.preprocessing.normalize(images))

Command line (downloads where there is internet, or converts a local file):

    python -m visionjax.weights fetch resnet50 --from=torchvision \\
        --out=weights/resnet50 [--file=resnet50-0676ba61.pth]

torch/torchvision come with the optional extra `pip install visionjax[convert]`;
Keras ships with TensorFlow. Each converter imports its library only when
called, so `import visionjax.weights` needs neither.
"""
from visionjax.weights.core import Converted, Preprocessing, Provenance, load, save


def from_torchvision(name, source, **kwargs):
  """See `visionjax.weights.torchvision.from_torchvision`."""
  from visionjax.weights import torchvision as _tv  # pylint: disable=import-outside-toplevel
  return _tv.from_torchvision(name, source, **kwargs)


def from_keras(name, source, **kwargs):
  """See `visionjax.weights.keras.from_keras`."""
  from visionjax.weights import keras as _keras  # pylint: disable=import-outside-toplevel
  return _keras.from_keras(name, source, **kwargs)


__all__ = ["Converted", "Preprocessing", "Provenance", "from_keras",
           "from_torchvision", "load", "save"]
