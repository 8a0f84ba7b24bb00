"""Data augmentation: the notebook's random transformations, built as Keras layers from one config.

``core.config.AugmentConfig`` has an on/off switch and strength sliders per transformation (the rows of
``core.catalog.TRANSFORMS``, each naming its layer function here); ``build_augmenter`` turns it into a
``keras.Sequential`` of preprocessing layers: Keras' own layers where Keras has one, and small registered
layers where it has none (per-channel brightness, down-sample then resize back, noise in pixel units, the
final clip to 0..255).

How to use the augmenter (it always takes *batches* of RGB images, uint8 or float, in 0..255, and
returns float32 in 0..255 — EfficientNet rescales internally, so never divide by 255):

- In a ``tf.data`` training pipeline, on batched training data only, never on the test split::

      augmenter = build_augmenter(cfg)            # one instance per pipeline
      ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=AUTOTUNE)

  ``training=True`` must be explicit: inside a traced function there is no model telling the
  layers which mode they are in. (Keras' image layers default to augmenting when called on their
  own, but ``keras.layers.GaussianNoise`` defaults to doing nothing; our noise layer follows the
  image layers, and ``augment_batch`` passes the flag anyway.)
- As the first layers of a model: ``fit`` augments, ``predict``/``evaluate`` pass images through
  unchanged (cast to float32). Loading such a saved model in a new process needs
  ``register_layers()`` (or ``custom_objects()``) first.

Seeds: every layer gets its own seed derived from ``cfg.seed`` and its row in ``TRANSFORMS``, so a
fresh augmenter with the same seed gives the same previews, and switching one transformation on or
off does not change what the others draw. In a parallel ``tf.data`` map the order in which batches
draw is up to the scheduler, so training runs are not bit-for-bit repeatable.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from core.catalog import DEFAULT_AUGMENT_PRESET, TRANSFORMS
from core.config import AUGMENT_PRESETS, AugmentConfig
from core.errors import ConfigError, ImageUnreadable
from core.heavy_work import bounded

MAX_PREVIEWS = 64


def rotation_layer(cfg: AugmentConfig, seed: int) -> Any:
    import keras

    return keras.layers.RandomRotation(factor=cfg.rotation, seed=seed, name="augment_rotation")


def translation_layer(cfg: AugmentConfig, seed: int) -> Any:
    import keras

    return keras.layers.RandomTranslation(
        height_factor=cfg.translation_height, width_factor=cfg.translation_width, seed=seed, name="augment_translation"
    )


def zoom_layer(cfg: AugmentConfig, seed: int) -> Any:
    import keras

    # A negative height factor zooms in: Keras samples a centred window of (1 - zoom)..1 of each side
    # and resizes it back, which is the notebook's "random crop, then resize to the original size".
    return keras.layers.RandomZoom(height_factor=(-cfg.zoom, 0.0), seed=seed, name="augment_zoom")


def flip_layer(cfg: AugmentConfig, seed: int) -> Any:
    return custom_objects()["GatherRandomFlip"](mode=cfg.flip_mode, seed=seed, name="augment_flip")


def contrast_layer(cfg: AugmentConfig, seed: int) -> Any:
    import keras

    # Keras documents factor=c as a contrast factor drawn from [1 - c, 1 + c], but in Keras 3 a single
    # number is clamped to [0, c] (contrast only ever goes up); the pair (c, c) gives the documented range.
    return keras.layers.RandomContrast(
        factor=(cfg.contrast, cfg.contrast), value_range=(0, 255), seed=seed, name="augment_contrast"
    )


def channel_shift_layer(cfg: AugmentConfig, seed: int) -> Any:
    return custom_objects()["RandomChannelShift"](cfg.channel_shift, seed=seed, name="augment_channel_shift")


def downsample_layer(cfg: AugmentConfig, seed: int) -> Any:
    return custom_objects()["RandomDownsample"](cfg.downsample_factor, seed=seed, name="augment_downsample")


def noise_layer(cfg: AugmentConfig, seed: int) -> Any:
    return custom_objects()["PixelGaussianNoise"](cfg.noise_std, seed=seed, name="augment_noise")


def _layer_seed(seed: int, index: int) -> int:
    """A separate seed per table row, so two layers never draw the same random numbers."""
    return (seed + 1_000_003 * index) % (2**31 - 1)


def build_augmenter(cfg: AugmentConfig, *, name: str = "augmentation") -> Any:
    """A fresh ``keras.Sequential`` for batches of images (N, H, W, 3) in 0..255 -> float32 in 0..255.

    Build one per use (a pipeline, a model, a preview): the layers keep random state.
    """
    import keras

    layers = [
        row.layer_function()(cfg, _layer_seed(cfg.seed, index))
        for index, row in enumerate(TRANSFORMS)
        if row.is_active(cfg)
    ]
    clip = custom_objects()["ClipPixels"](name="augment_clip")
    return keras.Sequential([keras.Input(shape=(None, None, 3), name="images"), *layers, clip], name=name)


def augment_batch(augmenter: Any, images: Any) -> Any:
    """Augment one batch as in training (``training=True``): the call the tf.data map must make."""
    return augmenter(images, training=True)


def preview(image: np.ndarray, cfg: AugmentConfig | None = None, n: int = 9) -> list[np.ndarray]:
    """``n`` augmented versions of one uint8 RGB image (H, W, 3), as uint8 arrays of the same shape.

    The same config (seed included) always gives the same pictures.
    """
    cfg = cfg or AUGMENT_PRESETS[DEFAULT_AUGMENT_PRESET]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PREVIEWS:
        raise ConfigError(f"Number of previews must be a whole number between 1 and {MAX_PREVIEWS} (got {n!r}).")
    pixels = _rgb_pixels(image)
    batch = np.repeat(pixels[None], n, axis=0)
    with bounded():  # many sessions of one server may ask at once: they take turns (core.heavy_work)
        return list(_to_uint8(augment_batch(build_augmenter(cfg), batch)))


def preview_each_transform(
    image: np.ndarray, cfg: AugmentConfig | None = None, candidates: int = 4
) -> list[tuple[str, np.ndarray]]:
    """Each enabled transformation applied alone: ``[(name, uint8 image), ...]`` in pipeline order.

    Of ``candidates`` random draws the one that changes the picture most is shown, so that a flip
    (which happens only half of the time) never shows an unchanged picture.
    """
    cfg = cfg or AUGMENT_PRESETS[DEFAULT_AUGMENT_PRESET]
    pixels = _rgb_pixels(image)
    batch = np.repeat(pixels[None], candidates, axis=0)
    shown = []
    for row in cfg.active_transforms:
        with bounded():  # one transformation at a time, so a queued preview waits one transformation at most
            versions = _to_uint8(augment_batch(build_augmenter(cfg.only(row.switch)), batch))
        change = np.abs(versions.astype(np.int16) - pixels.astype(np.int16)).mean(axis=(1, 2, 3))
        shown.append((row.name, versions[int(np.argmax(change))]))
    return shown


def _rgb_pixels(image: np.ndarray) -> np.ndarray:
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4) or min(pixels.shape[:2]) < 2:
        raise ImageUnreadable(f"The preview needs a picture as a height x width x 3 array (got shape {pixels.shape}).")
    if pixels.dtype != np.uint8:
        raise ImageUnreadable(
            f"The preview needs 8-bit pixels (uint8, 0..255), got {pixels.dtype}; convert the picture first."
        )
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[..., :3]


def _to_uint8(images: Any) -> np.ndarray:
    return np.clip(np.rint(np.asarray(images)), 0, 255).astype(np.uint8)


def register_layers() -> None:
    """Make Transfer Lab's layers known to Keras, so saved models that contain them load."""
    custom_objects()


@functools.cache
def custom_objects() -> dict[str, type]:
    """Transfer Lab's own augmentation layers by class name (for ``keras.models.load_model``).

    Defined here, on first use, so that importing this module does not import TensorFlow.
    """
    import keras
    import tensorflow as tf

    register = keras.saving.register_keras_serializable(package="TransferLab")

    class _RandomLayer(keras.layers.Layer):
        """Augments when ``training`` is true or unset, like Keras' image preprocessing layers."""

        def __init__(self, strength: float, seed: int | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.strength = float(strength)
            self.seed = seed
            self.generator = keras.random.SeedGenerator(seed)

        def call(self, images: Any, training: bool = True) -> Any:
            images = tf.cast(images, self.compute_dtype)
            return self.augment(images) if training else images

        def augment(self, images: Any) -> Any:
            raise NotImplementedError

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "strength": self.strength, "seed": self.seed}

    @register
    class RandomChannelShift(_RandomLayer):
        """Adds its own random offset in [-strength, strength] to each colour channel of each image.

        Keras' RandomBrightness moves all three channels together; this moves each histogram separately.
        """

        def augment(self, images: Any) -> Any:
            shape = tf.shape(images)
            shifts = keras.random.uniform(
                tf.stack([shape[0], 1, 1, shape[3]]),
                -self.strength,
                self.strength,
                dtype=self.compute_dtype,
                seed=self.generator,
            )
            return tf.clip_by_value(images + shifts, 0.0, 255.0)

    @tf.function(reduce_retracing=True)
    def shrink_and_restore(images: Any, factors: Any) -> Any:
        """Per image: area-average down to size / factor, bilinear back up (a graph, also when eager)."""
        size = tf.shape(images)[1:3]

        def one(args: Any) -> Any:
            image, factor = args
            small = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) / factor), tf.int32), 1)
            return tf.image.resize(tf.image.resize(image, small, method="area"), size, method="bilinear")

        return tf.map_fn(one, (images, factors), fn_output_signature=tf.TensorSpec((None, None, None), tf.float32))

    @register
    class RandomDownsample(_RandomLayer):
        """Shrinks each image by a random factor in [1, strength] (area averaging), then resizes it back.

        Keras has no such layer; each image gets its own factor, hence one resize pair per image.
        """

        def __init__(self, strength: float, seed: int | None = None, **kwargs: Any) -> None:
            super().__init__(strength, seed, **kwargs)
            self.supports_jit = False

        def augment(self, images: Any) -> Any:
            factors = keras.random.uniform(
                tf.shape(images)[:1], 1.0, self.strength, dtype="float32", seed=self.generator
            )
            restored = shrink_and_restore(tf.cast(images, tf.float32), factors)
            return tf.cast(tf.ensure_shape(restored, images.shape), self.compute_dtype)

    @register
    class GatherRandomFlip(keras.layers.RandomFlip):
        """``keras.layers.RandomFlip`` (same draws, same modes) with an exact, faster flip.

        Keras picks between flipped and unflipped images with a broadcast ``where``, the slowest step of
        the notebook's pipeline on CPU (about 4x slower than this gather of reversed pixel rows/columns).
        """

        def _flip_inputs(self, inputs: Any, transformation: Any) -> Any:
            if transformation is None:
                return inputs
            unbatched = len(inputs.shape) == 3
            images = inputs[None] if unbatched else inputs
            flips = tf.reshape(transformation["flips"], [-1, 1])
            for mode, axis in (("horizontal", 2), ("vertical", 1)):
                if mode in self.mode:
                    length = tf.shape(images)[axis]
                    forward = tf.range(length)[None, :]
                    order = tf.where(flips, tf.reverse(forward, [1]), forward)
                    images = tf.gather(images, order, axis=axis, batch_dims=1)
            return images[0] if unbatched else images

    @register
    class PixelGaussianNoise(_RandomLayer):
        """Adds Gaussian noise with standard deviation ``strength`` in pixel values (0..255 scale).

        ``keras.layers.GaussianNoise`` allows a std of at most 1 and adds nothing unless told
        ``training=True``; this one matches the image layers.
        """

        def augment(self, images: Any) -> Any:
            noise = keras.random.normal(
                tf.shape(images), stddev=self.strength, dtype=self.compute_dtype, seed=self.generator
            )
            return tf.clip_by_value(images + noise, 0.0, 255.0)

    @register
    class ClipPixels(keras.layers.Layer):
        """Casts to float and clips to 0..255: the augmenter's last layer, in training and inference."""

        def call(self, images: Any) -> Any:
            return tf.clip_by_value(tf.cast(images, self.compute_dtype), 0.0, 255.0)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

    layers = (GatherRandomFlip, RandomChannelShift, RandomDownsample, PixelGaussianNoise, ClipPixels)
    return {cls.__name__: cls for cls in layers}
