"""Grad-CAM: which part of a photo drove a class score.

The last convolutional feature map, each channel weighted by the mean gradient of the class score, is
mapped back onto the part of the photo the model saw. The gradient function is built and traced once per
classifier (on first use, kept while the classifier lives); models that nest their backbone in a
sub-model are replayed layer by layer, and checked to compute what the model computes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from core.errors import ConfigError
from core.heavy_work import bounded
from core.serving.classifiers import Classifier
from core.serving.inputs import as_rgb
from core.serving.preprocessing import Box

_explanation_functions: weakref.WeakKeyDictionary[Classifier, Any] = weakref.WeakKeyDictionary()
_explanation_lock = threading.Lock()


def grad_cam(classifier: Classifier, image: Image.Image, class_index: int | None = None) -> np.ndarray:
    """Where the model looked for a class: float32 (height, width) in 0..1, the photo's own size.

    Grad-CAM: the last convolutional feature map, each channel weighted by the mean gradient of the class
    score (before the softmax, where the model's head allows) and kept where positive. Parts of the photo the
    model does not see (outside ImageNet's centre crop) are 0. ``class_index`` defaults to the most probable
    class. All zeros when nothing in the photo speaks for that class.
    """
    if class_index is not None and not (
        isinstance(class_index, (int, np.integer)) and 0 <= class_index < classifier.num_classes
    ):
        raise ConfigError(f"Class index must be between 0 and {classifier.num_classes - 1} (got {class_index!r}).")
    image = as_rgb(image, "This picture")
    batch = classifier.prepare(image)[None].astype(np.float32)
    with bounded():  # many sessions of one server may ask at once: they take turns (core.heavy_work)
        cam = np.asarray(_explanation_function(classifier)(batch, np.int32(-1 if class_index is None else class_index)))
    cam = np.maximum(np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0), 0.0).astype(np.float32)
    heatmap = _onto_photo(cam, image.size, classifier.preprocessing.view_box(*image.size))
    peak = float(heatmap.max(initial=0.0))
    return heatmap / np.float32(peak) if peak > 0 else heatmap


def _onto_photo(cam: np.ndarray, photo_size: tuple[int, int], box: Box) -> np.ndarray:
    """Upsample the feature-map CAM (bilinear) over the part of the photo the model saw."""
    width, height = photo_size
    left, top, right, bottom = (int(round(v)) for v in box)
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(max(right, left + 1), width), min(max(bottom, top + 1), height)
    inside = Image.fromarray(cam, mode="F").resize((right - left, bottom - top), Image.Resampling.BILINEAR)
    heatmap = np.zeros((height, width), np.float32)
    heatmap[top:bottom, left:right] = np.maximum(np.asarray(inside, dtype=np.float32), 0.0)
    return heatmap


def last_feature_map_layer(model: Any) -> Any:
    """The last layer with a 4-D output (a convolutional feature map), looking inside nested models."""
    found = _feature_map_path(model)
    if found is None:
        raise ConfigError(
            f"{model.name} has no convolutional feature map (no layer with a 4-D output), so "
            "Grad-CAM cannot show where it looks."
        )
    return found[-1]


def _feature_map_path(model: Any) -> list[Any] | None:
    """Layers from ``model`` down to its last 4-D output: [layer] or [nested model, ..., layer]."""
    for layer in reversed(model.layers):
        if hasattr(layer, "layers") and layer.layers:
            inner = _feature_map_path(layer)
            if inner is not None:
                return [layer, *inner]
            continue
        try:
            rank = len(layer.output.shape)
        except (AttributeError, ValueError):
            continue
        if rank == 4 and type(layer).__name__ != "InputLayer":
            return [layer]
    return None


def _score_head(final: Any) -> Callable[[Any], Any] | None:
    """For a final layer that applies a softmax, a function from its input to the scores before the softmax."""
    import keras

    activation = getattr(final, "activation", None)
    is_softmax = getattr(activation, "__name__", "") == "softmax"
    if not is_softmax:
        return None
    if isinstance(final, keras.layers.Dense):

        def logits(features: Any) -> Any:
            return keras.ops.matmul(keras.ops.cast(features, final.kernel.dtype), final.kernel) + final.bias

        return logits
    if isinstance(final, keras.layers.Activation):
        return lambda scores: scores
    return None


def _feature_forward(model: Any) -> Callable[[Any], tuple[Any, Any, Any]]:
    """A function images -> (feature map, class scores, outputs) computing ``model``'s outputs."""
    import keras

    path = _feature_map_path(model)
    if path is None:
        last_feature_map_layer(model)  # raises the explanation
    final = model.layers[-1]
    head = _score_head(final)
    if len(path) == 1:
        try:
            pre_final = final.input if head is not None else model.outputs[0]
        except (AttributeError, ValueError):  # a layer shared with another model: use the probabilities
            head, pre_final = None, model.outputs[0]
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        graph = keras.Model(inputs, [path[0].output, pre_final, model.outputs[0]])

        def flat(images: Any) -> tuple[Any, Any, Any]:
            features, pre, outputs = graph(images, training=False)
            return features, head(pre) if head is not None else outputs, outputs

        return flat
    nested = path[0]
    inner = _feature_forward(nested)
    chain = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]

    def chained(images: Any) -> tuple[Any, Any, Any]:
        x, features, scores, before_final = images, None, None, images
        for layer in chain:
            before_final = x
            if layer is nested:
                features, scores, x = inner(x)
            else:
                x = layer(x, training=False)
        if final is not nested:
            scores = head(before_final) if head is not None else x
        return features, scores, x

    return chained


def _build_grad_cam_function(model: Any, image_size: int) -> Any:
    import tensorflow as tf

    forward = _feature_forward(model)
    _check_forward(model, forward, image_size)

    @tf.function(
        input_signature=[tf.TensorSpec([1, image_size, image_size, 3], tf.float32), tf.TensorSpec([], tf.int32)]
    )
    def explain(images: Any, class_index: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(images)  # frozen layers' weights are not watched; the input makes the tape record all
            features, scores, _ = forward(images)
            chosen = tf.where(class_index < 0, tf.cast(tf.argmax(scores[0]), tf.int32), class_index)
            score = scores[0, chosen]
        gradients = tape.gradient(score, features)
        weights = tf.reduce_mean(tf.cast(gradients, tf.float32), axis=(1, 2))
        cam = tf.einsum("bhwc,bc->bhw", tf.cast(features, tf.float32), weights)
        return tf.nn.relu(cam[0])

    return explain


def _check_forward(model: Any, forward: Callable[[Any], tuple[Any, Any, Any]], image_size: int) -> None:
    """A model with nested sub-models is replayed layer by layer: make sure that computes the same thing."""
    if len(_feature_map_path(model) or ()) < 2:
        return
    probe = np.random.default_rng(0).uniform(0, 255, (1, image_size, image_size, 3)).astype(np.float32)
    replayed = np.asarray(forward(probe)[2])
    if not np.allclose(replayed, np.asarray(model(probe, training=False)), atol=1e-4):
        raise ConfigError(
            f"{model.name} nests its convolutional layers in a sub-model inside a graph with "
            "branches; Grad-CAM supports flat models and chains of layers."
        )


def _explanation_function(classifier: Classifier) -> Any:
    """The classifier's traced Grad-CAM function, built on first use."""
    with _explanation_lock:
        function = _explanation_functions.get(classifier)
        if function is None:
            function = _build_grad_cam_function(classifier.model, classifier.image_size)
            _explanation_functions[classifier] = function
        return function
