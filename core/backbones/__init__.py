"""Backbones Keras does not ship, built offline: EfficientNet-Lite0 with ImageNet weights read from PyTorch.

``efficientnet_lite0`` takes the same arguments as ``keras.applications.EfficientNetB0``, so a backbone
table can hold it next to the Keras ones. Importing this package does not import TensorFlow.
"""

from core.backbones.lite0 import efficientnet_lite0

__all__ = ["efficientnet_lite0"]
