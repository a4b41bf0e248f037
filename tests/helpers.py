"""Shared by the keras_transfer tests: tiny backbones, models and data, and the common checks
(`run_serialization_test`, `run_export_test`, `run_fit_test`).
"""

import os

import keras
import numpy as np

import keras_transfer as kt

# Layer names of `tiny_backbone`, bottom to top (model.layers also lists the input).
TINY_LAYERS = ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "relu3"]


def tiny_backbone(size=32, name="tiny_backbone"):
    """A headless CNN with BatchNormalization, fast enough to train in a second."""
    inputs = keras.Input((size, size, 3), name="tiny_input")
    x = inputs
    for index, (filters, strides) in enumerate([(8, 2), (8, 2), (16, 1)], start=1):
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", name=f"conv{index}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
    return keras.Model(inputs, x, name=name)


def tiny_classifier(num_classes=2, *, size=32, head=None, class_names=None, preprocessor="unit"):
    """An `ImageClassifier` on `tiny_backbone`, taking raw pixels in [0, 255]."""
    if head is None:
        head = kt.Head.multiclass(num_classes, dropout=0.0)
    return kt.ImageClassifier(tiny_backbone(size), head=head, class_names=class_names, preprocessor=preprocessor)


def image_arrays(n=16, size=32, num_classes=2, seed=0):
    """Raw-pixel images whose brightness depends on the class, and int labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    base = 40 + 170 * labels / max(1, num_classes - 1)
    images = rng.normal(base[:, None, None, None], 25, (n, size, size, 3))
    return np.clip(images, 0, 255).astype("float32"), labels.astype("int32")


def image_dataset(n=16, size=32, num_classes=2, class_names=None, batch_size=8, shuffle=False, seed=0):
    """A `kt.data.from_arrays` dataset (unshuffled by default) and its arrays."""
    images, labels = image_arrays(n, size, num_classes, seed)
    names = class_names or [f"class_{i}" for i in range(num_classes)]
    dataset = kt.data.from_arrays(images, labels, class_names=names, batch_size=batch_size, shuffle=shuffle, seed=seed)
    return dataset, images, labels


def trained_tiny_classifier():
    """A two-class `tiny_classifier` trained two epochs on brightness-separated images: `(model, dataset,
    images, labels)` of 48 examples, for the export tests that need a model that tells classes apart."""
    model = tiny_classifier(2, class_names=["dark", "bright"])
    dataset, images, labels = image_dataset(48, num_classes=2, batch_size=8)
    model.compile()
    model.fit(images, labels, epochs=2, verbose=0)
    return model, dataset, images, labels


def weights_by_layer(model):
    """`{layer name: [arrays]}` for the layers of `model` that hold weights."""
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def same_weights(first, second, atol=0.0):
    return len(first) == len(second) and all(np.allclose(a, b, atol=atol, rtol=0) for a, b in zip(first, second))


# A vocabulary small enough for a two-layer BERT to learn toy sentiment.
TINY_WORDS = "good great fine love best nice bad awful hate worst dull poor film movie plot the a it was is".split()
TINY_VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]


def tiny_bert(seed=0):
    """A randomly initialised 2-layer BERT (hidden 32) and its preprocessor."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(TINY_VOCABULARY),
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=32,
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=TINY_VOCABULARY)
    return backbone, keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=16)


def tiny_text_classifier(num_classes=2, *, head=None, class_names=None, pooling="auto", seed=0):
    """A `TextClassifier` on `tiny_bert`."""
    backbone, preprocessor = tiny_bert(seed)
    if head is None:
        head = kt.Head.multiclass(num_classes, dropout=0.0)
    return kt.TextClassifier(backbone, preprocessor=preprocessor, head=head, class_names=class_names, pooling=pooling)


def sentiment_texts(repeats=4):
    """Toy sentences whose label is their sentiment word's: 1 positive, 0 negative."""
    positive = ["good film", "great movie", "the best plot", "love it", "nice film", "it was fine"]
    negative = ["bad film", "awful movie", "the worst plot", "hate it", "dull film", "it was poor"]
    texts = (positive + negative) * repeats
    labels = ([1] * len(positive) + [0] * len(negative)) * repeats
    return texts, np.array(labels, dtype="int32")


# --- shared checks, in the manner of keras-hub's TestCase ---------------------


def run_serialization_test(model, inputs, path, *, atol=1e-6, compile=True, check_trainable=True):
    """Saves `model` to `path` (a `.keras` file), loads it, and checks what must survive.

    Same class, predictions, class names, head, and (with `check_trainable`)
    the same trainable flags and trainable weights: frozen stays frozen.
    Keras folds LoRA adapters into the kernels when it saves, so a LoRA model
    loads without them: check it with `check_trainable=False`. Returns the
    loaded model.
    """
    model.save(path)
    restored = keras.saving.load_model(path, compile=compile)
    assert type(restored) is type(model)
    np.testing.assert_allclose(restored.predict(inputs, verbose=0), model.predict(inputs, verbose=0), atol=atol)
    for attribute in ("class_names", "head", "image_size", "pooling", "sequence_length"):
        if hasattr(model, attribute):
            assert getattr(restored, attribute) == getattr(model, attribute), attribute
    if not check_trainable:
        return restored
    assert [w.path for w in restored.trainable_weights] == [w.path for w in model.trainable_weights]
    if hasattr(model, "backbone"):
        assert restored.backbone.trainable == model.backbone.trainable

        def flags(task):
            return {layer.name: layer.trainable for layer in task.backbone.layers if layer.weights}

        assert flags(restored) == flags(model)
    return restored


def run_export_test(model, inputs, path, *, quantization="none", labels=None, min_agreement=1.0, atol=None, **options):
    """Exports `model` with `kt.export_model`, runs it in LiteRT (or TF) and checks it against Keras.

    Returns the `ExportResult`.
    """
    check_data = inputs if labels is None else (inputs, labels)
    result = kt.export_model(model, path, quantization=quantization, check_data=check_data, **options)
    assert os.path.exists(result.path) and result.size_bytes > 0
    assert os.path.isfile(result.metadata_path)
    check = result.check
    assert check.num_examples == len(labels if labels is not None else next(iter(_rows(inputs))))
    if check.top1_agreement is not None:
        assert check.top1_agreement >= min_agreement, check
    if atol is not None:
        assert check.max_abs_difference <= atol, check
    return result


def _rows(inputs):
    return [inputs] if not isinstance(inputs, dict) else [next(iter(inputs.values()))]


def run_fit_test(model, inputs, labels, *, batch_size=8, epochs=1):
    """`fit` on arrays and on a batched `tf.data.Dataset` of the same examples: both train.

    Returns the two histories (arrays first).
    """
    import tensorflow as tf

    if not model.compiled:
        model.compile()
    before = [np.array(w) for w in model.trainable_weights]
    on_arrays = model.fit(inputs, labels, batch_size=batch_size, epochs=epochs, verbose=0)
    after_arrays = [np.array(w) for w in model.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after_arrays)), "fit on arrays changed nothing"
    texts = isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)
    dataset = tf.data.Dataset.from_tensor_slices((list(inputs) if texts else inputs, labels)).batch(batch_size)
    on_dataset = model.fit(dataset, epochs=epochs, verbose=0)
    after_dataset = [np.array(w) for w in model.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(after_arrays, after_dataset)), (
        "fit on a dataset changed nothing"
    )
    for history in (on_arrays, on_dataset):
        assert all(np.isfinite(history.history["loss"]))
    return on_arrays, on_dataset


# The files of a finished `train` run folder (the manifest first).
RUN_FILES = [".keras-transfer.json", "confusion_matrix.png", "model.keras", "report.json", "training_curves.png"]


# `keras-transfer train`'s options for a 32-px untrained MobileNetV2.
TINY_TRAIN_OPTIONS = ["--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32"]


def train_tiny_cli(images, output, *extra, head_epochs=1, finetune_epochs=0):
    """`keras-transfer train` on a 32-px untrained MobileNetV2: its exit code."""
    from keras_transfer.cli import main

    return main(
        ["train", images, *TINY_TRAIN_OPTIONS,
         "--head-epochs", str(head_epochs), "--finetune-epochs", str(finetune_epochs), "--batch-size", "4",
         "--output", str(output), *extra]
    )  # fmt: skip


class WeightSnapshots(keras.callbacks.Callback):
    """The model's weights at the end of every epoch, in `weights`."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())
