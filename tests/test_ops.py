"""Numerics of the tensor ops on known arrays."""

import numpy as np
import pytest
import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.tensorop import Minmax, Resize, Scale

STATE = {"mode": "train"}


def test_minmax_is_per_sample():
    x = np.array([[[0.0, 5.0], [10.0, 2.5]],
                  [[100.0, 100.0], [100.0, 100.0]],
                  [[-2.0, 2.0], [0.0, 1.0]]], dtype=np.float32)
    (out,) = Minmax(inputs="x", outputs="x").forward([tf.constant(x)], STATE)
    expected = np.array([[[0.0, 0.5], [1.0, 0.25]],
                         [[0.0, 0.0], [0.0, 0.0]],   # constant sample: no division by zero
                         [[0.0, 1.0], [0.5, 0.75]]], dtype=np.float32)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    assert out.dtype == tf.float32


def test_minmax_on_uint8_images():
    x = np.zeros((2, 4, 4, 1), dtype=np.uint8)
    x[0, 0, 0, 0] = 255
    x[1] = 7
    x[1, 3, 3, 0] = 9
    (out,) = Minmax(inputs="x", outputs="x").forward([tf.constant(x)], STATE)
    assert out.numpy()[0].max() == 1.0 and out.numpy()[0].min() == 0.0
    assert out.numpy()[1, 3, 3, 0] == 1.0 and out.numpy()[1, 0, 0, 0] == 0.0


def test_scale():
    x = np.array([[0, 51, 255]], dtype=np.uint8)
    (out,) = Scale(inputs="x", scalar=1.0 / 255, outputs="x").forward([tf.constant(x)], STATE)
    np.testing.assert_allclose(out.numpy(), [[0.0, 0.2, 1.0]], rtol=1e-6)
    assert out.dtype == tf.float32


def test_resize_bilinear_known_values():
    # A 2x2 image upsampled to 4x4 with half-pixel centres (TF2's tf.image.resize).
    x = np.array([[[[0.0], [4.0]], [[8.0], [12.0]]]], dtype=np.float32)
    (out,) = Resize(inputs="x", size=(4, 4), outputs="x").forward([tf.constant(x)], STATE)
    out = out.numpy()[0, :, :, 0]
    assert out.shape == (4, 4)
    np.testing.assert_allclose(out[0], [0.0, 1.0, 3.0, 4.0], atol=1e-5)
    np.testing.assert_allclose(out[:, 0], [0.0, 2.0, 6.0, 8.0], atol=1e-5)


def test_resize_shape_and_nearest():
    x = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28, 1)
    (out,) = Resize(inputs="x", size=(30, 32), outputs="x").forward([tf.constant(x)], STATE)
    assert out.shape == (2, 30, 32, 1)
    y = np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1)
    (out,) = Resize(inputs="x", size=(4, 4), outputs="x",
                    resize_method="nearest").forward([tf.constant(y)], STATE)
    np.testing.assert_array_equal(out.numpy()[0, :, :, 0],
                                  [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def test_bad_resize_size():
    with pytest.raises(ConfigError, match="Resize: size"):
        Resize(inputs="x", size=(30,), outputs="x")


def test_bad_mode():
    with pytest.raises(ConfigError, match="mode 'infer'"):
        Scale(inputs="x", scalar=2.0, outputs="x", mode="infer")


def test_signature_names_settings():
    assert Resize(inputs="x", size=(30, 30), outputs="x").signature() != \
        Resize(inputs="x", size=(32, 32), outputs="x").signature()
    assert "scalar=0.5" in Scale(inputs="x", scalar=0.5, outputs="x").signature()
