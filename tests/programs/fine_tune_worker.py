"""One worker of the multi-worker tests (or the single-process reference, without TF_CONFIG).

python fine_tune_worker.py IMAGE_FOLDER|text OUT_DIR [--cache] [--epochs H,F] [--backup DIR] [--no-shuffle]
    [--slow-epochs SECONDS]

Fine-tunes a tiny two-layer convolutional backbone on IMAGE_FOLDER (no
dropout: nothing random but the seeded data order) and writes, from the
chief, `weights.npz` and `history.json` to OUT_DIR; every worker writes
`worker-<i>.json` with its final validation accuracy. With `text` in place of
the folder, a tiny text classifier (see `_text`).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("images")
    parser.add_argument("out")
    parser.add_argument("--cache", action="store_true")
    parser.add_argument("--epochs", default="2,1")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--backup")
    parser.add_argument("--no-shuffle", action="store_true", help="the same order every epoch")
    parser.add_argument("--slow-epochs", type=float, default=0.0, help="seconds to sleep after each epoch")
    args = parser.parse_args()

    import keras_transfer as kt

    strategy = kt.distribute.multi_worker_strategy() if os.environ.get("TF_CONFIG") else None
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(7)
    if args.images == "text":
        return _text(args, kt, strategy)
    train, validation = kt.data.image_folder(
        args.images,
        image_size=32,
        batch_size=args.batch_size,
        validation_split=0.25,
        seed=3,
        shuffle=not args.no_shuffle,
    )
    with (strategy or tf.distribute.get_strategy()).scope():
        inputs = keras.Input((32, 32, 3))
        hidden = keras.layers.Rescaling(1 / 255.0)(inputs)
        hidden = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(hidden)
        hidden = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(hidden)
        backbone = keras.Model(inputs, hidden, name="tiny")
        model = kt.ImageClassifier(backbone, head=kt.Head.multiclass(2, dropout=0.0), class_names=train.class_names)
    head_epochs, finetune_epochs = (int(value) for value in args.epochs.split(","))
    recipe = kt.IMAGE_RECIPE.replace(
        head_epochs=head_epochs,
        finetune_epochs=finetune_epochs,
        cache_features=args.cache,
        head_learning_rate=1e-2,
        finetune_learning_rate=1e-3,
    )
    slow = [keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: time.sleep(args.slow_epochs))]
    history = model.fine_tune(
        train, validation, recipe, backup_dir=args.backup, callbacks=slow if args.slow_epochs else (), verbose=0
    )
    report = model.evaluate_report(validation)
    index = kt.distribute.worker_index(strategy)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"worker-{index}.json"), "w") as file:
        json.dump({"accuracy": report.accuracy, "workers": kt.distribute.worker_count(strategy)}, file)
    if kt.distribute.is_chief(strategy):
        np.savez(os.path.join(args.out, "weights.npz"), *model.get_weights())
        with open(os.path.join(args.out, "history.json"), "w") as file:
            json.dump(history.merged(), file)


def _text(args, kt, strategy):
    """A tiny random BERT on toy sentences (bucketed by length, tokenized after the split): every worker ends
    with the same weights, and the chief writes them."""
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from helpers import sentiment_texts, tiny_bert

    texts, labels = sentiment_texts(repeats=8)
    train, validation = kt.data.from_texts(
        texts, labels, validation_split=0.25, batch_size=args.batch_size, seed=3, class_names=["negative", "positive"]
    )
    with (strategy or tf.distribute.get_strategy()).scope():
        backbone, preprocessor = tiny_bert()
        model = kt.TextClassifier(backbone, preprocessor=preprocessor, class_names=train.class_names)
    head_epochs, finetune_epochs = (int(value) for value in args.epochs.split(","))
    recipe = kt.TEXT_RECIPE.replace(head_epochs=head_epochs, finetune_epochs=finetune_epochs, head_learning_rate=1e-2)
    model.fine_tune(train, validation, recipe, verbose=0)
    report = model.evaluate_report(validation)
    index = kt.distribute.worker_index(strategy)
    os.makedirs(args.out, exist_ok=True)
    np.savez(os.path.join(args.out, f"weights-{index}.npz"), *model.get_weights())
    with open(os.path.join(args.out, f"worker-{index}.json"), "w") as file:
        json.dump({"accuracy": report.accuracy, "workers": kt.distribute.worker_count(strategy)}, file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
