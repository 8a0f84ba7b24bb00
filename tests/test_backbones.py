"""EfficientNet-Lite0: the safe PyTorch reader, the weight mapping, the Keras builder and its weights cache."""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from core.backbones import lite0
from core.backbones.torch_pickle import UnsafeCheckpoint, read_state_dict
from core.errors import ConfigError, WeightsUnavailable

SOURCE = lite0.imagenet_source_file()
BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
CAT_CLASSES = {"tiger cat", "tabby", "Egyptian cat", "Persian cat", "Siamese cat"}


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def state_dict() -> collections.OrderedDict[str, np.ndarray]:
    return read_state_dict(SOURCE)


@pytest.fixture(scope="session")
def lite0_home(tmp_path_factory) -> Path:
    """A data directory where the ImageNet weights are converted once for the whole session."""
    home = tmp_path_factory.mktemp("lite0-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(home))
        lite0.converted_weights(SOURCE)
    return home


@pytest.fixture
def converted_home(lite0_home, monkeypatch) -> Path:
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(lite0_home))
    return lite0_home


@pytest.fixture(scope="session")
def imagenet_model(lite0_home):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(lite0_home))
        return lite0.efficientnet_lite0()


def _photo(array: np.ndarray) -> np.ndarray:
    from PIL import Image

    from core.imagenet import imagenet_eval_array

    return imagenet_eval_array(Image.fromarray(array))


def _top5(model, photo: np.ndarray) -> list[str]:
    from core.imagenet import imagenet_class_names, top_predictions

    probabilities = model.predict(photo[None], verbose=0)[0]
    return [name for name, _ in top_predictions(probabilities, imagenet_class_names(), k=5)]


# ------------------------------------------------------------------------------------------- a tiny legacy writer


class _Global:
    """Pickles as ``GLOBAL module name`` whatever it is, as torch.save writes its rebuild functions."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args):
        raise AssertionError("never called when writing")


class _Storage:
    def __init__(self, key: str, numel: int, storage: str = "FloatStorage") -> None:
        self.pid = ("storage", _Global("torch", storage), key, "cpu", numel, None)


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple, hooks=None) -> None:
        self.args = (storage, offset, shape, stride, False, collections.OrderedDict() if hooks is None else hooks)

    def __reduce__(self):
        return (_Global("torch._utils", "_rebuild_tensor_v2"), self.args)


class _LegacyPickler(pickle._Pickler):
    """Writes the state-dict pickle as torch.save does: rebuild functions by name, storages by persistent id."""

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Storage) else None


def _legacy_file(path: Path, state, storages: dict[str, np.ndarray], header_pickle: bytes | None = None) -> Path:
    """A legacy .pth: magic, protocol, sys info, the state pickle, storage keys, then raw storages."""
    import io

    buffer = io.BytesIO()
    _LegacyPickler(buffer, protocol=2).dump(state)
    parts = [
        header_pickle if header_pickle is not None else pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
        pickle.dumps(1001, protocol=2),
        pickle.dumps(
            {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
            protocol=2,
        ),
        buffer.getvalue(),
        pickle.dumps(list(storages), protocol=2),
    ]
    for data in storages.values():
        parts += [struct.pack("<q", data.size), data.astype(data.dtype.newbyteorder("<")).tobytes()]
    path.write_bytes(b"".join(parts))
    return path


class _RunsCommand:
    """Unpickles into os.system(...): the classic malicious pickle."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _CallsEval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


# ------------------------------------------------------------------------------------------- reader


def test_reader_returns_every_tensor_of_the_lite0_file(state_dict):
    assert len(state_dict) == 296
    trainable = sum(a.size for k, a in state_dict.items() if not k.endswith(BN_STATISTICS))
    assert trainable == 4_652_008
    assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state_dict["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state_dict["_blocks.1._expand_conv.weight"].shape == (96, 16, 1, 1)
    assert state_dict["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state_dict["_fc.weight"].shape == (1000, 1280)
    assert state_dict["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(a.dtype == np.float32 for k, a in state_dict.items() if not k.endswith("num_batches_tracked"))
    assert all(np.isfinite(a).all() for a in state_dict.values())
    assert np.all(state_dict["_bn1.running_var"] > 0)


def test_reader_honours_offsets_strides_and_dtypes(tmp_path):
    floats = np.arange(24, dtype=np.float32)
    longs = np.array([7, -3, 2**40], dtype=np.int64)
    s0, s1 = _Storage("s0", 24), _Storage("s1", 3, storage="LongStorage")
    state = collections.OrderedDict(
        [
            ("plain", _Tensor(s0, 0, (2, 3), (3, 1))),
            ("transposed", _Tensor(s0, 0, (3, 2), (1, 3))),
            ("offset", _Tensor(s0, 6, (2, 2, 2), (8, 1, 4))),
            ("scalar", _Tensor(s1, 2, (), ())),
        ]
    )
    path = _legacy_file(tmp_path / "tiny.pth", state, {"s0": floats, "s1": longs})
    result = read_state_dict(path)
    assert list(result) == ["plain", "transposed", "offset", "scalar"]
    np.testing.assert_array_equal(result["plain"], floats[:6].reshape(2, 3))
    np.testing.assert_array_equal(result["transposed"], floats[:6].reshape(2, 3).T)
    expected = np.lib.stride_tricks.as_strided(floats[6:], shape=(2, 2, 2), strides=(32, 4, 16))
    np.testing.assert_array_equal(result["offset"], expected)
    assert result["scalar"] == 2**40 and result["scalar"].dtype == np.int64


@pytest.mark.parametrize("where", ["state", "header", "hooks"])
@pytest.mark.parametrize("payload", ["os.system", "builtins.eval"])
def test_reader_refuses_any_other_global_and_runs_nothing(tmp_path, where, payload):
    marker = tmp_path / "pwned"
    evil = _RunsCommand(f"touch {marker}") if payload == "os.system" else _CallsEval(marker)
    evil_bytes = pickle.dumps(evil, protocol=2)
    tensor = _Tensor(_Storage("s0", 2), 0, (2,), (1,), hooks=evil if where == "hooks" else None)
    state = evil if where == "state" else collections.OrderedDict(weight=tensor)
    path = _legacy_file(
        tmp_path / "evil.pth",
        state,
        {"s0": np.zeros(2, np.float32)},
        header_pickle=evil_bytes if where == "header" else None,
    )
    with pytest.raises(UnsafeCheckpoint, match="refused") as refused:
        read_state_dict(path)
    assert payload.split(".")[1] in str(refused.value)
    assert isinstance(refused.value, WeightsUnavailable)
    assert not marker.exists()


def test_reader_rejects_damaged_and_missing_files(tmp_path):
    with pytest.raises(WeightsUnavailable, match="not found"):
        read_state_dict(tmp_path / "absent.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(SOURCE.read_bytes()[:100_000])
    with pytest.raises(WeightsUnavailable, match="truncated"):
        read_state_dict(truncated)
    not_torch = tmp_path / "not_torch.pth"
    not_torch.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(WeightsUnavailable, match="magic"):
        read_state_dict(not_torch)
    out_of_bounds = _legacy_file(
        tmp_path / "oob.pth",
        collections.OrderedDict(w=_Tensor(_Storage("s0", 4), 1, (4,), (1,))),
        {"s0": np.zeros(4, np.float32)},
    )
    with pytest.raises(WeightsUnavailable, match="past its data"):
        read_state_dict(out_of_bounds)


def _raw_legacy_file(path: Path, state_pickle: bytes, storages: dict[str, np.ndarray]) -> Path:
    """A legacy .pth around a state pickle written by hand (for shapes ``pickle`` itself cannot write)."""
    header = [
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
        pickle.dumps(1001, protocol=2),
        pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
    ]
    tail = [pickle.dumps(list(storages), protocol=2)]
    for data in storages.values():
        tail += [struct.pack("<q", data.size), data.astype(data.dtype.newbyteorder("<")).tobytes()]
    path.write_bytes(b"".join([*header, state_pickle, *tail]))
    return path


def _nested_lists(depth: int) -> bytes:
    """A pickle of ``[[[...]]]`` nested ``depth`` deep: EMPTY_LIST pushed ``depth`` times, then APPEND each into
    the one below (the C unpickler builds it without recursion; walking it recursively overflows)."""
    return b"\x80\x02" + pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1) + pickle.STOP


# Hostile tensors: each expands a few stored values into far more elements than the file holds.
EXPANDING = {
    # 336 bytes on disk, 2**40 float32 (4 TiB) once expanded: one stored value repeated by stride 0.
    "stride 0": (_Tensor(_Storage("s0", 1), 0, (2**20, 2**20), (0, 0)), np.zeros(1, np.float32)),
    # Overlapping rows: 33 x 32 elements read out of a 64-element storage.
    "overlapping strides": (_Tensor(_Storage("s0", 64), 0, (33, 32), (1, 1)), np.zeros(64, np.float32)),
}


@pytest.mark.parametrize("name", list(EXPANDING))
def test_reader_refuses_tensors_with_more_elements_than_their_storage(tmp_path, name):
    tensor, storage = EXPANDING[name]
    path = _legacy_file(tmp_path / "expands.pth", collections.OrderedDict(w=tensor), {"s0": storage})
    assert path.stat().st_size < 1000
    with pytest.raises(WeightsUnavailable, match="more values than the file stores"):
        read_state_dict(path)


def test_reader_refuses_one_storage_repeated_under_thousands_of_names(tmp_path):
    shared = _Tensor(_Storage("s0", 1024), 0, (1024,), (1,))  # pickled once, then referenced from the memo
    state = collections.OrderedDict((f"w{i}", shared) for i in range(4096))  # 16 MiB out of a ~40 KiB file
    path = _legacy_file(tmp_path / "repeats.pth", state, {"s0": np.zeros(1024, np.float32)})
    with pytest.raises(WeightsUnavailable, match="more values than the file stores"):
        read_state_dict(path)


def test_reader_keeps_a_tensor_shared_by_two_names(tmp_path):
    """Tied weights (one tensor under two names) are legitimate and stay readable."""
    tied = _Tensor(_Storage("s0", 6), 0, (2, 3), (3, 1))
    path = _legacy_file(
        tmp_path / "tied.pth", collections.OrderedDict(embed=tied, head=tied), {"s0": np.arange(6, dtype=np.float32)}
    )
    result = read_state_dict(path)
    np.testing.assert_array_equal(result["embed"], result["head"])


def test_reader_refuses_deeply_nested_state_with_its_own_error(tmp_path):
    path = _raw_legacy_file(tmp_path / "deep.pth", _nested_lists(200_000), {})
    with pytest.raises(WeightsUnavailable, match="levels deep"):
        read_state_dict(path)


def test_reader_refuses_absurd_dimension_counts(tmp_path):
    tensor = _Tensor(_Storage("s0", 1), 0, (1,) * 100, (1,) * 100)
    path = _legacy_file(tmp_path / "dims.pth", collections.OrderedDict(w=tensor), {"s0": np.zeros(1, np.float32)})
    with pytest.raises(WeightsUnavailable, match="100 dimensions"):
        read_state_dict(path)


# ------------------------------------------------------------------------------------------- mapping


def test_weight_plan_uses_every_tensor_of_the_file_exactly_once(state_dict):
    used = collections.Counter(key for row in lite0.weight_plan() for key in row.torch_keys())
    assert set(used) == set(state_dict)
    assert set(used.values()) == {1}


def test_conversion_fills_every_weight_of_the_keras_model_with_the_right_shape(state_dict, imagenet_model):
    converted = lite0.convert_state_dict(state_dict)
    bearing = [layer for layer in imagenet_model.layers if layer.weights]
    assert {layer.name for layer in bearing} == set(converted)
    for layer in bearing:
        assert [tuple(w.shape) for w in layer.weights] == [w.shape for w in converted[layer.name]], layer.name
        for variable, array in zip(layer.weights, converted[layer.name]):
            np.testing.assert_array_equal(variable.numpy(), array)
    assert sum(int(np.prod(w.shape)) for w in imagenet_model.trainable_weights) == 4_652_008
    np.testing.assert_array_equal(
        imagenet_model.get_layer("top_bn").moving_variance.numpy(), state_dict["_bn1.running_var"]
    )


def test_conversion_refuses_a_file_that_is_not_lite0(state_dict):
    extra = collections.OrderedDict(state_dict, **{"_extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(WeightsUnavailable, match="does not use"):
        lite0.convert_state_dict(extra)
    missing = collections.OrderedDict(state_dict)
    del missing["_blocks.7._bn1.running_var"]
    with pytest.raises(WeightsUnavailable, match="_blocks.7._bn1.running_var"):
        lite0.convert_state_dict(missing)


def test_converted_layers_compute_what_the_pytorch_layers_compute(imagenet_model, state_dict):
    """Stem conv, a depthwise conv and the classifier by hand from the PyTorch tensors, at chosen pixels."""
    import keras

    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(1, 224, 224, 3)).astype(np.float32)
    names = ["rescaling", "stem_conv", "stem_activation", "block1a_dwconv", "avg_pool", "predictions"]
    probe = keras.Model(imagenet_model.input, [imagenet_model.get_layer(n).output for n in names])
    scaled, stem, stem_act, dwconv, pooled, probabilities = probe.predict(image, verbose=0)
    np.testing.assert_allclose(scaled, (image - 127) / 128, atol=1e-6)

    w = state_dict["_conv_stem.weight"]  # (out, in, kh, kw); 'same' with stride 2 at 224 pads bottom/right only
    i, j = 5, 7
    patch = scaled[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :]
    np.testing.assert_allclose(stem[0, i, j], np.einsum("oikl,kli->o", w, patch), rtol=1e-4, atol=1e-4)

    d = state_dict["_blocks.0._depthwise_conv.weight"][:, 0]  # (channels, kh, kw)
    window = stem_act[0, i - 1 : i + 2, j - 1 : j + 2, :]
    np.testing.assert_allclose(dwconv[0, i, j], np.einsum("ckl,klc->c", d, window), rtol=1e-4, atol=1e-4)

    logits = state_dict["_fc.weight"] @ pooled[0] + state_dict["_fc.bias"]
    expected = np.exp(logits - logits.max())
    np.testing.assert_allclose(probabilities[0], expected / expected.sum(), atol=1e-6)


# ------------------------------------------------------------------------------------------- builder


def test_builder_has_keras_efficientnet_layer_names_and_shapes(imagenet_model):
    assert imagenet_model.input.shape == (None, 224, 224, 3)
    assert imagenet_model.get_layer("top_activation").output.shape == (None, 7, 7, 1280)
    model = lite0.efficientnet_lite0(include_top=False, weights=None)
    assert model.output.shape == (None, None, None, 1280)
    assert [layer.name for layer in model.layers[-3:]] == ["top_conv", "top_bn", "top_activation"]
    prefixes = {layer.name.split("_")[0] for layer in model.layers if layer.name.startswith("block")}
    assert prefixes == {
        "block1a",
        "block2a",
        "block2b",
        "block3a",
        "block3b",
        "block4a",
        "block4b",
        "block4c",
        "block5a",
        "block5b",
        "block5c",
        "block6a",
        "block6b",
        "block6c",
        "block6d",
        "block7a",
    }
    assert model.get_layer("block6a_dwconv").kernel_size == (5, 5)
    assert model.get_layer("block7a_project_conv").filters == 320
    assert not any("se_" in layer.name for layer in model.layers)

    top = lite0.efficientnet_lite0(weights=None, classes=10, classifier_activation=None)
    assert top.input.shape == (None, 224, 224, 3) and top.output.shape == (None, 10)
    assert top.layers[-1].name == "predictions"


def test_drop_connect_rates_grow_with_depth_on_residual_blocks_only():
    import keras

    model = lite0.efficientnet_lite0(include_top=False, weights=None, input_shape=(32, 32, 3), drop_connect_rate=0.2)
    drops = {layer.name: layer.rate for layer in model.layers if layer.name.endswith("_drop")}
    assert set(drops) == {
        "block2b_drop",
        "block3b_drop",
        "block4b_drop",
        "block4c_drop",
        "block5b_drop",
        "block5c_drop",
        "block6b_drop",
        "block6c_drop",
        "block6d_drop",
    }
    assert drops["block2b_drop"] == pytest.approx(0.2 * 2 / 16)
    assert drops["block6d_drop"] == pytest.approx(0.2 * 14 / 16)
    # 16 images x 9 drop layers: two training passes dropping exactly the same blocks is all but impossible.
    x = np.random.default_rng(1).uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
    keras.utils.set_random_seed(0)
    first, second = model(x, training=True), model(x, training=True)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))
    none = lite0.efficientnet_lite0(include_top=False, weights=None, input_shape=(32, 32, 3), drop_connect_rate=0.0)
    assert not [layer for layer in none.layers if layer.name.endswith("_drop")]


def test_builder_accepts_an_input_tensor_like_keras_applications():
    import keras

    inputs = keras.Input((48, 48, 3))
    flipped = keras.layers.RandomFlip("horizontal")(inputs)
    model = lite0.efficientnet_lite0(include_top=False, weights=None, input_tensor=flipped, pooling="max")
    assert model.inputs[0] is inputs and model.output.shape == (None, 1280)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(weights="imagenet", classes=10), "1000 classes"),
        (dict(weights=None, pooling="mean"), "pooling"),
        (dict(weights="no/such/file.weights.h5"), "no such file"),
        (dict(weights=None, input_shape=(224, 224, 1)), "RGB"),
        (dict(weights=None, input_shape=(16, 16, 3)), "at least 32"),
        (dict(weights=None, drop_connect_rate=1.5), "drop_connect_rate"),
    ],
)
def test_builder_explains_impossible_arguments(arguments, message):
    with pytest.raises(ConfigError, match=message):
        lite0.efficientnet_lite0(**arguments)


def test_tiny_model_round_trips_through_a_keras_file(tmp_path):
    import keras

    model = lite0.efficientnet_lite0(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    model.save(tmp_path / "lite0.keras")
    restored = keras.models.load_model(tmp_path / "lite0.keras")
    assert [layer.name for layer in restored.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(restored(x, training=False), model(x, training=False), atol=1e-5)


# ------------------------------------------------------------------------------------------- weights and cache


def test_imagenet_weights_are_converted_once_into_the_cache(transfer_lab_home, state_dict):
    steps: list[tuple[int, int, str]] = []
    model = lite0.efficientnet_lite0(
        include_top=False, input_shape=(64, 64, 3), progress=lambda *step: steps.append(step)
    )
    cache_dir = transfer_lab_home / "cache" / "weights"
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    assert [p.name for p in cache_dir.iterdir()] == [f"lite0-{digest}.weights.h5"]
    assert steps and steps[-1][0] == steps[-1][1]
    np.testing.assert_array_equal(
        model.get_layer("top_conv").kernel.numpy(), state_dict["_conv_head.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        model.get_layer("block5b_dwconv").kernel.numpy(),
        state_dict["_blocks.9._depthwise_conv.weight"].transpose(2, 3, 0, 1),
    )

    cached = cache_dir / f"lite0-{digest}.weights.h5"
    stamp = cached.stat().st_mtime_ns
    steps.clear()
    again = lite0.efficientnet_lite0(
        include_top=False, input_shape=(64, 64, 3), progress=lambda *step: steps.append(step)
    )
    assert steps == [] and cached.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.get_layer("top_conv").kernel.numpy(), model.get_layer("top_conv").kernel)


def test_a_damaged_cache_file_is_converted_again(converted_home, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(tmp_path / "fresh"))
    target = lite0.cached_weights_path(SOURCE)
    target.write_bytes(b"not an hdf5 file")
    model = lite0.efficientnet_lite0(include_top=False, input_shape=(32, 32, 3))
    assert target.stat().st_size > 10_000_000
    assert np.any(model.get_layer("stem_conv").kernel.numpy() != 0)
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_weights_may_be_a_pth_path_or_a_keras_weights_file(converted_home, tmp_path, imagenet_model):
    from_pth = lite0.efficientnet_lite0(weights=SOURCE, input_shape=(32, 32, 3))
    np.testing.assert_array_equal(
        from_pth.get_layer("predictions").kernel.numpy(), imagenet_model.get_layer("predictions").kernel.numpy()
    )
    saved = tmp_path / "mine.weights.h5"
    imagenet_model.save_weights(saved)
    from_keras = lite0.efficientnet_lite0(weights=saved)
    np.testing.assert_array_equal(
        from_keras.get_layer("block5b_project_bn").moving_mean.numpy(),
        imagenet_model.get_layer("block5b_project_bn").moving_mean.numpy(),
    )
    with pytest.raises(WeightsUnavailable, match="does not fit"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns about the classifier it cannot load before it raises
        lite0.efficientnet_lite0(weights=saved, classes=10)


# ------------------------------------------------------------------------------------------- real photos


def test_imagenet_model_recognises_scikit_learn_sample_photos(imagenet_model):
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    assert {"palace", "monastery", "bell cote"} & set(_top5(imagenet_model, _photo(china)))
    assert "daisy" in _top5(imagenet_model, _photo(flower))


def test_imagenet_model_recognises_scikit_image_sample_photos(imagenet_model):
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is a test dependency")
    assert _top5(imagenet_model, _photo(skimage_data.chelsea()))[0] in CAT_CLASSES
    assert _top5(imagenet_model, _photo(skimage_data.coffee()))[0] == "espresso"
