"""Fine-tuning recipes: every option of a training run and its default, defined once.

A `Recipe` is plain data (in the manner of MediaPipe Model Maker's `HParams`):
`fine_tune`, `create`, the command line, the benchmarks and the tutorials all
read their defaults from the recipes here, and `recipe.replace(...)` changes a
few options of one without restating the rest. This module imports no
TensorFlow, so the command line can show the defaults in `--help` quickly.

>>> IMAGE_RECIPE.finetune_learning_rate
1e-05
>>> text_recipe("lora", epochs=2).finetune_epochs
2
"""

import dataclasses
import numbers

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("one_cycle", "warmup_cosine")
# What trains in a text recipe: the whole network, the head alone on the
# frozen backbone, or LoRA adapters and the head.
TEXT_RECIPE_NAMES = ("full", "frozen", "lora")
DEFAULT_LORA_RANK = 8


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def _check_unfreeze(unfreeze):
    if isinstance(unfreeze, bool):
        raise ValueError(f"unfreeze must be a count, a fraction, a layer name or 'all', not {unfreeze!r}.")
    if isinstance(unfreeze, numbers.Integral) and unfreeze < 0:
        raise ValueError(f"unfreeze={unfreeze}: give a count of layers >= 0 from the top.")
    if isinstance(unfreeze, float) and not 0.0 < unfreeze <= 1.0:
        raise ValueError(f"unfreeze={unfreeze}: a fraction of the backbone's layers must be in (0, 1].")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Two-phase fine-tuning: a head on the frozen backbone, then the top of the backbone.

    Attributes:
        head_epochs: epochs of the frozen-backbone phase (0 skips it).
        finetune_epochs: epochs of the fine-tuning phase (0 skips it).
        unfreeze: how much of the backbone fine-tunes: a count of layers from
            the top (int), a fraction of its layers (float in (0, 1]), a layer
            name (that layer and all above it) or `"all"`. `fine_tune` also
            takes a `ProgressiveUnfreezing` callback here.
        optimizer: optimizer of the head phase (a name or an instance).
        finetune_optimizer: optimizer of the fine-tuning phase.
        head_learning_rate: learning rate of the head phase.
        finetune_learning_rate: learning rate of the fine-tuning phase.
        schedule: None for constant rates, `"one_cycle"` or `"warmup_cosine"`
            (one cycle per phase, peaking at the phase's rate).
        layer_decay: in (0, 1]: each backbone block below the top fine-tunes
            at this times the rate of the block above it; None for one rate.
        early_stopping: patience in epochs (restoring the best weights), or None.
        cache_features: train the head phase on the frozen backbone's features,
            computed once: True in memory, or a folder for an on-disk cache.
        cached_copies: augmented passes over the data to cache.
        lora_rank: with a rank, the fine-tuning phase trains LoRA adapters of
            this rank (and the head) instead of the backbone's weights.
        finetune_patience: with validation data, fine-tuning stops after this
            many epochs in a row that beat no earlier epoch of either phase
            (the best epoch's weights are kept either way); 0 or None runs
            every fine-tuning epoch.
        probe_start: with `cache_features`, the head phase starts from a
            logistic regression solved on the cached features (a head of one
            Dense layer, multiclass or binary), scored on validation as epoch
            0 (`keras_transfer.finetune.linear_probe`).
    """

    head_epochs: int = 5
    finetune_epochs: int = 5
    unfreeze: int | float | str | object = 0.3
    optimizer: str | object = "adam"
    finetune_optimizer: str | object = "rmsprop"
    head_learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-5
    schedule: str | None = None
    layer_decay: float | None = None
    early_stopping: int | None = None
    cache_features: bool | str = False
    cached_copies: int = 1
    lora_rank: int | None = None
    finetune_patience: int | None = None
    probe_start: bool = False

    def __post_init__(self):
        for name in ("head_epochs", "finetune_epochs"):
            _check_count(name, getattr(self, name), minimum=0)
        _check_count("cached_copies", self.cached_copies, minimum=1)
        if not self.head_epochs and not self.finetune_epochs:
            raise ValueError("head_epochs and finetune_epochs are both 0: nothing would train. Give one of them.")
        for name in ("head_learning_rate", "finetune_learning_rate"):
            value = getattr(self, name)
            # 0 is allowed: it keeps a phase's weights fixed (a baseline, or a test).
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
        for name in ("optimizer", "finetune_optimizer"):
            value = getattr(self, name)
            if isinstance(value, str) and value.lower() not in OPTIMIZERS:
                raise ValueError(
                    f"Unknown {name} {value!r}: use one of {', '.join(OPTIMIZERS)} or a keras.optimizers.Optimizer."
                )
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule {self.schedule!r}: use None, {', '.join(map(repr, SCHEDULES))}.")
        if self.layer_decay is not None and not 0.0 < float(self.layer_decay) <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}.")
        for name in ("early_stopping", "lora_rank"):
            if getattr(self, name) is not None:
                _check_count(name, getattr(self, name), minimum=1)
        if self.finetune_patience is not None:
            _check_count("finetune_patience", self.finetune_patience, minimum=0)
        _check_unfreeze(self.unfreeze)

    def replace(self, **changes):
        """A copy with `changes`; options given as None keep this recipe's value."""
        unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise TypeError(
                f"Unknown recipe options {unknown}: the options are "
                f"{', '.join(field.name for field in dataclasses.fields(self))}."
            )
        return dataclasses.replace(self, **{key: value for key, value in changes.items() if value is not None})

    def to_dict(self):
        """The options as JSON-friendly values (optimizer instances by class name)."""
        return {
            key: value if value is None or isinstance(value, (bool, int, float, str)) else type(value).__name__
            for key, value in dataclasses.asdict(self).items()
        }

    @property
    def default_augmentation(self):
        """The augmentation preset for this recipe's training images: `"standard"`, or None.

        Augmentation pays where every epoch sees new random copies; a recipe
        that trains on one cached copy of each image would only see one fixed
        distortion (measured on cats_and_dogs_filtered, frozen MobileNetV2
        features: 0.991-0.993 unaugmented against 0.989 on one augmented copy).
        """
        return None if self.cache_features and self.cached_copies == 1 else "standard"


# The Keras transfer-learning guide's recipe as written: every epoch runs the
# whole network, every epoch of both phases runs. The baseline that demos and
# comparisons start from where caching or stopping early would blur them.
GUIDE_RECIPE = Recipe()

# Images: the Keras transfer-learning guide's two phases (Adam on the head,
# then RMSprop at a 100x lower rate on the top 30% of the backbone), made fast
# and safe. The frozen layers run once (cache_features): the head trains on the
# backbone's cached features, and fine-tuning on the cached output of the
# layers below the top 30% (`frozen_cut`). Fine-tuning goes on only while it
# beats the best epoch so far on validation, and the best epoch of either
# phase is kept. The head starts from a logistic regression solved on the
# cached features (probe_start), scored as epoch 0, so the model kept is never
# below that probe on validation. On cached features a head epoch costs a
# fraction of a second, so the head trains for 60: measured on
# cats_and_dogs_filtered (MobileNetV2, 224 px, 2 seeds, best epoch, from a
# random head), 10 epochs of Adam at 1e-3 reached 0.989, below a logistic
# regression on the same features (0.991-0.992 for any C from 0.002 to 1);
# 30 epochs 0.991-0.993 (5 s), 60 epochs 0.993 (8-11 s).
# With cache_features=False every head epoch runs the whole backbone: give
# fewer head_epochs there. The whole run: benchmarks/results/fine_tuning.md.
IMAGE_RECIPE = Recipe(head_epochs=60, finetune_epochs=5, cache_features=True, finetune_patience=1, probe_start=True)

# Transformers fine-tune with Adam at small rates (BERT's paper: 2e-5 to 5e-5):
# `TextClassifier.fine_tune`'s default, a head phase and then the whole network.
TEXT_RECIPE = Recipe(
    head_epochs=5,
    unfreeze="all",
    optimizer="adam",
    finetune_optimizer="adam",
    head_learning_rate=1e-3,
    finetune_learning_rate=5e-5,
)

# The named text recipes; `epochs` counts the phase that gives each its name.
# Rates: the top of BERT's range for the whole network, a linear probe's rate
# for a head alone, and a higher rate for LoRA adapters, which start at zero
# and need it to move in a few epochs.
# `frozen` trains its head on features cached once: measured on 2,000 SST-2
# sentences, all-MiniLM-L6-v2, 5 epochs, 2 cores: 22-30 s instead of 89-91 s,
# dev accuracy 0.790-0.798 either way; 1e-2 reached 0.798 (val loss 0.447)
# where 1e-3 reached 0.790 (0.491) and 3e-2 0.790.
# `full` warms up and decays its rate over the phase (warmup_cosine):
# measured on the full SST-2 training set (67,349 sentences), all-MiniLM-L6-v2,
# batch 32, 2 cores: full fine-tuning peaking at 5e-5 reached 0.892 on dev
# after 0.57 of one epoch and 0.897 at its end, where a constant 5e-5 wandered
# between 0.86 and 0.88. LoRA keeps a constant rate: on 225 SMS messages (2
# epochs, 30 steps) a warm-up and decay left it below 0.90 validation accuracy,
# where the constant rate reached 0.987.
TEXT_RECIPES = {
    "full": TEXT_RECIPE.replace(head_epochs=0, finetune_epochs=3, schedule="warmup_cosine"),
    "frozen": TEXT_RECIPE.replace(head_epochs=3, finetune_epochs=0, head_learning_rate=1e-2, cache_features=True),
    "lora": TEXT_RECIPE.replace(
        head_epochs=0,
        finetune_epochs=3,
        finetune_learning_rate=2e-3,
        lora_rank=DEFAULT_LORA_RANK,
    ),
}

# A text recipe's epochs when the data is known: fewer passes over more data,
# so that a run on 2 CPU cores stays within about 20 minutes for a
# MiniLM-sized backbone (one epoch of SST-2's 67,349 sentences: about 13).
EXAMPLES_PER_RUN = 40_000


def text_epochs(name, num_examples):
    """The epochs of text recipe `name` for `num_examples` training texts.

    The recipe's own epochs (3) up to `EXAMPLES_PER_RUN // 3` texts, then as
    many whole passes as fit in `EXAMPLES_PER_RUN` texts, at least one.

    >>> text_epochs("full", 1000), text_epochs("full", 20_000), text_epochs("full", 67_349)
    (3, 2, 1)
    """
    recipe = TEXT_RECIPES[name]
    epochs = recipe.finetune_epochs or recipe.head_epochs
    return max(1, min(epochs, EXAMPLES_PER_RUN // max(1, num_examples)))


def text_recipe(
    name="full", *, epochs=None, learning_rate=None, head_epochs=None, lora_rank=None, num_examples=None, **changes
):
    """One of `TEXT_RECIPES`, with its main phase's epochs and rate changed.

    Args:
        name: `"full"` (the whole network), `"frozen"` (the head alone on the
            frozen backbone) or `"lora"` (LoRA adapters and the head).
        epochs: epochs of the recipe's own phase (the head phase of `frozen`,
            the fine-tuning phase of the others); by default the recipe's,
            or `text_epochs(name, num_examples)` when `num_examples` is given.
        learning_rate: learning rate of that phase.
        head_epochs: `full` and `lora`: epochs of a head-only warm-up first.
        lora_rank: `lora`: the adapters' rank.
        num_examples: the number of training texts, which sets the default
            epochs (`text_epochs`).
        **changes: any other `Recipe` option.
    """
    if name not in TEXT_RECIPES:
        raise ValueError(f"Unknown text recipe {name!r}: use one of {', '.join(TEXT_RECIPE_NAMES)}.")
    if lora_rank is not None and name != "lora":
        raise ValueError(
            f"lora_rank trains LoRA adapters, which the {name!r} recipe does not: "
            "drop lora_rank, or use the 'lora' recipe."
        )
    if head_epochs is not None and name == "frozen":
        raise ValueError(
            "head_epochs is a warm-up before full or LoRA training; the 'frozen' recipe "
            "trains only the head, for `epochs` epochs: drop head_epochs."
        )
    recipe = TEXT_RECIPES[name]
    if epochs is None and num_examples is not None:
        epochs = text_epochs(name, num_examples)
    if name == "frozen":
        main = dict(head_epochs=epochs, head_learning_rate=learning_rate)
    else:
        main = dict(finetune_epochs=epochs, finetune_learning_rate=learning_rate, head_epochs=head_epochs)
    return recipe.replace(**main, lora_rank=lora_rank, **changes)


def text_recipe_name(recipe):
    """`"full"`, `"frozen"` or `"lora"`: what trains under a text recipe."""
    if recipe.lora_rank:
        return "lora"
    return "frozen" if not recipe.finetune_epochs else "full"
