"""The embedded demo: source_model -> target_model transfer on real handwritten digits.

Runs offline in about a minute on two CPU cores. The data is scikit-learn's
handwritten digits (1,797 real 8x8 scans, shipped inside scikit-learn). A small
CNN learns the source task, digits 0-4, from all their training examples plus
randomly shifted, rotated and rescaled copies of them, so that its
convolutional features generalise beyond the exact source images. The target
task is digits 5-9 with only a few labelled examples per class (3 by default):
one model starts from the source model's convolutional weights (transfer: a
head trained on the frozen features, then a gentle fine-tune of everything at
a lower learning rate), an identical one from random weights (scratch:
everything trained with Adam at 1e-3 for the same total number of epochs).
Neither sees augmented target images. Both are scored on the same held-out
5-9s, averaged over several seeds (one few-shot draw and initialisation per
seed).
"""

import time

import keras
import numpy as np

from keras_transfer.finetune.recipes import GUIDE_RECIPE
from keras_transfer.finetune.weight_transfer import transfer_weights
from keras_transfer.models.heads import Head
from keras_transfer.models.image_classifier import ImageClassifier

SOURCE_DIGITS = (0, 1, 2, 3, 4)
_REPEATS = 4
TARGET_DIGITS = (5, 6, 7, 8, 9)
# Transfer: the head on the frozen transferred features, then a gentle fine-tune of everything.
TRANSFER_RECIPE = GUIDE_RECIPE.replace(
    unfreeze="all", head_learning_rate=3e-3, finetune_optimizer="adam", finetune_learning_rate=3e-4
)
# Scratch: everything trains from the start, at Adam's usual rate.
SCRATCH_RECIPE = GUIDE_RECIPE.replace(
    head_epochs=0, unfreeze="all", finetune_optimizer="adam", finetune_learning_rate=1e-3
)


def load_digits():
    """scikit-learn's digits as raw pixels in [0, 255], shape (N, 8, 8, 1)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = digits.images[..., None].astype("float32") * (255.0 / 16.0)
    return images, digits.target


def augment(images, rng, copies):
    """`copies` random affine variants of each image: shift up to 0.8 px, rotation
    up to 12 degrees, scale 0.9-1.1 (bilinear, zero fill). Shape (copies*N, 8, 8, 1)."""
    from scipy import ndimage

    height, width = images.shape[1:3]
    center = np.array([(height - 1) / 2, (width - 1) / 2])
    out = []
    for _ in range(copies):
        for image in images[..., 0]:
            angle = np.deg2rad(rng.uniform(-12, 12))
            matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / rng.uniform(0.9, 1.1)
            offset = center - matrix @ center + rng.uniform(-0.8, 0.8, 2)
            out.append(ndimage.affine_transform(image, matrix, offset, order=1, mode="constant"))
    return np.stack(out)[..., None].astype("float32")


def small_cnn():
    """The shared architecture: a backbone of three conv layers for 8x8 images."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    return keras.Model(inputs, x, name="digits_cnn")


def _classifier(num_classes):
    return ImageClassifier(
        small_cnn(),
        head=Head.multiclass(num_classes, pooling="flatten", dropout=0.3),
        preprocessor="unit",
    )


def _subset(images, labels, digits):
    keep = np.isin(labels, digits)
    # Relabel to 0..K-1 for the task's own head.
    return images[keep], np.searchsorted(digits, labels[keep])


def _few_shot_split(labels, shots, rng):
    train = np.concatenate([rng.choice(np.flatnonzero(labels == c), shots, replace=False) for c in np.unique(labels)])
    test = np.setdiff1d(np.arange(len(labels)), train)
    return train, test


def _accuracy(model, images, labels):
    predicted, _ = model.predict_classes(images, batch_size=256)
    return float(np.mean(predicted == labels))


def run_demo(
    *, shots_per_class=3, seeds=(0, 1, 2), source_epochs=15, source_augment_copies=3, target_epochs=20, verbose=1
):
    """Pretrains on digits 0-4, transfers to few-shot 5-9, and compares with scratch.

    Args:
        shots_per_class: labelled target examples per class.
        seeds: one few-shot draw and initialisation per seed; results are averaged.
        source_epochs: epochs on the (augmented) source task.
        source_augment_copies: augmented copies of each source training image.
        target_epochs: epochs on the target task (over the few examples repeated
            4 times), for both contenders.
        verbose: 1 prints progress lines, 0 prints nothing.

    Returns:
        A dict with `transfer_accuracy`, `scratch_accuracy` (means over seeds),
        their per-seed lists, `source_accuracy`, sizes and `seconds`.
    """
    start = time.perf_counter()
    say = print if verbose else (lambda *args, **kwargs: None)
    images, labels = load_digits()
    source_x, source_y = _subset(images, labels, SOURCE_DIGITS)
    target_x, target_y = _subset(images, labels, TARGET_DIGITS)

    keras.utils.set_random_seed(1234)
    source_order = np.random.default_rng(1234).permutation(len(source_y))
    source_x, source_y = source_x[source_order], source_y[source_order]
    holdout = len(source_y) // 5
    source = _classifier(len(SOURCE_DIGITS))
    # The source model learns everything: its backbone is trained, not frozen.
    train_x, train_y = source_x[holdout:], source_y[holdout:]
    if source_augment_copies:
        extra = augment(train_x, np.random.default_rng(0), source_augment_copies)
        train_x = np.concatenate([train_x, extra])
        train_y = np.concatenate([train_y] * (source_augment_copies + 1))
    source.compile("adam", learning_rate=1e-3)
    source.fit(train_x, train_y, epochs=source_epochs, batch_size=64, verbose=0)
    source_accuracy = _accuracy(source, source_x[:holdout], source_y[:holdout])
    say(
        f"source task, digits 0-4: {len(source_y) - holdout} training images "
        f"(+{len(train_y) - (len(source_y) - holdout)} augmented copies), "
        f"held-out accuracy {source_accuracy:.3f}"
    )

    transfer_scores, scratch_scores = [], []
    for seed in seeds:
        train, test = _few_shot_split(target_y, shots_per_class, np.random.default_rng(seed))
        # The few examples repeated, so an epoch is several batches: the same
        # training as more one-batch epochs, with less per-epoch overhead.
        few_shot = (np.tile(target_x[train], (_REPEATS, 1, 1, 1)), np.tile(target_y[train], _REPEATS))

        keras.utils.set_random_seed(seed)
        transfer = _classifier(len(TARGET_DIGITS))
        report = transfer_weights(source.backbone, transfer.backbone)
        # Head on the frozen transferred features first, then a gentle fine-tune.
        transfer.fine_tune(
            few_shot,
            recipe=TRANSFER_RECIPE,
            head_epochs=target_epochs // 2,
            finetune_epochs=target_epochs // 2,
            batch_size=16,
            verbose=0,
        )
        keras.utils.set_random_seed(seed)
        scratch = _classifier(len(TARGET_DIGITS))
        scratch.fine_tune(few_shot, recipe=SCRATCH_RECIPE, finetune_epochs=target_epochs, batch_size=16, verbose=0)
        transfer_scores.append(_accuracy(transfer, target_x[test], target_y[test]))
        scratch_scores.append(_accuracy(scratch, target_x[test], target_y[test]))
        say(
            f"seed {seed}: copied {len(report.copied)} layers; target accuracy on "
            f"{len(test)} held-out 5-9s: transfer {transfer_scores[-1]:.3f}, "
            f"scratch {scratch_scores[-1]:.3f}"
        )

    return {
        "transfer_accuracy": float(np.mean(transfer_scores)),
        "scratch_accuracy": float(np.mean(scratch_scores)),
        "transfer_accuracy_per_seed": transfer_scores,
        "scratch_accuracy_per_seed": scratch_scores,
        "source_accuracy": source_accuracy,
        "shots_per_class": shots_per_class,
        "target_test_examples": int(len(target_y) - shots_per_class * len(TARGET_DIGITS)),
        "seeds": list(seeds),
        "seconds": round(time.perf_counter() - start, 1),
    }


def format_demo(result):
    """The side-by-side table the command line prints."""
    width = 28
    return "\n".join(
        [
            f"Digits 5-9 with {result['shots_per_class']} labelled images per class, "
            f"scored on {result['target_test_examples']} held-out images "
            f"(mean of {len(result['seeds'])} seeds):",
            f"  {'transfer from digits 0-4':<{width}} {result['transfer_accuracy']:.3f}",
            f"  {'from scratch':<{width}} {result['scratch_accuracy']:.3f}",
            f"  {'source model on 0-4':<{width}} {result['source_accuracy']:.3f}",
            f"Finished in {result['seconds']:.0f} s.",
        ]
    )
