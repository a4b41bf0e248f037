"""Optimizers, callbacks and histories for the fine-tuning recipes."""

import dataclasses
import os

import keras

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    # Momentum is what makes plain SGD usable for fine-tuning.
    "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
}


def make_optimizer(optimizer="adam", learning_rate=None):
    """Returns a new optimizer from a name or a copy of an optimizer instance.

    Args:
        optimizer: `"adam"`, `"rmsprop"`, `"sgd"` (with momentum 0.9) or a
            `keras.optimizers.Optimizer`, which is copied with its settings.
        learning_rate: overrides the learning rate; defaults to 1e-3 for names.
    """
    if isinstance(optimizer, keras.optimizers.Optimizer):
        config = optimizer.get_config()
        if learning_rate is not None:
            config["learning_rate"] = learning_rate
        return type(optimizer).from_config(config)
    key = str(optimizer).lower()
    if key not in OPTIMIZERS:
        raise ValueError(
            f"Unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)} "
            "or pass a keras.optimizers.Optimizer."
        )
    return OPTIMIZERS[key](learning_rate=1e-3 if learning_rate is None else learning_rate)


def phase_callbacks(phase, *, has_validation, early_stopping=None, checkpoint_dir=None):
    """Fresh early-stopping and checkpoint callbacks for one training phase.

    Args:
        phase: the phase's name, used in the checkpoint's file name.
        has_validation: monitor `val_loss` when there is validation data.
        early_stopping: patience in epochs, or None for no early stopping.
        checkpoint_dir: where to save `best_<phase>.keras`, or None.
    """
    monitor = "val_loss" if has_validation else "loss"
    callbacks = []
    if early_stopping is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=int(early_stopping), restore_best_weights=True
            )
        )
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(checkpoint_dir, f"best_{phase}.keras"),
                monitor=monitor,
                save_best_only=True,
            )
        )
    return callbacks


@dataclasses.dataclass
class FineTuneHistory:
    """The histories of both phases of `ImageClassifier.fine_tune`.

    `head` is the frozen-backbone phase, `finetune` the unfrozen phase (None
    when it did not run); `seconds` holds each phase's wall time.
    """

    head: keras.callbacks.History | None
    finetune: keras.callbacks.History | None
    seconds: dict

    @property
    def phases(self):
        """`(name, History)` pairs of the phases that ran."""
        return [(name, history) for name, history in
                (("head", self.head), ("finetune", self.finetune)) if history is not None]

    def merged(self):
        """One `{metric: [values]}` dict over both phases, epochs in order."""
        merged = {}
        for _, history in self.phases:
            for key, values in history.history.items():
                merged.setdefault(key, []).extend(float(v) for v in values)
        return merged
