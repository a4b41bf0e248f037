"""Domain adaptation on tiny models: gradient reversal, its schedule, CORAL/MMD, AdaBN, `adapt` for images and text."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import image_arrays, sentiment_texts, tiny_classifier, tiny_text_classifier

import keras_transfer as kt
from keras_transfer.adaptation import domains
from keras_transfer.adaptation.losses import coral_loss, mmd_loss
from keras_transfer.adaptation.methods import MMD_BANDWIDTHS
from keras_transfer.adaptation.reversal import GradientReversal, ReversalSchedule, reversal_weight
from keras_transfer.data.idx import read_idx

# One epoch of each phase over every layer; no caching, so both phases run the model itself.
TINY = dict(
    head_epochs=1,
    finetune_epochs=1,
    unfreeze="all",
    cache_features=False,
    probe_start=False,
    finetune_patience=None,
    finetune_learning_rate=1e-3,
    batch_size=8,
    verbose=0,
)


def darker(images):
    """The target domain of the image tests: the same kind of images, darker and flatter."""
    return np.clip(images * 0.5 + 30.0, 0, 255).astype("float32")


# --- gradient reversal ---------------------------------------------------------


@pytest.mark.parametrize("weight", [1.0, 0.25, 3.0])
def test_gradient_reversal_is_identity_forward_and_reverses_scaled_gradients(weight):
    layer = GradientReversal(weight)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 3)), tf.float32)
    upstream = tf.constant(np.random.default_rng(1).normal(size=(4, 3)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        objective = tf.reduce_sum(y * upstream)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(tape.gradient(objective, x).numpy(), -weight * upstream.numpy(), rtol=1e-6)


def test_gradient_reversal_weight_changes_without_retracing():
    layer = GradientReversal(0.0)
    x = tf.ones((2, 2))

    @tf.function
    def gradient():
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(layer(x))
        return tape.gradient(total, x)

    assert np.all(gradient().numpy() == 0.0)
    layer.weight.assign(0.7)
    np.testing.assert_allclose(gradient().numpy(), -0.7)
    assert gradient.experimental_get_tracing_count() == 1


def test_reversal_weight_follows_ganins_schedule():
    for progress in np.linspace(0, 1, 11):
        assert reversal_weight(progress) == pytest.approx(2 / (1 + np.exp(-10 * progress)) - 1)
    assert reversal_weight(0.0) == 0.0 and reversal_weight(1.0) == pytest.approx(1.0, abs=1e-4)
    assert reversal_weight(0.5, maximum=0.3) == pytest.approx(0.3 * (2 / (1 + np.exp(-5)) - 1))
    assert reversal_weight(-1.0) == 0.0 and reversal_weight(2.0) == reversal_weight(1.0)


def test_reversal_schedule_sets_the_weight_before_each_step():
    layer = GradientReversal(0.0)
    schedule = ReversalSchedule(layer, total_steps=10, maximum=2.0)
    seen = []
    for step in range(10):
        schedule.on_train_batch_begin(step)
        seen.append(float(layer.weight.numpy()))
    np.testing.assert_allclose(seen, [reversal_weight(step / 10, 2.0) for step in range(10)], rtol=1e-6)
    assert seen == sorted(seen) and seen[0] == 0.0


# --- alignment losses ------------------------------------------------------------


def numpy_coral(source, target):
    dimensions = source.shape[1]
    difference = np.cov(source, rowvar=False) - np.cov(target, rowvar=False)
    return np.sum(difference**2) / (4 * dimensions**2)


def numpy_mmd(source, target, bandwidths=MMD_BANDWIDTHS):
    both = np.concatenate([source, target]).astype(np.float64)
    distances = ((both[:, None, :] - both[None, :, :]) ** 2).sum(-1)
    count = len(both)
    scale = distances.sum() / (count * count - count)
    kernel = sum(np.exp(-distances / (bandwidth * scale)) for bandwidth in bandwidths)
    n = len(source)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


def test_coral_and_mmd_match_their_numpy_formulas():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(12, 5)).astype("float32")
    target = (rng.normal(size=(9, 5)) * 2.0 + 1.0).astype("float32")
    assert float(coral_loss(source, target)) == pytest.approx(numpy_coral(source, target), rel=1e-4)
    assert float(mmd_loss(source, target)) == pytest.approx(numpy_mmd(source, target), rel=1e-4)
    assert float(coral_loss(source, source)) == pytest.approx(0.0, abs=1e-7)
    assert float(mmd_loss(source, source)) == pytest.approx(0.0, abs=1e-6)
    # Further apart, larger.
    assert float(mmd_loss(source, target + 3.0)) > float(mmd_loss(source, target))


# --- AdaBN -----------------------------------------------------------------------


def test_adabn_changes_only_batch_norm_statistics_and_sets_them_to_the_targets():
    model = tiny_classifier()
    target, _ = image_arrays(24, seed=3)
    target = darker(target)
    before = {variable.path: np.array(variable) for variable in model.variables}
    assert kt.adapt_batch_norm(model, target, batch_size=8, verbose=0) == 3
    after = {variable.path: np.array(variable) for variable in model.variables}
    changed = sorted(path for path in before if not np.allclose(before[path], after[path]))
    assert changed and all(path.endswith(("moving_mean", "moving_variance")) for path in changed), changed
    # The first BatchNormalization sees conv1's outputs, which no statistic changes: its moving
    # mean and variance are their mean and (per-batch, averaged) variance over the target.
    outputs = keras.Model(model.backbone.inputs, model.backbone.get_layer("conv1").output).predict(
        target / 255.0, verbose=0
    )
    bn1 = model.backbone.get_layer("bn1")
    np.testing.assert_allclose(np.array(bn1.moving_mean), outputs.mean(axis=(0, 1, 2)), rtol=1e-3, atol=1e-4)
    batch_variances = outputs.reshape(3, 8, -1, outputs.shape[-1]).var(axis=(1, 2)).mean(axis=0)
    np.testing.assert_allclose(np.array(bn1.moving_variance), batch_variances, rtol=1e-3, atol=1e-4)
    # Frozen layers stay frozen, BatchNormalization stays in inference mode.
    assert not bn1.trainable and bn1.momentum == 0.99


def test_adabn_refuses_a_model_without_batch_norm():
    model = tiny_text_classifier()
    with pytest.raises(ValueError, match="no BatchNormalization"):
        kt.adapt_batch_norm(model, ["good film"], verbose=0)
    texts, labels = sentiment_texts(1)
    with pytest.raises(ValueError, match="no BatchNormalization"):
        kt.adapt(model, (texts, labels), texts, method="adabn", verbose=0)


# --- adapt ---------------------------------------------------------------------------


def test_adapt_rejects_bad_requests_before_training():
    model = tiny_classifier()
    source = image_arrays(8)
    with pytest.raises(ValueError, match="Unknown adaptation method 'danne'"):
        kt.adapt(model, source, source[0], method="danne")
    with pytest.raises(ValueError, match="finetune_epochs=0"):
        kt.adapt(model, source, source[0], method="coral", finetune_epochs=0)
    with pytest.raises(kt.DataError, match="target data is empty"):
        kt.adapt(model, source, np.zeros((0, 32, 32, 3), "float32"))
    with pytest.raises(kt.DataError, match="32x32"):
        kt.adapt(model, source, (np.zeros((4, 16, 16, 3), "float32"), np.zeros(4, "int32")))


@pytest.mark.parametrize("method", ["dann", "mmd", "adabn"])  # coral: test_target_labels_are_never_used_for_training
def test_adapt_images_reports_both_domains(method):
    source = image_arrays(16, seed=0)
    validation = image_arrays(8, seed=1)
    target_images, target_labels = image_arrays(16, seed=2)
    model = tiny_classifier()
    result = kt.adapt(model, source, (darker(target_images), target_labels), validation, method=method, **TINY)
    assert isinstance(result, kt.AdaptationResult) and result.method == method
    for value in (result.target_accuracy, result.source_only_target_accuracy, result.source_accuracy):
        assert 0.0 <= value <= 1.0
    assert result.target_accuracy == pytest.approx(
        model.evaluate(darker(target_images), target_labels, verbose=0, return_dict=True)["accuracy"]
    )
    if method != "adabn":
        logs = result.history.finetune.history
        assert np.isfinite(logs[f"{method}_loss"]).all() and "val_accuracy" in logs
        assert result.history.head is not None
    summary = result.to_dict()
    assert summary["method"] == method and set(summary) >= {"target_accuracy", "source_only_target_accuracy"}


def test_dann_trains_the_backbone_and_a_domain_classifier_through_reversal():
    model = tiny_classifier()
    trainer = kt.adaptation.AdaptationTrainer(model, "dann", weight=0.5)
    source, labels = image_arrays(8)
    target = darker(source)
    trainer.adaptation_loss(*trainer.domain_features(source, target))  # builds the domain classifier
    paths = [variable.path for variable in trainer.trainable_variables]
    assert len(paths) == len(set(paths))
    assert any("domain_hidden" in path for path in paths) and any("conv1" in path for path in paths)
    # The domain loss's gradient on the backbone is -0.5 times what it would be without reversal.
    conv = model.backbone.get_layer("conv3").kernel

    def domain_gradient(weight):
        trainer.reversal.weight.assign(weight)
        with tf.GradientTape() as tape:
            loss = trainer.adaptation_loss(*trainer.domain_features(source, target))
        return tape.gradient(loss, conv).numpy()

    np.testing.assert_allclose(domain_gradient(0.5), -0.5 * domain_gradient(-1.0), rtol=1e-4, atol=1e-7)


def test_target_labels_are_never_used_for_training():
    source = image_arrays(24, seed=0)
    target_images, target_labels = image_arrays(24, seed=2)
    target_images = darker(target_images)
    weights, accuracies = [], []
    for labels in (target_labels, 1 - target_labels):
        keras.utils.set_random_seed(7)
        model = tiny_classifier()
        result = kt.adapt(model, source, (target_images, labels), method="coral", **{**TINY, "head_epochs": 0})
        weights.append([np.array(variable) for variable in model.weights])
        accuracies.append(result.target_accuracy)
    for first, second in zip(*weights):
        np.testing.assert_array_equal(first, second)
    assert accuracies[0] == pytest.approx(1.0 - accuracies[1])  # the labels only score
    # What the training loop is given: inputs only, whatever form the target takes.
    dataset = tf.data.Dataset.from_tensor_slices((target_images, target_labels)).batch(8)
    for target in ((target_images, target_labels), dataset):
        inputs, labelled = domains.split_target(target)
        assert labelled is target
        spec = domains.unlabelled_batches(tiny_classifier(), inputs, 8).element_spec
        assert isinstance(spec, tf.TensorSpec) and spec.shape[1:] == (32, 32, 3)


def test_adapt_text_with_dann_on_sentences():
    texts, labels = sentiment_texts(2)
    target = [text.replace("film", "movie it was") for text in texts]
    model = tiny_text_classifier()
    result = kt.adapt(model, (texts, labels), (target, labels), method="dann", **{**TINY, "head_epochs": 0})
    assert 0.0 <= result.target_accuracy <= 1.0 and result.source_only_target_accuracy is None
    assert np.isfinite(result.history.finetune.history["dann_loss"]).all()
    assert model.predict(target[:3], verbose=0).shape == (3, 2)


# --- idx files ---------------------------------------------------------------------


def test_read_idx_reads_what_numpy_wrote(tmp_path):
    import gzip

    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as file:
        file.write(bytes([0, 0, 0x08, 3]) + np.array(images.shape, ">u4").tobytes() + images.tobytes())
    np.testing.assert_array_equal(read_idx(path), images)
    bad = tmp_path / "bad"
    bad.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(kt.DataError, match="not an idx file"):
        read_idx(bad)


# --- command line --------------------------------------------------------------------


def test_train_adapts_to_a_target_folder_and_reports_both_accuracies(make_image_folder, tmp_path, capsys):
    from helpers import train_tiny_cli

    source = make_image_folder("source")
    target = make_image_folder("target")
    output = tmp_path / "run"
    code = train_tiny_cli(source, output, "--target-dir", target, "--adapt", "dann", "--json", finetune_epochs=1)
    assert code == 0
    printed = capsys.readouterr().out
    assert "Domain adaptation with DANN: 8 labelled source examples and 8 unlabelled target examples" in printed
    assert "Adaptation epoch 1/1" in printed
    assert "Target accuracy: " in printed and " source-only, " in printed and " after DANN (" in printed
    with open(output / "report.json") as file:
        adaptation = json.load(file)["adaptation"]
    assert adaptation["method"] == "dann" and adaptation["target_examples"] == 8 and adaptation["target_labelled"]
    for key in ("target_accuracy", "source_only_target_accuracy"):
        assert 0.0 <= adaptation[key] <= 1.0
    assert json.loads(printed.strip().splitlines()[-1])["adaptation"]["method"] == "dann"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train-text", "t.csv", "--backbone", "b", "--output", "o", "--adapt", "dann"], "give --target-file FILE"),
        (["train", "d", "--backbone", "b", "--output", "o", "--target-dir", "t", "--resume"], "does not use --resume"),
        (["train", "d", "--backbone", "b", "--output", "o", "--target-dir", "t", "--adapt", "adabn",
          "--adapt-weight", "2"], "adabn has no loss to weigh"),
    ],
)  # fmt: skip
def test_adaptation_options_are_checked_before_any_work(argv, message, capsys, tmp_path, monkeypatch):
    from keras_transfer.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


def test_train_text_offers_no_adabn():
    from keras_transfer.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train-text", "t.csv", "--backbone", "b", "--output", "o", "--adapt", "adabn"])
    args = build_parser().parse_args(
        ["train-text", "t.csv", "--backbone", "b", "--output", "o", "--target-file", "y.txt", "--adapt", "coral",
         "--target-text-column", "0", "--target-label-column", "1"]
    )  # fmt: skip
    assert (args.adapt, args.target_text_column, args.target_label_column) == ("coral", "0", "1")


@pytest.mark.integration
def test_train_text_adapts_sst2_to_yelp_on_the_real_backbone(assets_dir, tmp_path, capsys):
    from keras_transfer.cli import main

    output = tmp_path / "run"
    code = main(
        ["train-text", os.path.join(assets_dir, "text", "sst2", "train.tsv"), "--text-column", "sentence",
         "--label-column", "label", "--max-examples", "160", "--backbone",
         os.path.join(assets_dir, "keras-hub", "all-MiniLM-L6-v2"), "--recipe", "lora", "--head-epochs", "1",
         "--epochs", "1", "--target-file", os.path.join(assets_dir, "text", "yelp_sentences", "yelp_labelled.txt"),
         "--target-text-column", "0", "--target-label-column", "1", "--adapt", "coral", "--output", str(output)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Adaptation (CORAL): trains LoRA adapters (rank 8) and the head" in printed
    with open(output / "report.json") as file:
        adaptation = json.load(file)["adaptation"]
    assert adaptation["target_examples"] == 160 and adaptation["target_labelled"]
    # 160 sentences and one epoch of each phase: above chance on Yelp after adaptation.
    assert adaptation["target_accuracy"] > 0.6 and 0.0 < adaptation["source_only_target_accuracy"] < 1.0


@pytest.mark.integration
def test_mmd_adapts_digits_to_mnist(assets_dir):
    from sklearn.datasets import load_digits

    digits = load_digits()
    source = tf.image.resize(digits.images[..., None] / 16.0 * 255.0, (28, 28)).numpy().astype("float32")
    folder = os.path.join(assets_dir, "images", "mnist_t10k")
    target = read_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"))[:600, ..., None].astype("float32")
    labels = read_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"))[:600].astype("int32")
    accuracies = {}
    for method in ("source only", "mmd"):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((28, 28, 1))
        x = inputs
        for filters in (32, 64, 128):  # benchmarks/domain_adaptation.py's small CNN
            x = keras.layers.Conv2D(filters, 3, padding="same")(x)
            x = keras.layers.BatchNormalization(momentum=0.9)(x)
            x = keras.layers.ReLU()(x)
            x = keras.layers.MaxPooling2D()(x)
        model = kt.ImageClassifier(keras.Model(inputs, x), num_classes=10, preprocessor="unit", train_batch_norm=True)
        recipe = kt.Recipe(head_epochs=0, finetune_epochs=6, unfreeze="all", finetune_optimizer="adam",
                           finetune_learning_rate=1e-3)  # fmt: skip
        if method == "mmd":
            result = kt.adapt(model, (source, digits.target), (target, labels), method="mmd", recipe=recipe,
                              batch_size=64, verbose=0)  # fmt: skip
            accuracies[method] = result.target_accuracy
        else:
            model.fine_tune((source, digits.target), recipe=recipe, batch_size=64, verbose=0)
            accuracies[method] = model.evaluate(target, labels, verbose=0, return_dict=True)["accuracy"]
    assert accuracies["mmd"] >= accuracies["source only"] + 0.05, accuracies
