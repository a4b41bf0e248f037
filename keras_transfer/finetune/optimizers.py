"""Optimizers by name, for the fine-tuning recipes."""

import keras

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
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
            f"Unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)} or pass a keras.optimizers.Optimizer."
        )
    return OPTIMIZERS[key](learning_rate=1e-3 if learning_rate is None else learning_rate)
