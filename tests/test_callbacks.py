"""Tests for keras_transfer.finetune.progressive.ProgressiveUnfreezing."""

import warnings

import keras
import numpy as np
import pytest
from helpers import image_arrays, tiny_backbone, tiny_classifier

from keras_transfer.finetune.layer_blocks import layer_blocks
from keras_transfer.finetune.layerwise import depth_decay, layerwise_learning_rates
from keras_transfer.finetune.progressive import ProgressiveUnfreezing


class Recorder(keras.callbacks.Callback):
    """Snapshots a backbone's weights and trainable layers at the start and end of each epoch.

    Listed after ProgressiveUnfreezing, so it sees each epoch as it trains.
    """

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.trainable, self.begin, self.end, self.optimizers, self.optimizer_state = {}, {}, {}, {}, {}

    def weights(self):
        return {
            layer.name: [w.numpy().copy() for w in layer.weights] for layer in self.backbone.layers if layer.weights
        }

    def on_epoch_begin(self, epoch, logs=None):
        self.trainable[epoch] = {layer.name for layer in self.backbone.layers if layer.trainable and layer.weights}
        self.begin[epoch] = self.weights()
        self.optimizers[epoch] = self.model.optimizer
        self.optimizer_state[epoch] = {v.name: v.numpy().copy() for v in self.model.optimizer.variables}

    def on_epoch_end(self, epoch, logs=None):
        self.end[epoch] = self.weights()


def same(first, second):
    return all(np.array_equal(a, b) for a, b in zip(first, second))


def check_epochs(recorder, expected_trainable, backbone):
    """Exactly the scheduled layers train; frozen ones and every BatchNormalization stay bit-identical."""
    assert recorder.trainable == expected_trainable
    for epoch, trainable in expected_trainable.items():
        begin, end = recorder.begin[epoch], recorder.end[epoch]
        for name in begin:
            if name in trainable:
                assert not same(begin[name], end[name]), f"{name} did not train in epoch {epoch}"
            else:
                assert same(begin[name], end[name]), f"frozen {name} changed in epoch {epoch}"
    first, last = recorder.begin[min(recorder.begin)], recorder.end[max(recorder.end)]
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable
            assert same(first[layer.name], last[layer.name]), f"{layer.name}'s moving statistics changed"


# The tiny backbone's three blocks: conv1 (+ input), conv2, conv3, each with its BN and ReLU.
def tiny_blocks(model):
    return layer_blocks(model.backbone, 3)


@pytest.mark.parametrize("layerwise", [False, True], ids=["adam", "layerwise_adam"])
def test_one_block_per_epoch_from_the_top(layerwise):
    model = tiny_classifier()
    optimizer = keras.optimizers.Adam(1e-2)
    if layerwise:
        optimizer = layerwise_learning_rates(optimizer, model, depth_decay(model, 0.5, blocks=tiny_blocks(model)))
    model.compile(optimizer)
    initial = model.backbone.get_layer("conv1").get_weights()
    recorder = Recorder(model.backbone)
    images, labels = image_arrays(8)
    unfreezing = ProgressiveUnfreezing(blocks=tiny_blocks(model))
    history = model.fit(images, labels, batch_size=4, epochs=3, verbose=0, callbacks=[unfreezing, recorder])

    check_epochs(recorder, {0: set(), 1: {"conv3"}, 2: {"conv2", "conv3"}}, model.backbone)
    assert unfreezing.unfrozen_layers == {1: ["conv3"], 2: ["conv2"]}
    assert same(model.backbone.get_layer("conv1").get_weights(), initial)
    assert np.isfinite(history.history["loss"]).all() and len(history.history["loss"]) == 3
    # Built once, over head + conv2 + conv3 (no BN): 2 + 2 slots x 6 variables.
    assert all(optimizer is recorder.optimizers[epoch] for epoch in range(3))
    assert len(optimizer.variables) == 2 + 2 * 6
    assert type(model.optimizer).__name__ == ("LayerwiseAdam" if layerwise else "Adam")


def nested_model():
    """A plain model whose backbone holds a composite layer with a BatchNormalization inside."""
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, name="stem_conv")(inputs)
    x = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, padding="same", name="stage_conv"),
            keras.layers.BatchNormalization(name="stage_bn"),
        ],
        name="stage",
    )(x)
    x = keras.layers.Conv2D(4, 3, name="top_conv")(x)
    backbone = keras.Model(inputs, x, name="features")
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(
        keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    )
    return keras.Model(inputs, outputs, name="plain"), backbone


def test_explicit_schedule_and_backbone_keep_nested_batchnorm_frozen():
    model, backbone = nested_model()
    model.compile(keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    stage = backbone.get_layer("stage")
    inner_batchnorm = stage.get_layer("stage_bn").get_weights()
    recorder = Recorder(backbone)
    images, labels = image_arrays(8, size=16)
    # Blocks by equal chunks: [pixels, stem_conv], [stage], [top_conv]; 5 blocks means all 3.
    unfreezing = ProgressiveUnfreezing(schedule={1: 1, 2: 5}, backbone=backbone)
    model.fit(images / 255, labels, batch_size=4, epochs=3, verbose=0, callbacks=[unfreezing, recorder])

    check_epochs(recorder, {0: set(), 1: {"top_conv"}, 2: {"stem_conv", "stage", "top_conv"}}, backbone)
    # The BatchNormalization inside the unfrozen composite layer stayed frozen, statistics and all.
    assert stage.get_layer("stage_conv").trainable and not stage.get_layer("stage_bn").trainable
    assert same(stage.get_layer("stage_bn").get_weights(), inner_batchnorm)


def test_the_model_itself_as_backbone_is_not_recompiled_midway():
    model, _ = nested_model()
    model.compile(keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    compiled = model.optimizer
    recorder = Recorder(model)
    images, labels = image_arrays(8, size=16)
    # Blocks of the whole model: [pixels, features], [pooling, head]; the head from the start.
    unfreezing = ProgressiveUnfreezing(backbone=model, initial_blocks=1, blocks=layer_blocks(model, 2))
    model.fit(images / 255, labels, batch_size=4, epochs=2, verbose=0, callbacks=[unfreezing, recorder])

    check_epochs(recorder, {0: {"head"}, 1: {"features", "head"}}, model)
    assert model.compiled and model.optimizer is compiled


def test_schedule_arithmetic():
    per_epoch = ProgressiveUnfreezing(blocks_per_epoch=2, initial_blocks=1)
    # Counted from the fit's first epoch (here fit(initial_epoch=3)).
    assert [per_epoch.blocks_at(epoch, first_epoch=3) for epoch in (3, 4, 5)] == [1, 3, 5]
    explicit = ProgressiveUnfreezing(schedule={4: 3, 2: 1}, initial_blocks=0)
    # Keras's own epoch numbers; the last count given holds until the next.
    assert [explicit.blocks_at(epoch) for epoch in range(6)] == [0, 0, 1, 1, 3, 3]


def test_optimizer_built_before_is_replaced_keeping_its_state():
    model = tiny_classifier()
    model.freeze_backbone()
    model.compile(keras.optimizers.Adam(1e-2))
    images, labels = image_arrays(8)
    model.fit(images, labels, batch_size=4, epochs=1, verbose=0)  # head only: built over the head
    old = model.optimizer
    old_state = {v.name: v.numpy().copy() for v in old.variables}
    recorder = Recorder(model.backbone)
    model.fit(
        images,
        labels,
        batch_size=4,
        initial_epoch=1,
        epochs=2,
        verbose=0,
        callbacks=[ProgressiveUnfreezing(initial_blocks=1, blocks=tiny_blocks(model)), recorder],
    )

    new, state = recorder.optimizers[1], recorder.optimizer_state[1]
    assert new is not old and type(new) is type(old) and recorder.trainable[1] == {"conv3"}
    assert set(state) == set(old_state) | {
        f"conv3_{weight}_{slot}" for weight in ("kernel", "bias") for slot in ("momentum", "velocity")
    }
    for name, value in state.items():
        if name in old_state:  # step count, rate and the head's slots go on from where they were
            np.testing.assert_array_equal(value, old_state[name], err_msg=name)
        else:  # the new block's slots start from zero
            assert not value.any(), name
    assert int(old_state["iteration"]) == 2 and int(new.iterations) == 4


def test_mirrored_strategy_fit_and_save(mirrored_strategy, tmp_path):
    with mirrored_strategy.scope():
        model = tiny_classifier()
        model.freeze_backbone()  # fit's symbolic build then builds the optimizer over the head only
        model.compile(layerwise_learning_rates("adam", model, depth_decay(model, 0.5, blocks=tiny_blocks(model))))
    compiled = model.optimizer
    recorder = Recorder(model.backbone)
    images, labels = image_arrays(8)
    model.fit(
        images,
        labels,
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[ProgressiveUnfreezing(blocks=tiny_blocks(model)), recorder],
    )

    check_epochs(recorder, {0: set(), 1: {"conv3"}}, model.backbone)
    # Replaced (fit built it first, over the head alone), layer-wise still.
    assert recorder.optimizers[0] is not compiled and type(model.optimizer) is type(compiled)
    assert type(model.optimizer.variables[-1].value).__name__ == "MirroredVariable"
    # The optimizer covers exactly what trains at the end, so a saved model loads its state.
    path = str(tmp_path / "unfrozen.keras")
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Skipping variable loading for optimizer"
        loaded = keras.saving.load_model(path)
    assert int(loaded.optimizer.iterations) == 4
    assert loaded.optimizer.variable_multipliers == model.optimizer.variable_multipliers


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(blocks_per_epoch=1, schedule={0: 1}), "either blocks_per_epoch or schedule"),
        (dict(blocks_per_epoch=0), "blocks_per_epoch must be an int >= 1"),
        (dict(schedule={0: 2, 3: 1}), "goes down to 1 blocks at epoch 3 from 2"),
        (dict(schedule={-1: 2}), "schedule epoch -1 must be an int >= 0"),
        (dict(schedule={}), "schedule must be a non-empty dict"),
        (dict(initial_blocks=-1), "initial_blocks must be an int >= 0"),
    ],
)
def test_bad_schedules_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProgressiveUnfreezing(**kwargs)


def test_bad_backbones_fail_before_training():
    images, labels = image_arrays(4, size=16)
    model, backbone = nested_model()
    model.compile("sgd", loss="sparse_categorical_crossentropy")
    fit = lambda callback: model.fit(images, labels, epochs=1, verbose=0, callbacks=[callback])  # noqa: E731
    with pytest.raises(ValueError, match="plain has no .backbone: pass ProgressiveUnfreezing\\(backbone=...\\)"):
        fit(ProgressiveUnfreezing())
    with pytest.raises(ValueError, match="'tiny_backbone' is not part of the trained model 'plain'"):
        fit(ProgressiveUnfreezing(backbone=tiny_backbone()))
    with pytest.raises(ValueError, match="does not have at its top level: stage_conv"):
        fit(ProgressiveUnfreezing(backbone=backbone, blocks=[["stem_conv"], ["stage_conv"]]))
    with pytest.raises(TypeError, match="backbone must be a keras.Model"):
        ProgressiveUnfreezing(backbone=keras.layers.Dense(2))
    backbone.get_layer("top_conv").enable_lora(2)
    with pytest.raises(ValueError, match="trains through LoRA adapters"):
        fit(ProgressiveUnfreezing(backbone=backbone))
