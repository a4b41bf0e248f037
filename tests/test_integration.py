"""Integration: real ImageNet MobileNetV2 weights on real cats-vs-dogs photos.

Uses the offline assets (KERAS_TRANSFER_ASSETS, or ../shared/assets): run
../shared/bin/install-offline-assets first so that weights="imagenet" loads offline.
"""

import os

import numpy as np
import pytest

import keras_transfer as kt

PER_CLASS = 100
IMAGE_SIZE = 160
# Two head epochs and one fine-tuning epoch; validation is scored once at the end
# (not after every epoch) to keep the test near a minute on two CPU cores.
RECIPE = dict(
    head_epochs=2, finetune_epochs=1, unfreeze=10, head_learning_rate=2e-3, finetune_learning_rate=1e-5, verbose=0
)


@pytest.fixture(scope="module")
def cats_and_dogs(assets_dir, tmp_path_factory):
    """100 cats + 100 dogs from train/ and as many from validation/, as symlinks."""
    source = os.path.join(assets_dir, "images", "cats_and_dogs_filtered")
    root = tmp_path_factory.mktemp("cats_and_dogs")
    for split in ("train", "validation"):
        for animal in ("cats", "dogs"):
            folder = os.path.join(source, split, animal)
            if not os.path.isdir(folder):
                pytest.fail(f"Missing {folder}: the offline assets are incomplete.", pytrace=False)
            files = sorted(f for f in os.listdir(folder) if f.endswith(".jpg"))[:PER_CLASS]
            assert len(files) == PER_CLASS
            target = root / split / animal
            target.mkdir(parents=True)
            for name in files:
                os.symlink(os.path.join(folder, name), target / name)
    return str(root / "train"), str(root / "validation")


def train_and_score(train_dir, val_dir, weights):
    train, val = kt.data.image_folder(
        train_dir, validation_dir=val_dir, image_size=IMAGE_SIZE, batch_size=32, cache=True
    )
    assert train.num_examples == val.num_examples == 2 * PER_CLASS
    model = kt.ImageClassifier("mobilenet_v2", weights=weights, image_size=IMAGE_SIZE, class_names=train.class_names)
    history = model.fine_tune(train, **RECIPE)
    assert history.head.epoch == [0, 1] and history.finetune.epoch == [2]
    assert np.isfinite(history.merged()["loss"]).all()
    _, accuracy = model.evaluate(val, verbose=0)
    return model, accuracy


@pytest.fixture(scope="module")
def pretrained(cats_and_dogs):
    """ImageNet MobileNetV2 fine-tuned briefly on the subset, and its validation accuracy."""
    return train_and_score(*cats_and_dogs, "imagenet")


@pytest.mark.integration
def test_imagenet_mobilenet_v2_beats_random_weights_on_cats_and_dogs(cats_and_dogs, pretrained):
    train_dir, val_dir = cats_and_dogs
    pretrained, pretrained_accuracy = pretrained
    _, random_accuracy = train_and_score(train_dir, val_dir, None)
    print(
        f"\ncats vs dogs, {2 * PER_CLASS} train / {2 * PER_CLASS} validation images at "
        f"{IMAGE_SIZE}px: ImageNet MobileNetV2 val accuracy {pretrained_accuracy:.3f}, "
        f"random weights {random_accuracy:.3f}"
    )
    assert pretrained.class_names == ["cats", "dogs"]
    assert pretrained_accuracy >= 0.85
    assert pretrained_accuracy >= random_accuracy + 0.2


@pytest.mark.integration
def test_int8_export_of_the_fine_tuned_model_agrees_and_is_small(cats_and_dogs, pretrained, tmp_path):
    train_dir, val_dir = cats_and_dogs
    model, _ = pretrained
    # Shuffled training images: calibration must see both classes (an unshuffled folder's
    # first batches are all cats).
    train = kt.data.image_folder(train_dir, image_size=IMAGE_SIZE, batch_size=32, shuffle=True)
    val = kt.data.image_folder(val_dir, image_size=IMAGE_SIZE, batch_size=32, shuffle=False)
    float32 = kt.export_model(model, tmp_path / "float32.tflite")
    int8 = kt.export_model(
        model, tmp_path / "int8.tflite", check_data=val, quantization=kt.Quantization.int8(train, num_samples=100)
    )
    check = int8.check
    print(
        f"\nint8 TFLite: {int8.size_bytes / 1e6:.2f} MB ({int8.size_bytes / float32.size_bytes:.3f}x "
        f"float32), top-1 agreement {check.top1_agreement:.3f} on {check.num_examples} validation "
        f"images, accuracy {check.accuracy_exported:.3f} vs Keras {check.accuracy_keras:.3f}"
    )
    assert check.num_examples == 2 * PER_CLASS
    assert check.top1_agreement >= 0.97
    assert int8.size_bytes < 0.32 * float32.size_bytes


def test_cached_features_train_an_accurate_head_and_progressive_fine_tuning_keeps_it(cats_and_dogs):
    """The fast recipe on real weights: head on cached features, then one-cycle fine-tuning
    with progressive unfreezing and layer-wise rates (the strategies of benchmarks/fine_tuning.py)."""
    train, val = kt.data.image_folder(
        cats_and_dogs[0], validation_dir=cats_and_dogs[1], image_size=IMAGE_SIZE, batch_size=32
    )
    model = kt.ImageClassifier("mobilenet_v2", weights="imagenet", image_size=IMAGE_SIZE, class_names=train.class_names)
    unfreezing = kt.ProgressiveUnfreezing(blocks_per_epoch=2, initial_blocks=1)
    history = model.fine_tune(
        train,
        val,
        head_epochs=5,
        finetune_epochs=1,
        cache_features=True,
        schedule="one_cycle",
        layer_decay=0.7,
        unfreeze=unfreezing,
        head_learning_rate=3e-3,
        finetune_learning_rate=1e-4,
        verbose=0,
    )
    head_accuracy = history.head.history["val_accuracy"][-1]
    assert head_accuracy >= 0.90, head_accuracy  # 0.92 measured; random weights give 0.5
    assert history.seconds["head_features"] < history.seconds["head"]
    assert unfreezing.unfrozen_layers[5][0] == "Conv_1"
    _, accuracy = model.evaluate(val, verbose=0)
    assert accuracy >= head_accuracy - 0.03, (accuracy, head_accuracy)
