"""Tests for keras_transfer.ImageClassifier: building, fine-tuning, saving, errors, parity."""

import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import image_arrays, image_dataset, run_serialization_test, tiny_backbone, tiny_classifier

import keras_transfer as kt
from keras_transfer.data import DataError


def layer_flags(model):
    return {layer.name: layer.trainable for layer in model.backbone.layers if layer.weights}


# --- building and inference ------------------------------------------------------------


def test_named_backbone_takes_raw_pixels():
    model = kt.ImageClassifier("vgg16", num_classes=3, weights=None, image_size=32)
    assert model.output_shape == (None, 3)
    assert model.image_size == (32, 32) and model.backbone_name == "vgg16"
    images = image_arrays(4)[0]

    manual = keras.applications.vgg16.preprocess_input(images.copy())
    features = np.asarray(model.backbone(manual, training=False)).mean(axis=(1, 2))
    np.testing.assert_allclose(model.feature_extractor().predict(images, verbose=0), features, rtol=1e-4, atol=1e-6)
    dense = model.get_layer("predictions")
    logits = features @ dense.kernel.numpy() + dense.bias.numpy()
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-5)
    # Without the preprocessing the backbone sees other numbers: the checks above can fail.
    raw = np.asarray(model.backbone(images, training=False)).mean(axis=(1, 2))
    assert not np.allclose(raw, features, rtol=1e-2, atol=1e-4)


def test_constructor_errors():
    with pytest.raises(ValueError, match="Pass num_classes"):
        kt.ImageClassifier(tiny_backbone())
    with pytest.raises(ValueError, match="num_classes=3 but 2 class_names"):
        kt.ImageClassifier(tiny_backbone(), num_classes=3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="num_classes >= 2"):
        kt.ImageClassifier(tiny_backbone(), num_classes=1)


def test_class_names_size_the_head():
    model = kt.ImageClassifier(tiny_backbone(), class_names=["x", "y", "z"], preprocessor="unit")
    assert model.output_shape == (None, 3) and model.class_names == ["x", "y", "z"]
    assert model.preprocessor.mode == "unit"


def test_feature_extractor_and_predict_classes():
    model = tiny_classifier(3)
    images = image_arrays(6, num_classes=3)[0]
    maps = np.asarray(model.backbone(images / 255, training=False))

    features = model.feature_extractor().predict(images, verbose=0)
    assert features.shape == (6, 16)
    np.testing.assert_allclose(features, maps.mean(axis=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(
        model.feature_extractor("max").predict(images, verbose=0), maps.max(axis=(1, 2)), atol=1e-5
    )
    # One pooling vocabulary: "mean" is the head's default, "avg" its 0.1.0 spelling.
    np.testing.assert_allclose(model.feature_extractor("avg").predict(images, verbose=0), features, atol=1e-6)
    flattened = model.feature_extractor("flatten").predict(images, verbose=0)
    np.testing.assert_allclose(flattened, maps.reshape(len(maps), -1), atol=1e-5)
    with pytest.raises(ValueError, match="Unknown pooling 'median'"):
        model.feature_extractor("median")

    probabilities = model.predict(images, verbose=0)
    indices, scores = model.predict_classes(images)
    np.testing.assert_array_equal(indices, probabilities.argmax(1))
    np.testing.assert_allclose(scores, probabilities.max(1), atol=1e-6)


def test_predict_classes_with_logits_and_binary_heads():
    images = image_arrays(6)[0]
    logits_model = tiny_classifier(head=kt.Head.multiclass(3, logits=True, dropout=0.0))
    logits = logits_model.predict(images, verbose=0)
    indices, scores = logits_model.predict_classes(images)
    np.testing.assert_array_equal(indices, logits.argmax(1))
    np.testing.assert_allclose(scores, np.max(tf.nn.softmax(logits).numpy(), axis=1), atol=1e-5)

    binary = tiny_classifier(head=kt.Head.binary(dropout=0.0))
    score = binary.predict(images, verbose=0)[:, 0]
    indices, scores = binary.predict_classes(images)
    np.testing.assert_array_equal(indices, (score >= 0.5).astype(int))
    np.testing.assert_allclose(scores, np.where(score >= 0.5, score, 1 - score), atol=1e-6)

    with pytest.raises(ValueError, match="needs a classification head"):
        tiny_classifier(head=kt.Head.regression(1)).predict_classes(images)


def test_the_task_contract_names_the_head_features_and_survives_loading(tmp_path):
    model = tiny_classifier()
    # The head pools inside: its features are the pooling's output, what 0.1.0 called head_input.
    assert model.head_features is model.get_layer("head_pooling").output
    assert model.head_input is model.head_features and model.train_batch_norm is False
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.head_features is restored.get_layer("head_pooling").output
    images = image_arrays(4)[0]
    np.testing.assert_allclose(
        restored.feature_extractor().predict(images, verbose=0),
        model.feature_extractor().predict(images, verbose=0),
        atol=1e-6,
    )
    # A backbone that pools itself: the head's first layer takes its output as it is.
    pooled = keras.Sequential([tiny_backbone(), keras.layers.GlobalAveragePooling2D()], name="pooled")
    already = kt.ImageClassifier(pooled, head=kt.Head.multiclass(2, hidden_units=[4]), preprocessor="unit")
    assert "head_pooling" not in [layer.name for layer in already.layers]
    assert already.head_features is already.get_layer("head_dropout_1").input
    assert already.feature_extractor("max").output_shape == (None, 16)


# --- saving ------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    train, images, _ = image_dataset(16, class_names=["cat", "dog"])
    model = tiny_classifier(head=kt.Head.multiclass(2, dropout=0.1, hidden_units=[8]))
    model.fine_tune(train, head_epochs=1, finetune_epochs=1, unfreeze=4, verbose=0)
    assert layer_flags(model) == {
        "conv1": False,
        "bn1": False,
        "conv2": False,
        "bn2": False,
        "conv3": True,
        "bn3": False,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = run_serialization_test(model, images, tmp_path / "model.keras", atol=0.0)
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    assert restored.class_names == ["cat", "dog"] and restored.image_size == (32, 32)
    assert layer_flags(restored) == layer_flags(model)
    assert type(restored.optimizer) is keras.optimizers.RMSprop
    assert float(restored.optimizer.learning_rate) == pytest.approx(1e-5)
    # It keeps training where it stopped.
    frozen = restored.backbone.get_layer("conv1").kernel.numpy()
    restored.fit(train, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(restored.backbone.get_layer("conv1").kernel.numpy(), frozen)


# Saved before any training, the optimizer has no slots yet; Keras warns about that.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_save_and_load_with_a_frozen_backbone(tmp_path):
    model = tiny_classifier(class_names=["a", "b"])
    model.freeze_backbone()
    model.compile()
    restored = run_serialization_test(model, image_arrays(4)[0], tmp_path / "frozen.keras")
    assert restored.backbone.trainable is False
    assert len(restored.trainable_weights) == 2  # the head's Dense kernel and bias


def _batch_norm_means(model):
    return {
        layer.name: layer.moving_mean.numpy().copy()
        for layer in model.backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }


def test_training_from_scratch_learns_batch_norm_statistics(tmp_path):
    images, labels = image_arrays(16)
    pretrained_style = kt.ImageClassifier(tiny_backbone(), num_classes=2, preprocessor="unit")
    scratch = kt.ImageClassifier(
        tiny_backbone(name="scratch_backbone"), num_classes=2, preprocessor="unit", train_batch_norm=True
    )
    for model in (pretrained_style, scratch):
        model.compile("adam", learning_rate=1e-3)
    before = {model.name: _batch_norm_means(model) for model in (pretrained_style, scratch)}
    for model in (pretrained_style, scratch):
        model.fit(images, labels, epochs=1, batch_size=8, verbose=0)
    # Inference mode keeps ImageNet-style statistics; from scratch they follow the data.
    for name, mean in _batch_norm_means(pretrained_style).items():
        np.testing.assert_array_equal(mean, before[pretrained_style.name][name])
    moved = [
        name
        for name, mean in _batch_norm_means(scratch).items()
        if not np.array_equal(mean, before[scratch.name][name])
    ]
    assert len(moved) == len(before[scratch.name])

    # Unfreezing takes BatchNormalization along only when the model trains it.
    for model in (pretrained_style, scratch):
        model.freeze_backbone()
        model.unfreeze_backbone(top=4)  # relu2, conv3, bn3, relu3
    assert layer_flags(scratch) == {
        "conv1": False,
        "bn1": False,
        "conv2": False,
        "bn2": False,
        "conv3": True,
        "bn3": True,
    }
    assert not [
        layer
        for layer in pretrained_style.backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]

    restored = run_serialization_test(scratch, images, tmp_path / "scratch.keras")
    assert restored.train_batch_norm is True


# --- fine_tune ----------------------------------------------------------------------------


def test_fine_tune_histories_epochs_and_seconds():
    train, _, _ = image_dataset(16)
    val, _, _ = image_dataset(8, seed=1)
    model = tiny_classifier()
    history = model.fine_tune(train, val, head_epochs=2, finetune_epochs=1, unfreeze=4, verbose=0)
    assert isinstance(history, kt.FineTuneHistory)
    assert history.head.epoch == [0, 1] and history.finetune.epoch == [2]
    # The default caches the frozen layers' outputs once, for both phases, and starts the head
    # from a logistic regression: each part is timed.
    assert set(history.seconds) == {
        "head",
        "finetune",
        "below_cut",
        "below_cut_validation",
        "head_features",
        "head_validation_features",
        "linear_probe",
    }
    assert min(history.seconds.values()) > 0 and history.seconds["below_cut"] < history.seconds["head"]
    merged = history.merged()
    assert set(merged) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(merged["loss"]) == 3 and np.all(np.isfinite(merged["loss"]))
    assert model.class_names == ["class_0", "class_1"]  # taken from the data
    assert [name for name, _ in history.phases] == ["head", "finetune"]


def test_fine_tune_with_a_phase_skipped():
    train, _, _ = image_dataset(16)
    model = tiny_classifier()
    history = model.fine_tune(train, head_epochs=0, finetune_epochs=1, unfreeze="all", verbose=0)
    assert history.head is None and history.finetune.epoch == [0]
    assert set(history.seconds) == {"finetune"}
    assert layer_flags(model) == {"conv1": True, "bn1": False, "conv2": True, "bn2": False, "conv3": True, "bn3": False}

    history = model.fine_tune(train, head_epochs=1, finetune_epochs=0, verbose=0)
    assert history.finetune is None and history.head.epoch == [0]
    assert not model.backbone.trainable and len(model.trainable_weights) == 2


def test_fine_tune_unfreezes_from_a_layer_name():
    train, _, _ = image_dataset(8)
    model = tiny_classifier()
    model.fine_tune(train, head_epochs=0, finetune_epochs=1, unfreeze="conv2", verbose=0)
    assert layer_flags(model) == {
        "conv1": False,
        "bn1": False,
        "conv2": True,
        "bn2": False,
        "conv3": True,
        "bn3": False,
    }


def test_early_stopping_continuous_epochs_and_checkpoints(tmp_path):
    train, images, _ = image_dataset(16)
    model = tiny_classifier()
    checkpoints = str(tmp_path / "checkpoints")
    # A learning rate of 0 never improves val_loss: patience 1 stops each phase after 2 epochs.
    history = model.fine_tune(
        train,
        train,
        head_epochs=5,
        finetune_epochs=5,
        early_stopping=1,
        head_learning_rate=0.0,
        finetune_learning_rate=0.0,
        finetune_patience=10,  # early_stopping decides here
        checkpoint_dir=checkpoints,
        verbose=0,
    )
    assert history.head.epoch == [0, 1]
    assert history.finetune.epoch == [2, 3]
    assert sorted(os.listdir(checkpoints)) == ["best_finetune.keras", "best_head.keras"]
    best = keras.models.load_model(os.path.join(checkpoints, "best_finetune.keras"))
    np.testing.assert_allclose(best.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_early_stopping_restores_the_best_weights():
    train, _, _ = image_dataset(16)
    model = tiny_classifier()

    class Spoil(keras.callbacks.Callback):
        """After epoch 1 (once EarlyStopping kept its weights), wrecks the head."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                dense = self.model.get_layer("predictions")
                signs = np.sign(np.random.default_rng(0).normal(size=dense.kernel.shape))
                dense.kernel.assign(100.0 * signs)

    history = model.fine_tune(
        train, train, head_epochs=4, finetune_epochs=0, early_stopping=1, callbacks=[Spoil()], verbose=0
    )
    # Epoch 2 runs with the wrecked head, its val_loss is worse, training stops and the
    # best weights come back; without restoring, the kernel would still be about 100.
    assert history.head.epoch == [0, 1, 2]
    assert np.abs(model.get_layer("predictions").kernel.numpy()).max() < 10


@pytest.mark.parametrize(
    "name, optimizer_class",
    [
        ("adam", keras.optimizers.Adam),
        ("rmsprop", keras.optimizers.RMSprop),
        ("sgd", keras.optimizers.SGD),
    ],
)
def test_fine_tune_optimizers(name, optimizer_class):
    train, _, _ = image_dataset(8)
    model = tiny_classifier()
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            optimizer = self.model.optimizer
            seen.append((type(optimizer), float(optimizer.learning_rate), getattr(optimizer, "momentum", None)))

    model.fine_tune(
        train,
        head_epochs=1,
        finetune_epochs=1,
        optimizer=name,
        finetune_optimizer=name,
        head_learning_rate=0.01,
        finetune_learning_rate=0.002,
        callbacks=[Record()],
        verbose=0,
    )
    assert [entry[0] for entry in seen] == [optimizer_class, optimizer_class]
    assert [entry[1] for entry in seen] == pytest.approx([0.01, 0.002])
    if name == "sgd":
        assert [entry[2] for entry in seen] == [0.9, 0.9]


def test_fine_tune_with_an_optimizer_instance_and_unknown_name():
    train, _, _ = image_dataset(8)
    model = tiny_classifier()
    model.fine_tune(
        train,
        head_epochs=1,
        finetune_epochs=0,
        optimizer=keras.optimizers.Adam(beta_1=0.7),
        head_learning_rate=0.05,
        verbose=0,
    )
    assert model.optimizer.beta_1 == 0.7 and float(model.optimizer.learning_rate) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="Unknown optimizer 'adagrad'"):
        model.fine_tune(train, head_epochs=1, finetune_epochs=0, optimizer="adagrad", verbose=0)


@pytest.mark.parametrize("task", ["binary", "multilabel", "regression"])
def test_other_heads_train_on_arrays(task):
    images, labels = image_arrays(16)
    rng = np.random.default_rng(3)
    head, targets, metrics = {
        "binary": (kt.Head.binary(dropout=0.0), labels.astype("float32"), {"loss", "accuracy", "auc"}),
        "multilabel": (
            kt.Head.multilabel(3, dropout=0.0),
            (rng.uniform(size=(16, 3)) > 0.5).astype("float32"),
            {"loss", "accuracy", "auc"},
        ),
        "regression": (
            kt.Head.regression(2, dropout=0.0),
            rng.normal(size=(16, 2)).astype("float32"),
            {"loss", "mae", "rmse"},
        ),
    }[task]
    model = tiny_classifier(head=head)
    before = model.get_layer("predictions").kernel.numpy()
    history = model.fine_tune(
        (images, targets), (images, targets), head_epochs=1, finetune_epochs=0, batch_size=8, verbose=0
    )
    assert set(history.head.history) == metrics | {f"val_{name}" for name in metrics}
    assert np.isfinite(history.head.history["loss"][0])
    assert not np.array_equal(before, model.get_layer("predictions").kernel.numpy())
    assert model.predict(images[:2], verbose=0).shape == (2, head.num_outputs)
    assert type(model.loss) is type(head.loss())


# --- errors before training ---------------------------------------------------------------


def assert_untrained(model, weights):
    assert not model.compiled
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_num_classes_mismatch_fails_before_training():
    train, _, _ = image_dataset(16, num_classes=2)
    model = tiny_classifier(3)
    weights = model.get_weights()
    with pytest.raises(DataError, match=r"the model has 3 outputs but the data has 2 classes.*num_classes=2"):
        model.fine_tune(train, head_epochs=1, finetune_epochs=1, verbose=0)
    assert_untrained(model, weights)
    val, _, _ = image_dataset(9, num_classes=3)
    with pytest.raises(DataError, match="3 outputs but the data has 2 classes"):
        model.fine_tune(val, train, head_epochs=1, finetune_epochs=1, verbose=0)
    assert_untrained(model, weights)


def test_train_and_validation_class_mismatch_fails_before_training():
    train, _, _ = image_dataset(8, class_names=["cat", "dog"])
    val, _, _ = image_dataset(8, class_names=["cat", "fox"])
    model = tiny_classifier()
    weights = model.get_weights()
    with pytest.raises(
        DataError, match=r"Training classes \['cat', 'dog'\] differ from validation classes \['cat', 'fox'\]"
    ):
        model.fine_tune(train, val, verbose=0)
    assert_untrained(model, weights)


def test_model_and_data_class_mismatch_fails_before_training():
    train, _, _ = image_dataset(8, class_names=["dog", "cat"])
    model = tiny_classifier(class_names=["cat", "dog"])
    with pytest.raises(DataError, match="The model's classes"):
        model.fine_tune(train, verbose=0)
    assert not model.compiled


def test_image_size_mismatch_fails_before_training():
    model = tiny_classifier()
    weights = model.get_weights()
    train, images, labels = image_dataset(8, size=40)
    with pytest.raises(DataError, match="images are 40x40 but the model takes 32x32.*image_size=32"):
        model.fine_tune(train, verbose=0)
    with pytest.raises(DataError, match="images are 40x40 but the model takes 32x32"):
        model.fine_tune((images, labels), verbose=0)
    good, _, _ = image_dataset(8)
    with pytest.raises(DataError, match="images are 40x40"):
        model.fine_tune(good, train, verbose=0)
    assert_untrained(model, weights)


def test_create_takes_a_recipe_and_changes_it_with_options():
    train, _, _ = image_dataset(16, batch_size=8, class_names=["a", "b"])
    recipe = kt.Recipe(head_epochs=2, finetune_epochs=1)
    model, history = kt.ImageClassifier.create(
        train, backbone=tiny_backbone(), preprocessor="unit", recipe=recipe, finetune_epochs=0, verbose=0
    )
    assert model.class_names == ["a", "b"] and model.preprocessor.mode == "unit"
    assert history.head.epoch == [0, 1] and history.finetune is None
    with pytest.raises(TypeError, match="Unknown recipe options \\['head_epoch'\\]"):
        kt.ImageClassifier.create(train, backbone=tiny_backbone(), preprocessor="unit", head_epoch=1)


def test_create_needs_class_names():
    images, labels = image_arrays(8)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    with pytest.raises(ValueError, match="carries no class_names"):
        kt.ImageClassifier.create(dataset, backbone="mobilenet_v2", weights=None, image_size=32)


# --- parity with the plain-Keras recipe -------------------------------------------------------


def test_fine_tune_matches_the_hand_written_keras_recipe():
    train, _, _ = image_dataset(24, batch_size=8)
    unfreeze, lr, lr2 = 0.6, 1e-3, 1e-3
    model = tiny_classifier(preprocessor="mobilenet_v2")

    # The same network written by hand, from the same initial weights.
    base = tiny_backbone(name="hand_backbone")
    base.set_weights(model.backbone.get_weights())
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # mobilenet_v2.preprocess_input
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, activation="softmax")
    hand = keras.Model(inputs, dense(x))
    dense.set_weights(model.get_layer("predictions").get_weights())
    initial = model.backbone.get_weights()

    history = model.fine_tune(
        train,
        head_epochs=1,
        finetune_epochs=1,
        unfreeze=unfreeze,
        head_learning_rate=lr,
        finetune_learning_rate=lr2,
        cache_features=False,  # the guide's recipe runs the whole network every epoch
        verbose=0,
    )

    base.trainable = False
    hand.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    hand_head = hand.fit(train, epochs=1, shuffle=False, verbose=0)
    base.trainable = True
    top = round(unfreeze * len(base.layers))
    for layer in base.layers[: len(base.layers) - top]:
        layer.trainable = False
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    hand.compile(keras.optimizers.RMSprop(lr2), keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    hand_finetune = hand.fit(train, epochs=2, initial_epoch=1, shuffle=False, verbose=0)

    assert [layer.name for layer in base.layers if layer.trainable and layer.weights] == ["conv2", "conv3"]
    assert layer_flags(model) == {layer.name: layer.trainable for layer in base.layers if layer.weights}
    for layer in base.layers:
        for ours, theirs in zip(model.backbone.get_layer(layer.name).get_weights(), layer.get_weights()):
            np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=layer.name)
    for ours, theirs in zip(model.get_layer("predictions").get_weights(), dense.get_weights()):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(history.head.history["loss"], hand_head.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(history.finetune.history["loss"], hand_finetune.history["loss"], rtol=1e-5)
    assert history.finetune.epoch == hand_finetune.epoch == [1]
    # The comparison means something: the unfrozen convs moved, the frozen one did not.
    final = dict(zip([w.path for w in model.backbone.weights], model.backbone.get_weights()))
    start = dict(zip([w.path for w in model.backbone.weights], initial))
    changed = {path.split("/")[-2] for path in final if not np.array_equal(final[path], start[path])}
    assert changed == {"conv2", "conv3"}


# --- distribution -----------------------------------------------------------------------------


def test_create_trains_under_mirrored_strategy(mirrored_strategy):
    strategy = mirrored_strategy
    train, _, _ = image_dataset(16, batch_size=8, class_names=["a", "b"])
    val, _, _ = image_dataset(8, batch_size=8, class_names=["a", "b"], seed=1)
    model, history = kt.ImageClassifier.create(
        train,
        val,
        backbone="mobilenet_v2",
        weights=None,
        image_size=32,
        strategy=strategy,
        head_epochs=1,
        finetune_epochs=1,
        verbose=0,
    )
    assert model.distribute_strategy is strategy
    assert model.class_names == ["a", "b"]
    assert history.head.epoch == [0] and history.finetune.epoch == [1]
    assert np.isfinite(history.merged()["val_loss"]).all()
    kinds = {type(v.value).__name__ for v in model.trainable_variables}
    assert kinds == {"MirroredVariable"}, kinds
    assert all(isinstance(v.value, tf.distribute.DistributedValues) for v in model.optimizer.variables)
