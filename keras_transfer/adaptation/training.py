"""`adapt`: train on a labelled source domain so that the model also works on an unlabelled target domain.

The recipe's two phases, with the target in the second: the head trains on
the source with the backbone frozen (as `fine_tune` does), then the part the
recipe unfreezes (or its LoRA adapters) fine-tunes on the source's labels
plus an adaptation loss on both domains' features (DANN, CORAL or MMD). The
same recipe through `model.fine_tune` is the source-only baseline with the
same budget. AdaBN instead runs the whole recipe on the source and then
re-estimates BatchNormalization statistics on the target.

The target's labels, if it has any, only score the model: `split_target`
takes them off before training starts.
"""

import dataclasses
import time

import numpy as np

from keras_transfer.adaptation.batch_norm import adapt_batch_norm, batch_norm_layers
from keras_transfer.adaptation.domains import check_not_empty, paired_batches, split_target
from keras_transfer.adaptation.methods import DEFAULT_WEIGHTS, METHODS, check_method
from keras_transfer.adaptation.reversal import ReversalSchedule
from keras_transfer.adaptation.trainer import AdaptationTrainer
from keras_transfer.finetune import two_phase
from keras_transfer.finetune.divergence import StopOnNaN
from keras_transfer.finetune.freezing import freeze, parameter_counts
from keras_transfer.finetune.optimizers import make_optimizer
from keras_transfer.finetune.progress import PhaseProgress, announce, counted, format_learning_rate
from keras_transfer.finetune.recipes import Recipe

METHOD_NAMES = {"dann": "DANN", "coral": "CORAL", "mmd": "MMD", "adabn": "AdaBN"}


@dataclasses.dataclass
class AdaptationResult:
    """What `adapt` did and how well the model does on each domain.

    Attributes:
        method: `"dann"`, `"coral"`, `"mmd"` or `"adabn"`.
        history: a `FineTuneHistory`: `head` is the source-only head phase,
            `finetune` the adaptation phase (for AdaBN: the source-only
            fine-tuning before the statistics were re-estimated).
        target_accuracy: the adapted model's accuracy on the target's labels,
            or None when the target has none.
        source_only_target_accuracy: the same before adaptation, on the
            model trained on the source only (for DANN, CORAL and MMD: after
            the head phase; for AdaBN: after the whole recipe), or None
            (also for a recipe without a head phase: no source-only model
            exists before adaptation then).
        source_accuracy: the adapted model's accuracy on the source's
            validation data, or None without it.
        seconds: wall time of each step.
    """

    method: str
    history: object
    target_accuracy: float | None = None
    source_only_target_accuracy: float | None = None
    source_accuracy: float | None = None
    seconds: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        """The numbers, JSON-friendly."""
        return {
            "method": self.method,
            "target_accuracy": self.target_accuracy,
            "source_only_target_accuracy": self.source_only_target_accuracy,
            "source_accuracy": self.source_accuracy,
            "seconds": {key: round(float(value), 2) for key, value in self.seconds.items()},
        }

    def summary_line(self):
        """`Target accuracy: 0.8210 source-only, 0.8630 after DANN (+0.0420).` (None without target labels)."""
        if self.target_accuracy is None:
            return None
        line = f"Target accuracy: {self.target_accuracy:.4f} after {METHOD_NAMES[self.method]}"
        if self.source_only_target_accuracy is not None:
            gain = self.target_accuracy - self.source_only_target_accuracy
            line = (
                f"Target accuracy: {self.source_only_target_accuracy:.4f} source-only, "
                f"{self.target_accuracy:.4f} after {METHOD_NAMES[self.method]} ({gain:+.4f})"
            )
        return line + "."


def adapt(
    model,
    source,
    target,
    validation_data=None,
    *,
    method="dann",
    recipe=None,
    weight=None,
    batch_size=None,
    callbacks=(),
    verbose="auto",
    **options,
):
    """Trains `model` on labelled `source` data so that it works on the unlabelled `target` domain.

    Args:
        model: an `ImageClassifier` or `TextClassifier` (a multiclass or
            binary head).
        source: the labelled source data: a dataset of `(inputs, labels)`
            (e.g. from `keras_transfer.data`) or an `(inputs, labels)` tuple.
        target: the target domain's inputs (images, sentences, or a dataset
            of them). A dataset of `(inputs, labels)` or an `(inputs, labels)`
            tuple is taken too: its labels are only used to report
            `target_accuracy`, never to train.
        validation_data: labelled source validation data, or None.
        method: `"dann"`, `"coral"`, `"mmd"` or `"adabn"` (images only);
            see `keras_transfer.adaptation.methods`.
        recipe: a `Recipe`; the model's `RECIPE` when None. Its head phase
            trains on the source (as `fine_tune` does); its fine-tuning phase
            is the adaptation, which runs every epoch: no early stopping or
            best-epoch choice there, since the source's validation data does
            not tell how the model does on the target.
        weight: the adaptation loss's weight; `DEFAULT_WEIGHTS[method]` when
            None.
        batch_size: batch size of both domains (for arrays and sentences).
        callbacks: more Keras callbacks for every phase.
        verbose: 0 prints nothing; else each phase is announced.
        **options: `Recipe` options that change `recipe` for this call.

    Returns:
        An `AdaptationResult`.

    Example:
    >>> result = adapt(model, (sst2_texts, sst2_labels), yelp_texts, method="dann")  # doctest: +SKIP
    >>> result.target_accuracy  # doctest: +SKIP
    """
    check_method(method)
    recipe = (recipe or model.RECIPE).replace(**options)
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a keras_transfer Recipe, not {type(recipe).__name__}.")
    if method == "adabn" and not batch_norm_layers(model):
        raise ValueError(
            f"{model.name} has no BatchNormalization layer for AdaBN to re-estimate "
            f"(text backbones use LayerNormalization): use one of {', '.join(m for m in METHODS if m != 'adabn')}."
        )
    if method != "adabn" and not recipe.finetune_epochs:
        raise ValueError(
            f"{METHOD_NAMES[method]} adapts while fine-tuning, but the recipe has finetune_epochs=0: "
            "give it fine-tuning epochs (and something to unfreeze, or a lora_rank)."
        )
    if model.head.task not in ("multiclass", "binary"):
        raise ValueError(f"Domain adaptation here is for classification heads, not {model.head.task!r}.")
    weight = DEFAULT_WEIGHTS.get(method) if weight is None else float(weight)
    target_inputs, target_labelled = split_target(target)
    check_not_empty(target_inputs)
    model.check_data(source, target_labelled if target_labelled is not None else validation_data)
    if target_labelled is not None and validation_data is not None:
        model.check_data(source, validation_data)
    announce(verbose, _plan_line(method, source, target, target_labelled is not None))

    seconds = {}
    if method == "adabn":
        start = time.perf_counter()
        history = model.fine_tune(
            source, validation_data, recipe, callbacks=callbacks, batch_size=batch_size, verbose=verbose
        )
        seconds["source_training"] = time.perf_counter() - start
        before = _accuracy(model, target_labelled, batch_size)
        start = time.perf_counter()
        adapt_batch_norm(model, target_inputs, batch_size=batch_size or 32, verbose=verbose)
        seconds["adabn"] = time.perf_counter() - start
    else:
        head_history = None
        if recipe.head_epochs:
            start = time.perf_counter()
            head_history = model.fine_tune(
                source,
                validation_data,
                recipe.replace(finetune_epochs=0),
                callbacks=callbacks,
                batch_size=batch_size,
                verbose=verbose,
            ).head
            seconds["head"] = time.perf_counter() - start
        # Without a head phase there is no source-only model to score yet.
        before = _accuracy(model, target_labelled, batch_size) if head_history is not None else None
        if before is not None:
            announce(verbose, f"Target accuracy before adaptation (head trained on the source only): {before:.4f}.")
        start = time.perf_counter()
        adaptation_history = _adaptation_phase(
            model,
            source,
            target_inputs,
            validation_data,
            recipe,
            method=method,
            weight=weight,
            first_epoch=len(head_history.epoch) if head_history is not None else 0,
            batch_size=batch_size,
            callbacks=callbacks,
            verbose=verbose,
        )
        seconds["adaptation"] = time.perf_counter() - start
        history = two_phase.FineTuneHistory(head_history, adaptation_history, dict(seconds))
    result = AdaptationResult(
        method,
        history,
        target_accuracy=_accuracy(model, target_labelled, batch_size),
        source_only_target_accuracy=before,
        source_accuracy=_accuracy(model, validation_data, batch_size),
        seconds=seconds,
    )
    line = result.summary_line()
    if line:
        announce(verbose, line)
    return result


def _adaptation_phase(
    model,
    source,
    target_inputs,
    validation_data,
    recipe,
    *,
    method,
    weight,
    first_epoch,
    batch_size,
    callbacks,
    verbose,
):
    """The fine-tuning phase with the adaptation loss; returns its `keras.callbacks.History`."""
    if recipe.lora_rank and not model.lora_layers:
        model.enable_lora(recipe.lora_rank)
    if model.lora_layers:
        model.train_lora_only()
    else:
        freeze(model.backbone)
        model.unfreeze_backbone(**two_phase._unfreeze_selector(recipe.unfreeze))
    steps = two_phase.steps_per_epoch_of(source, batch_size)
    epochs = recipe.finetune_epochs
    trainer = AdaptationTrainer(model, method, weight)
    trainer.compile(
        optimizer=make_optimizer(
            recipe.finetune_optimizer,
            two_phase._learning_rate(recipe.finetune_learning_rate, recipe.schedule, steps, epochs),
        ),
        loss=model.head.loss(),
        metrics=model.head.metrics(),
    )
    schedule = [ReversalSchedule(trainer.reversal, steps * epochs, weight)] if method == "dann" else []
    trainable, total = parameter_counts(model)
    announce(
        verbose,
        f"Adaptation ({METHOD_NAMES[method]}): trains {two_phase._unfrozen_part(model, recipe)} and the head "
        f"({trainable:,} of {total:,} parameters) on the source's labels"
        f"{_weight_text(method, weight)}, {recipe.finetune_optimizer}, learning rate "
        f"{format_learning_rate(recipe.finetune_learning_rate)}, {counted(epochs, 'epoch')}.",
    )
    history = trainer.fit(
        paired_batches(model, source, target_inputs, batch_size),
        validation_data=None if validation_data is None else model.labelled_dataset(validation_data, batch_size),
        initial_epoch=first_epoch,
        epochs=first_epoch + epochs,
        callbacks=[
            StopOnNaN("adaptation"),
            *schedule,
            PhaseProgress("Adaptation", first_epoch=first_epoch, epochs=epochs),
            *callbacks,
        ],
        shuffle=False,  # the source batches shuffle themselves
        verbose=verbose,
    )
    # The task's own compile state follows its new trainable flags (fit, evaluate and saving use it).
    model.compile(recipe.finetune_optimizer, learning_rate=recipe.finetune_learning_rate)
    return history


def _weight_text(method, weight):
    if method == "dann":
        return f" and a domain classifier through gradient reversal (weight rising to {weight:g})"
    return f" plus {weight:g} x the {METHOD_NAMES[method]} loss between the domains' features"


def _plan_line(method, source, target_inputs, scored):
    sizes = f"{_size(source, 'labelled source example')} and {_size(target_inputs, 'unlabelled target example')}"
    scoring = "; the target's labels only score the model" if scored else ""
    return f"Domain adaptation with {METHOD_NAMES[method]}: {sizes}{scoring}."


def _size(data, noun):
    if isinstance(data, tuple):
        return counted(len(data[1]), noun)
    count = getattr(data, "num_examples", None)
    if count is None and not hasattr(data, "element_spec"):
        count = len(data)
    return counted(int(count), noun) if count is not None else f"{noun}s"


def _accuracy(model, data, batch_size):
    """The model's accuracy on labelled data (a dataset or an `(inputs, labels)` tuple), or None without it."""
    if data is None:
        return None
    if isinstance(data, tuple):
        scores = model.evaluate(data[0], np.asarray(data[1]), batch_size=batch_size, return_dict=True, verbose=0)
    else:
        scores = model.evaluate(data, return_dict=True, verbose=0)
    accuracy = scores.get("accuracy")
    return None if accuracy is None else float(accuracy)
