"""Tests for keras_transfer.finetune.layer_blocks and keras_transfer.finetune.layerwise (discriminative rates)."""

import warnings

import keras
import numpy as np
import pytest
from helpers import tiny_bert

import keras_transfer as kt
from keras_transfer.finetune.layer_blocks import block_names, layer_blocks
from keras_transfer.finetune.layerwise import (
    LayerwiseLearningRates,
    depth_decay,
    layerwise_class,
    layerwise_learning_rates,
)

FACTORS = {"bottom": 0.25, "middle": 0.5}  # "top" trains at the optimizer's rate


def dense_stack(names=("bottom", "middle", "top"), units=4):
    """Input -> Dense layers named `names` (a Dropout after the first), for exact update checks."""
    inputs = keras.Input((units,), name="inputs")
    x = inputs
    for index, name in enumerate(names):
        x = keras.layers.Dense(units, name=name)(x)
        if index == 0:
            x = keras.layers.Dropout(0.0, name=f"{name}_dropout")(x)
    return keras.Model(inputs, x, name="stack")


def copy_of(model):
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def regression_batch(n=8, units=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, units)).astype("float32"), rng.normal(size=(n, units)).astype("float32")


def kernels(model):
    return {name: model.get_layer(name).kernel.numpy() for name in ("bottom", "middle", "top")}


def factor_of(name):
    return FACTORS.get(name, 1.0)


@pytest.fixture(scope="module")
def mobilenet():
    """A randomly initialised MobileNetV2 classifier, shared read-only by the tests here."""
    return kt.ImageClassifier("mobilenet_v2", num_classes=2, weights=None, image_size=32)


# --- layer_blocks ------------------------------------------------------------------------


def test_layer_blocks_of_mobilenet_v2(mobilenet):
    backbone = mobilenet.backbone
    names = block_names(layer_blocks(backbone))
    assert len(names) == 18  # stem, block_1 ... block_16, top
    assert sum(names, []) == [layer.name for layer in backbone.layers]  # every layer once, in order
    assert names[0][:3] == [backbone.layers[0].name, "Conv1", "bn_Conv1"]  # the input first
    assert {"expanded_conv_depthwise", "expanded_conv_project_BN"} <= set(names[0])
    for number in range(1, 17):
        assert all(name.startswith(f"block_{number}_") for name in names[number]), names[number]
    assert "block_3_expand" in names[3] and "block_3_pad" in names[3]
    assert names[-1] == ["Conv_1", "Conv_1_bn", "out_relu"]


@pytest.mark.parametrize(
    "layer_names, expected",
    [
        # ResNet: one block per residual block; the stem first.
        (
            [
                "conv1_conv",
                "conv1_bn",
                "conv2_block1_1_conv",
                "conv2_block1_0_conv",
                "conv2_block2_1_conv",
                "conv3_block1_1_conv",
                "post_bn",
            ],
            [
                ["conv1_conv", "conv1_bn"],
                ["conv2_block1_1_conv", "conv2_block1_0_conv"],
                ["conv2_block2_1_conv"],
                ["conv3_block1_1_conv"],
                ["post_bn"],
            ],
        ),
        # EfficientNet: block2a and block2b are two blocks; top_conv is the top block.
        (
            [
                "stem_conv",
                "block1a_dwconv",
                "block2a_expand_conv",
                "block2a_project_conv",
                "block2b_dwconv",
                "top_conv",
            ],
            [
                ["stem_conv"],
                ["block1a_dwconv"],
                ["block2a_expand_conv", "block2a_project_conv"],
                ["block2b_dwconv"],
                ["top_conv"],
            ],
        ),
        # DenseNet: a transition (pool2_conv) between matches joins the block before it.
        (
            ["conv1_conv", "conv2_block1_1_conv", "pool2_conv", "conv3_block1_1_conv"],
            [["conv1_conv"], ["conv2_block1_1_conv", "pool2_conv"], ["conv3_block1_1_conv"]],
        ),
    ],
)
def test_layer_blocks_follow_naming_conventions(layer_names, expected):
    names = block_names(layer_blocks(dense_stack(layer_names)))
    weighted = [[name for name in block if name in layer_names] for block in names]
    assert weighted == expected
    assert names[0][0] == "inputs"  # weightless, first: with the first block


def test_layer_blocks_of_a_keras_hub_transformer_put_embeddings_first():
    backbone, _ = tiny_bert()
    names = block_names(layer_blocks(backbone))
    assert [block[-1] for block in names[1:]] == ["transformer_layer_0", "transformer_layer_1", "pooled_dense"]
    assert {"token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm"} <= set(names[0])


def test_layer_blocks_fall_back_to_equal_chunks():
    functional = dense_stack(["a", "b", "c", "d", "e"])
    # Weightless layers (the input, a_dropout) join the block of the layer before them.
    assert block_names(layer_blocks(functional, 3)) == [["inputs", "a", "a_dropout", "b"], ["c", "d"], ["e"]]
    assert len(layer_blocks(functional)) == 4
    assert len(layer_blocks(functional, 10)) == 5  # at most one block per weighted layer
    sequential = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(2, name="s1"),
            keras.layers.ReLU(name="act"),
            keras.layers.Dense(2, name="s2"),
        ]
    )
    assert block_names(layer_blocks(sequential, 2)) == [["s1", "act"], ["s2"]]


def test_layer_blocks_by_chunks_ignores_names(mobilenet):
    backbone = mobilenet.backbone
    blocks = layer_blocks(backbone, 3, by="chunks")
    assert len(blocks) == 3 and blocks[0][0] is backbone.layers[0] and blocks[-1][-1].name == "out_relu"
    sizes = [sum(1 for layer in block if layer.weights) for block in blocks]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == sum(1 for layer in backbone.layers if layer.weights)


@pytest.mark.parametrize(
    "model, kwargs, message",
    [
        (lambda: dense_stack(["a", "b"]), dict(by="names"), "No naming convention matches"),
        (lambda: dense_stack(["a", "b"]), dict(by="stages"), "by must be one of"),
        (lambda: dense_stack(["a", "b"]), dict(num_blocks=0), "num_blocks must be a positive int"),
        (lambda: keras.Sequential([keras.layers.Dense(2)]), {}, "no layers with weights to group: build it"),
    ],
)
def test_layer_blocks_errors(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        layer_blocks(model(), **kwargs)


# --- depth_decay -------------------------------------------------------------------------


def test_depth_decay_over_the_blocks_of_the_backbone(mobilenet):
    multipliers = depth_decay(mobilenet, 0.5)
    assert multipliers["Conv_1"] == multipliers["Conv_1_bn"] == 1.0
    assert multipliers["block_16_project"] == 0.5
    assert multipliers["block_3_expand"] == 0.5**14
    assert multipliers["Conv1"] == multipliers["expanded_conv_project"] == 0.5**17
    assert "predictions" not in multipliers and "out_relu" not in multipliers  # head / weightless

    optimizer = layerwise_learning_rates(keras.optimizers.Adam(1e-4), mobilenet, multipliers)
    stored = optimizer.variable_multipliers
    assert stored["Conv1/kernel"] == 0.5**17 and stored["block_16_project/kernel"] == 0.5
    assert "Conv_1/kernel" not in stored and "predictions/kernel" not in stored  # 1.0 is the default


# --- exact updates -----------------------------------------------------------------------


def test_sgd_step_moves_each_layer_by_its_factor_times_plain_sgd():
    model = dense_stack()
    plain = copy_of(model)
    model.compile(layerwise_learning_rates(keras.optimizers.SGD(0.1), model, FACTORS), loss="mse")
    plain.compile(keras.optimizers.SGD(0.1), loss="mse")
    x, y = regression_batch()
    before = kernels(model)
    model.train_on_batch(x, y)
    plain.train_on_batch(x, y)
    for name, kernel in kernels(model).items():
        # The same weights see the same batch, so the gradients agree: lr * factor * grad,
        # up to the float32 rounding of weights near 1 (an ulp is 6e-8 at 0.5).
        expected = factor_of(name) * (kernels(plain)[name] - before[name])
        np.testing.assert_allclose(kernel - before[name], expected, rtol=1e-5, atol=1e-7, err_msg=name)
    assert type(model.optimizer).__name__ == "LayerwiseSGD" and isinstance(model.optimizer, keras.optimizers.SGD)


def test_adam_first_step_scales_with_the_factor():
    model, plain = dense_stack(), dense_stack()
    plain.set_weights(model.get_weights())
    grads = [np.random.default_rng(1).normal(size=v.shape).astype("float32") for v in model.trainable_variables]
    optimizer = layerwise_learning_rates(keras.optimizers.Adam(1e-2), model, FACTORS)
    before = kernels(model)
    optimizer.apply(grads, model.trainable_variables)
    keras.optimizers.Adam(1e-2).apply(grads, plain.trainable_variables)
    for name, kernel in kernels(model).items():
        step = kernel - before[name]
        # Adam's first step is about lr * sign(grad): its size is the layer's factor times lr.
        assert np.abs(step).mean() == pytest.approx(1e-2 * factor_of(name), rel=1e-3), name
        np.testing.assert_allclose(step, factor_of(name) * (kernels(plain)[name] - before[name]), rtol=1e-4)


def test_multipliers_scale_the_scheduled_rate():
    model = dense_stack()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    optimizer = layerwise_learning_rates(keras.optimizers.SGD(schedule), model, FACTORS)
    grads = [np.ones(v.shape, "float32") for v in model.trainable_variables]
    before = kernels(model)
    for _ in range(3):
        optimizer.apply(grads, model.trainable_variables)
    assert float(optimizer.learning_rate) == pytest.approx(0.1 * 0.5**3)
    for name, kernel in kernels(model).items():
        # Rates 0.1, 0.05, 0.025 at steps 0, 1, 2, each times the factor.
        np.testing.assert_allclose(before[name] - kernel, 0.175 * factor_of(name), rtol=1e-5)


def test_decoupled_weight_decay_is_scaled_too():
    model = dense_stack()
    optimizer = layerwise_learning_rates(keras.optimizers.AdamW(0.1, weight_decay=0.5), model, FACTORS)
    assert isinstance(optimizer, keras.optimizers.AdamW) and optimizer.weight_decay == 0.5
    before = kernels(model)
    # With zero gradients Adam does not move, so what changes is the weight decay alone.
    optimizer.apply([np.zeros(v.shape, "float32") for v in model.trainable_variables], model.trainable_variables)
    for name, kernel in kernels(model).items():
        np.testing.assert_allclose(kernel, before[name] * (1 - 0.1 * 0.5 * factor_of(name)), rtol=1e-6)


# --- serialization --------------------------------------------------------------------------


def test_config_round_trip_keeps_class_settings_and_multipliers():
    model = dense_stack()
    schedule = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=100)
    optimizer = layerwise_learning_rates(
        keras.optimizers.RMSprop(schedule, rho=0.8, clipnorm=1.0), model, {**FACTORS, "top": 1.0}
    )
    assert optimizer.variable_multipliers == {
        "bottom/kernel": 0.25,
        "bottom/bias": 0.25,
        "middle/kernel": 0.5,
        "middle/bias": 0.5,
    }
    for copy in (
        type(optimizer).from_config(optimizer.get_config()),
        keras.optimizers.deserialize(keras.optimizers.serialize(optimizer)),
    ):
        assert type(copy) is type(optimizer) is layerwise_class(keras.optimizers.RMSprop)
        assert copy.rho == 0.8 and copy.clipnorm == 1.0
        assert isinstance(copy._learning_rate, keras.optimizers.schedules.CosineDecay)
        assert copy.variable_multipliers == optimizer.variable_multipliers
    # The project's own copies (recompile after a change of trainable) keep it layer-wise.
    model.compile(optimizer, loss="mse")
    kt.freeze(model, names=["bottom"])
    assert type(model.optimizer) is type(optimizer)
    assert model.optimizer.variable_multipliers == optimizer.variable_multipliers
    # Made layer-wise again: the new multipliers replace the old ones.
    again = layerwise_learning_rates(optimizer, model, {"top": 2.0})
    assert type(again) is type(optimizer) and again.variable_multipliers == {"top/kernel": 2.0, "top/bias": 2.0}


def test_save_and_load_keep_multipliers_and_state(tmp_path):
    model = dense_stack()
    model.compile(layerwise_learning_rates(keras.optimizers.Adam(1e-2), model, FACTORS), loss="mse")
    x, y = regression_batch()
    model.train_on_batch(x, y)
    path = str(tmp_path / "layerwise.keras")
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Skipping variable loading for optimizer"
        loaded = keras.saving.load_model(path, compile=True)
    optimizer = loaded.optimizer
    assert type(optimizer) is type(model.optimizer) and isinstance(optimizer, LayerwiseLearningRates)
    assert optimizer.variable_multipliers == model.optimizer.variable_multipliers
    assert int(optimizer.iterations) == 1
    assert [optimizer.learning_rate_factor(v) for v in loaded.trainable_variables] == [0.25, 0.25, 0.5, 0.5, 1.0, 1.0]
    # Same weights and Adam slots, so the next step is the same step.
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# --- distribution ----------------------------------------------------------------------------


def test_mirrored_fit_scales_each_replica_update(mirrored_strategy):
    with mirrored_strategy.scope():
        model = dense_stack()
        plain = copy_of(model)
        # Weight decay takes the cross-replica path (merge_call) of the optimizer.
        model.compile(layerwise_learning_rates(keras.optimizers.SGD(0.1, weight_decay=0.1), model, FACTORS), loss="mse")
        plain.compile(keras.optimizers.SGD(0.1, weight_decay=0.1), loss="mse")
    x, y = regression_batch()
    before = kernels(model)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    plain.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert type(model.trainable_variables[0].value).__name__ == "MirroredVariable"
    for name, kernel in kernels(model).items():
        expected = factor_of(name) * (kernels(plain)[name] - before[name])
        np.testing.assert_allclose(kernel - before[name], expected, rtol=1e-5, atol=1e-7, err_msg=name)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "multipliers, error, message",
    [
        ({"botom": 0.5}, ValueError, r"no layer named 'botom' \(closest: bottom"),
        ({"bottom": -0.5}, ValueError, r"multiplier of 'bottom' is -0.5: multipliers must be finite numbers >= 0"),
        ({"top": float("nan")}, ValueError, "multiplier of 'top' is nan"),
        ({"top": True}, ValueError, "multiplier of 'top' is True"),
        ({"top": "0.5"}, ValueError, "multiplier of 'top' is '0.5'"),
        ({3: 0.5}, TypeError, "keys must be layers or layer names"),
        ([("top", 0.5)], TypeError, "multipliers must be a dict"),
        ({keras.layers.Dense(2, name="elsewhere"): 0.5}, ValueError, "'elsewhere' is not part of stack"),
    ],
)
def test_bad_multipliers_are_named(multipliers, error, message):
    with pytest.raises(error, match=message):
        layerwise_learning_rates(keras.optimizers.SGD(0.1), dense_stack(), multipliers)


def test_other_bad_arguments():
    model = dense_stack()
    with pytest.raises(ValueError, match=r"decay must be a number in \(0, 1\]"):
        depth_decay(model, 1.5)
    with pytest.raises(TypeError, match="LossScaleOptimizer wraps another optimizer"):
        layerwise_learning_rates(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()), model, FACTORS)
    with pytest.raises(TypeError, match="optimizer must be a keras.optimizers.Optimizer"):
        layerwise_learning_rates(0.1, model, FACTORS)
    with pytest.raises(ValueError, match="Unknown optimizer 'adamm'"):
        layerwise_learning_rates("adamm", model, FACTORS)
    unbuilt = keras.Sequential([keras.layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match="has no weights yet"):
        layerwise_learning_rates("sgd", unbuilt, {"d": 0.5})
