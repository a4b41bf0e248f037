"""Tests for keras_transfer.finetune.freezing: selecting, freezing, unfreezing, recompiling."""

import keras
import numpy as np
import pytest
from helpers import TINY_LAYERS, image_arrays, tiny_backbone

import keras_transfer as kt


def dense_chain(n=6):
    inputs = keras.Input((4,), name="inp")
    x = inputs
    for index in range(n):
        x = keras.layers.Dense(4, name=f"d{index}")(x)
    return keras.Model(inputs, x, name="chain")


def trainable_names(model):
    return [layer.name for layer in model.layers if layer.weights and layer.trainable]


def classifier_on(backbone, num_classes=2):
    """backbone -> pooling -> softmax, with the backbone as one layer (as in the guides)."""
    inputs = keras.Input(backbone.input_shape[1:])
    features = backbone(inputs)
    outputs = keras.layers.Dense(num_classes, "softmax", name="predictions")(
        keras.layers.GlobalAveragePooling2D()(features)
    )
    return keras.Model(inputs, outputs)


# --- select_layers ---------------------------------------------------------------


def test_select_layers_by_each_selector():
    model = dense_chain()
    names = lambda layers: [layer.name for layer in layers]  # noqa: E731
    assert names(kt.select_layers(model, top=2)) == ["d4", "d5"]
    assert names(kt.select_layers(model, top=0)) == []
    # model.layers counts the input layer too: 7 layers, half of them is 4 (rounded).
    assert names(kt.select_layers(model, top=0.5)) == ["d2", "d3", "d4", "d5"]
    assert names(kt.select_layers(model, top=1.0)) == names(model.layers)
    assert names(kt.select_layers(model, names=["d1", "d3"])) == ["d1", "d3"]
    assert names(kt.select_layers(model, names="d2")) == ["d2"]
    assert names(kt.select_layers(model, up_to="d1")) == ["inp", "d0", "d1"]
    assert names(kt.select_layers(model, from_layer="d4")) == ["d4", "d5"]
    assert names(kt.select_layers(model)) == names(model.layers)


@pytest.mark.parametrize(
    "selector, message",
    [
        (dict(top=2, names=["d1"]), "one way at a time; got top, names"),
        (dict(top=1.5), r"fraction of layers must be in \(0, 1\]"),
        (dict(top=0.0), r"fraction of layers must be in \(0, 1\]"),
        (dict(top=-1), "top must be >= 0"),
        (dict(names=["d55"]), r"no layer named 'd55' \(closest: d5"),
        (dict(up_to="dense_9"), "no layer named 'dense_9'"),
        (dict(from_layer="nope"), "no layer named 'nope'"),
    ],
)
def test_bad_selectors_raise(selector, message):
    with pytest.raises(ValueError, match=message):
        kt.select_layers(dense_chain(), **selector)


# --- freeze / unfreeze ----------------------------------------------------------------


def test_freeze_all_and_some():
    model = dense_chain()
    assert kt.freeze(model, top=2) == ["d4", "d5"]
    assert trainable_names(model) == ["d0", "d1", "d2", "d3"]
    assert model.trainable
    kt.freeze(model)
    assert not model.trainable and model.trainable_weights == []
    assert kt.parameter_counts(model) == (0, 6 * (4 * 4 + 4))


def test_unfreeze_by_top_count_and_fraction():
    model = dense_chain()
    kt.freeze(model)
    assert kt.unfreeze(model, top=2) == ["d4", "d5"]
    assert model.trainable and trainable_names(model) == ["d4", "d5"]
    assert kt.parameter_counts(model) == (2 * 20, 6 * 20)

    model = dense_chain()
    kt.freeze(model)
    kt.unfreeze(model, top=0.5)
    assert trainable_names(model) == ["d2", "d3", "d4", "d5"]


def test_unfreeze_by_names_up_to_and_from_layer():
    for selector, expected in [
        (dict(names=["d0", "d3"]), ["d0", "d3"]),
        (dict(up_to="d1"), ["d0", "d1"]),
        (dict(from_layer="d3"), ["d3", "d4", "d5"]),
        ({}, ["d0", "d1", "d2", "d3", "d4", "d5"]),
    ]:
        model = dense_chain()
        kt.freeze(model)
        kt.unfreeze(model, **selector)
        assert trainable_names(model) == expected, selector


def test_progressive_unfreezing_accumulates():
    model = dense_chain()
    kt.freeze(model)
    assert kt.unfreeze(model, top=1) == ["d5"]
    assert kt.unfreeze(model, names=["d1"]) == ["d1"]
    assert trainable_names(model) == ["d1", "d5"]
    assert kt.unfreeze(model, top=3) == ["d3", "d4"]
    assert trainable_names(model) == ["d1", "d3", "d4", "d5"]


def test_batchnorm_stays_frozen_after_unfreeze():
    backbone = tiny_backbone()
    kt.freeze(backbone)
    unfrozen = kt.unfreeze(backbone)
    assert unfrozen == ["conv1", "conv2", "conv3"]
    assert trainable_names(backbone) == ["conv1", "conv2", "conv3"]
    assert all(not backbone.get_layer(f"bn{i}").trainable for i in (1, 2, 3))
    assert kt.unfreeze(backbone, top=2, include_batchnorm=True) == ["bn3"]
    assert backbone.get_layer("bn3").trainable and not backbone.get_layer("bn2").trainable


def test_batchnorm_already_trainable_is_left_alone():
    backbone = tiny_backbone()  # everything trainable
    assert kt.unfreeze(backbone) == []
    assert trainable_names(backbone) == TINY_LAYERS[0:2] + TINY_LAYERS[3:5] + TINY_LAYERS[6:8]


# --- recompiling --------------------------------------------------------------------------


def test_recompile_keeps_optimizer_settings_and_sets_learning_rate():
    model = dense_chain()
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.7, nesterov=True, clipnorm=1.0),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        metrics=["categorical_accuracy"],
    )
    old_optimizer = model.optimizer
    kt.recompile(model, learning_rate=1e-4)
    optimizer = model.optimizer
    assert optimizer is not old_optimizer
    assert type(optimizer) is keras.optimizers.SGD
    assert optimizer.momentum == 0.7 and optimizer.nesterov and optimizer.clipnorm == 1.0
    assert float(optimizer.learning_rate) == pytest.approx(1e-4)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert model.loss.get_config()["label_smoothing"] == 0.1 and model.loss.get_config()["from_logits"]
    x = np.eye(4, dtype="float32")
    logs = model.fit(x, x, epochs=1, verbose=0).history
    assert set(logs) == {"loss", "categorical_accuracy"}


def test_recompile_keeps_learning_rate_when_none_is_given():
    model = dense_chain()
    model.compile(keras.optimizers.Adam(3e-3, beta_1=0.8), loss="mse")
    kt.recompile(model)
    assert float(model.optimizer.learning_rate) == pytest.approx(3e-3)
    assert model.optimizer.beta_1 == 0.8


def test_recompile_can_replace_the_optimizer():
    model = dense_chain()
    model.compile("adam", loss="mse")
    kt.recompile(model, optimizer=keras.optimizers.RMSprop(0.01, rho=0.8), learning_rate=0.002)
    assert type(model.optimizer) is keras.optimizers.RMSprop
    assert model.optimizer.rho == 0.8
    assert float(model.optimizer.learning_rate) == pytest.approx(0.002)


def test_recompile_needs_a_compiled_model():
    with pytest.raises(ValueError, match="never compiled"):
        kt.recompile(dense_chain())


def test_freezing_a_compiled_model_takes_effect_in_the_next_fit():
    model = dense_chain()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.5), loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    model.fit(x, x, epochs=1, verbose=0)  # the train function now exists
    kt.freeze(model, up_to="d3")
    assert model.optimizer.momentum == 0.5
    before = {name: model.get_layer(name).kernel.numpy() for name in ("d2", "d5")}
    model.fit(x, x, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.get_layer("d2").kernel.numpy(), before["d2"])
    assert not np.array_equal(model.get_layer("d5").kernel.numpy(), before["d5"])


# --- what training does to unfrozen and frozen layers ------------------------------------------


@pytest.mark.parametrize("include_batchnorm", [False, True])
def test_unfrozen_layers_train_and_batchnorm_statistics_stay(include_batchnorm):
    backbone = tiny_backbone()
    model = classifier_on(backbone)
    model.compile(keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    kt.freeze(backbone)
    kt.unfreeze(backbone, from_layer="conv3", include_batchnorm=include_batchnorm)
    model.compile(keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = {name: [w.numpy() for w in backbone.get_layer(name).weights] for name in ("conv2", "conv3", "bn3")}

    images, labels = image_arrays(16)
    model.fit(images / 255, labels, batch_size=8, epochs=1, verbose=0)

    after = {name: [w.numpy() for w in backbone.get_layer(name).weights] for name in before}
    assert not np.array_equal(after["conv3"][0], before["conv3"][0]), "unfrozen conv did not train"
    np.testing.assert_array_equal(after["conv2"][0], before["conv2"][0])
    bn3 = backbone.get_layer("bn3")
    moving_mean = [i for i, w in enumerate(bn3.weights) if "moving_mean" in w.path][0]
    mean_changed = not np.array_equal(after["bn3"][moving_mean], before["bn3"][moving_mean])
    # A frozen BN layer runs in inference mode: its statistics do not move.
    assert mean_changed == include_batchnorm
