"""Shared pytest setup for the keras_transfer tests.

At import time, before TensorFlow initializes its devices, the one physical CPU
is split into two logical devices so that `tf.distribute.MirroredStrategy`
can be tested on any machine ("/cpu:0" and "/cpu:1").
"""

import os

import tensorflow as tf

_CPUS = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(_CPUS[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:
    # Devices were initialized before this conftest ran (some plugin imported
    # and used TensorFlow first); the distributed test then says so clearly.
    pass

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

_DEFAULT_ASSETS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "assets")


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Every test starts from the same seeds and a clean Keras session."""
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="session")
def assets_dir():
    """The offline assets folder: $KERAS_TRANSFER_ASSETS or ../shared/assets."""
    path = os.path.abspath(os.environ.get("KERAS_TRANSFER_ASSETS") or _DEFAULT_ASSETS)
    if not os.path.isdir(path):
        pytest.fail(
            f"Offline assets not found at {path!r}: set KERAS_TRANSFER_ASSETS to the "
            "shared assets folder (and run ../shared/bin/install-offline-assets so "
            "weights='imagenet' works offline).",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test.

    TensorFlow numbers collective ops per process, so a second MirroredStrategy
    in the same process can abort with "Shape mismatch in the collective
    instance" (tensorflow/tensorflow#62790); real programs create one too.
    """
    assert len(tf.config.list_logical_devices("CPU")) >= 2, (
        "tests/conftest.py must split the CPU into 2 logical devices before TensorFlow starts"
    )
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def make_image_folder(tmp_path):
    """Writes `root/<class>/<i>.png` tiny images and returns root as a str.

    Each class gets a different mean brightness so that tiny models can tell
    them apart.
    """
    rng = np.random.default_rng(0)

    def make(name="images", classes=("cats", "dogs"), per_class=4, size=40):
        root = tmp_path / name
        for index, class_name in enumerate(classes):
            folder = root / class_name
            folder.mkdir(parents=True, exist_ok=True)
            base = 40 + 170 * index / max(1, len(classes) - 1)
            for i in range(per_class):
                pixels = np.clip(rng.normal(base, 20, (size, size, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
        return str(root)

    return make


def pytest_collection_modifyitems(config, items):
    """The long tests (real weights, notebooks) first.

    With pytest-xdist's workers they then start at once and the many short
    tests fill in around them, instead of one worker running a notebook alone
    at the end.
    """
    items.sort(key=lambda item: 0 if item.get_closest_marker("integration") else 1)
