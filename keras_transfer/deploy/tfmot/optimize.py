"""Quantization-aware training, pruning and weight clustering with TF-MOT.

TensorFlow Model Optimization only takes tf_keras models, so each function
bridges the Keras 3 model first (`keras_transfer.deploy.tfmot.bridge.to_tf_keras`: one
flat tf_keras model, inference-mode BatchNormalization folded into the layer
before it), applies TF-MOT, fine-tunes, and returns an `OptimizedModel` that
exports to LiteRT:

>>> result = quantization_aware(model, train_data, epochs=1)
>>> result.to_tflite("model_qat.tflite")  # real int8
'model_qat.tflite'
>>> check_export("model_qat.tflite", result.model, validation_data, head=model.head).top1_agreement
1.0
"""

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow as tf

from keras_transfer.deploy.checks import check_export, guess_head
from keras_transfer.deploy.export import export
from keras_transfer.deploy.tfmot.bridge import check_model, tf_keras, tfmot, to_tf_keras
from keras_transfer.deploy.tfmot.qat_config import calibrate_ranges, output_quantize_config
from keras_transfer.finetune.two_phase import steps_per_epoch_of
from keras_transfer.models.heads import Head

METHODS = ("quantization_aware", "prune", "cluster")
# Layers whose kernels TF-MOT prunes and clusters (its registries leave
# DepthwiseConv2D kernels alone).
_KERNEL_LAYERS = ("Conv1D", "Conv2D", "Dense")
# Batch size of fine-tuning on `(inputs, labels)` arrays.
_FIT_BATCH_SIZE = 32


@dataclasses.dataclass
class OptimizedModel:
    """A tf_keras model optimized with TF-MOT, ready to export.

    Attributes:
        model: the tf_keras model (quantization-aware, or with pruning or
            clustering stripped).
        method: `"quantization_aware"`, `"prune"` or `"cluster"`.
        settings: the method's settings, e.g. `{"sparsity": 0.5, ...}`.
        history: the fine-tuning history (`{metric: [per epoch]}`).
        head: the Keras 3 model's `Head` (the task of the outputs).
        class_names: the Keras 3 model's class names, or None.
        sparsity: fraction of zero weights among the prunable kernels.
        unique_values: `{layer: distinct values in its kernel}` after clustering.
        bridge: the `keras_transfer.deploy.tfmot.bridge.Bridge` the model was built from.
    """

    model: Any
    method: str
    settings: dict
    history: dict
    head: Head
    class_names: list | None = None
    sparsity: float | None = None
    unique_values: dict | None = None
    bridge: Any = dataclasses.field(default=None, repr=False)

    def to_tflite(self, path, *, overwrite=False, optimize=None, metadata=None):
        """Exports the model to a LiteRT file through `keras_transfer.deploy.export.export`.

        Quantization-aware models become real int8 models (float inputs and
        outputs); pruned and clustered ones stay float32 unless `optimize=True`
        (`tf.lite.Optimize.DEFAULT`: int8 weights, float activations).
        `<path>.json` holds the metadata (class names, input, method).

        Args:
            path: the `.tflite` file to write.
            overwrite: replace an existing file; otherwise it is an error.
            optimize: apply `tf.lite.Optimize.DEFAULT`; defaults to True only
                for quantization-aware models.
            metadata: more JSON-serializable entries for `<path>.json`.

        Returns:
            The path written.
        """
        optimize = self.method == "quantization_aware" if optimize is None else optimize
        # What the file holds: the quantization the converter's "dynamic" mode makes of this model.
        quantization = {
            "mode": "int8" if self.method == "quantization_aware" else "dynamic" if optimize else "none",
            "method": self.method,
            **self.settings,
        }
        return export(
            self,
            path,
            quantization="dynamic" if optimize else "none",
            engine="tf_keras",
            metadata={"quantization": quantization, **(metadata or {})},
            overwrite=overwrite,
        ).path

    def check(self, path, data, **options):
        """`keras_transfer.deploy.export.check_export` of the LiteRT file at `path` against this model."""
        return check_export(path, self.model, data, head=self.head, **options)


# --------------------------------------------------------------------------
# The three methods.


def quantization_aware(
    model,
    train_data,
    *,
    epochs=1,
    learning_rate=1e-5,
    validation_data=None,
    steps_per_epoch=None,
    calibration_batches=16,
    verbose="auto",
    backup_dir=None,
):
    """Quantization-aware fine-tuning of a Keras 3 model; exports as real int8.

    Only the layers TF-MOT's 8-bit scheme supports are quantized; the
    preprocessing stays float (its output is quantized, so the backbone gets
    int8 inputs). What keeps QAT at least as accurate as post-training int8:
    BatchNormalization stays in inference mode and is folded into the
    convolution before it (the kernel trained is the kernel exported), the
    activation ranges are calibrated on `train_data` before any weight moves
    (TF-MOT's own ranges start at [-6, 6] and follow a 0.999 moving average,
    too slowly for a short fine-tuning), and the learning rate is low.

    Args:
        model: a built Keras 3 functional model (e.g. an `ImageClassifier`).
        train_data: a `tf.data.Dataset` of `(inputs, labels)` batches or an
            `(inputs, labels)` tuple; labels are ints or one-hot.
        epochs: fine-tuning epochs.
        learning_rate: Adam's learning rate.
        validation_data: the same kinds, or None.
        steps_per_epoch: batches per epoch (all of `train_data` by default).
        calibration_batches: batches that set the activation ranges.
        verbose: Keras's `verbose`.
        backup_dir: a folder that makes an interrupted fine-tuning resumable:
            tf_keras's `BackupAndRestore` keeps the weights, optimizer state
            and epoch there after every epoch, and a call with the same
            arguments and `backup_dir` goes on from the last completed epoch.

    Returns:
        An `OptimizedModel` with method `"quantization_aware"`.
    """
    _check_arguments(model, train_data, epochs=epochs)
    settings = {"epochs": epochs, "learning_rate": learning_rate, "calibration_batches": calibration_batches}
    bridged = _bridge_for_fine_tuning(model, train_data)
    quantize = tfmot().quantization.keras
    registry = quantize.default_8bit.Default8BitQuantizeRegistry()
    output_only = output_quantize_config()

    def annotate(layer):
        if registry.supports(layer):
            return quantize.quantize_annotate_layer(layer)
        if getattr(layer, "_keras_transfer_source", (None,))[0] is not None and _is_preprocessing(layer):
            # Float math, int8 output: the backbone's first layer then takes int8.
            return quantize.quantize_annotate_layer(layer, quantize_config=output_only)
        return layer

    annotated = tf_keras().models.clone_model(bridged.model, clone_function=annotate)
    with quantize.quantize_scope({type(output_only).__name__: type(output_only)}):
        quantized = quantize.quantize_apply(annotated)
    calibrate_ranges(quantized, train_data, calibration_batches, _FIT_BATCH_SIZE)
    history = _fine_tune(
        "quantization_aware", quantized, model, train_data, settings, validation_data, steps_per_epoch, verbose,
        backup_dir,
    )  # fmt: skip
    return _result(quantized, "quantization_aware", settings, history, model, bridged)


def prune(
    model,
    train_data,
    *,
    sparsity=0.5,
    epochs=2,
    learning_rate=1e-4,
    validation_data=None,
    steps_per_epoch=None,
    verbose="auto",
    backup_dir=None,
):
    """Magnitude pruning of the Conv/Dense kernels to `sparsity`, with fine-tuning.

    The sparsity rises along a polynomial schedule over the first three
    quarters of the training steps (at once when there are few steps), so
    the last steps fine-tune the final mask; the pruning wrappers are
    stripped afterwards.

    Args:
        model: a built Keras 3 functional model.
        train_data: `(inputs, labels)` batches or tuple.
        sparsity: target fraction of zero weights in each pruned kernel, in (0, 1).
        epochs: fine-tuning epochs.
        learning_rate: Adam's learning rate.
        validation_data, steps_per_epoch, verbose, backup_dir: as for `quantization_aware`.

    Returns:
        An `OptimizedModel` with method `"prune"` and the measured `sparsity`.
    """
    _check_arguments(model, train_data, epochs=epochs, sparsity=sparsity)
    sparsity_lib = tfmot().sparsity.keras
    total_steps = epochs * (steps_per_epoch or _counted_steps_per_epoch(train_data))
    schedule = _pruning_schedule(sparsity_lib, sparsity, total_steps)
    settings = {
        "sparsity": sparsity,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "schedule": type(schedule).__name__,
    }
    bridged = _bridge_for_fine_tuning(model, train_data)

    def wrap(layer):
        if _has_kernel(layer):
            return sparsity_lib.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    pruning = tf_keras().models.clone_model(bridged.model, clone_function=wrap)
    history = _fine_tune(
        "prune", pruning, model, train_data, settings, validation_data, steps_per_epoch, verbose, backup_dir,
        callbacks=[sparsity_lib.UpdatePruningStep()],
    )  # fmt: skip
    stripped = sparsity_lib.strip_pruning(pruning)
    result = _result(stripped, "prune", settings, history, model, bridged)
    result.sparsity = kernel_sparsity(stripped)
    return result


def cluster(
    model,
    train_data,
    *,
    clusters=16,
    epochs=1,
    learning_rate=1e-5,
    init="kmeans_plus_plus",
    validation_data=None,
    steps_per_epoch=None,
    verbose="auto",
    backup_dir=None,
):
    """Weight clustering of the Conv/Dense kernels into `clusters` shared values.

    Args:
        model: a built Keras 3 functional model.
        train_data: `(inputs, labels)` batches or tuple.
        clusters: distinct values per kernel (at least 2).
        epochs: fine-tuning epochs.
        learning_rate: Adam's learning rate.
        init: centroid initialisation: `"kmeans_plus_plus"`, `"linear"`,
            `"density_based"` or `"random"`.
        validation_data, steps_per_epoch, verbose, backup_dir: as for `quantization_aware`.

    Returns:
        An `OptimizedModel` with method `"cluster"` and `unique_values` per kernel.
    """
    _check_arguments(model, train_data, epochs=epochs, clusters=clusters)
    clustering = tfmot().clustering.keras
    initialisation = getattr(clustering.CentroidInitialization, str(init).upper(), None)
    if initialisation is None:
        raise ValueError(f"Unknown init {init!r}: use 'kmeans_plus_plus', 'linear', 'density_based' or 'random'.")
    settings = {"clusters": clusters, "epochs": epochs, "learning_rate": learning_rate, "init": str(init).lower()}
    bridged = _bridge_for_fine_tuning(model, train_data)

    def wrap(layer):
        # A kernel with fewer weights than clusters has nothing to share.
        if _has_kernel(layer) and int(np.prod(layer.kernel.shape)) > clusters:
            return clustering.cluster_weights(layer, number_of_clusters=clusters, cluster_centroids_init=initialisation)
        return layer

    clustered = tf_keras().models.clone_model(bridged.model, clone_function=wrap)
    history = _fine_tune(
        "cluster", clustered, model, train_data, settings, validation_data, steps_per_epoch, verbose, backup_dir,
    )  # fmt: skip
    stripped = clustering.strip_clustering(clustered)
    result = _result(stripped, "cluster", settings, history, model, bridged)
    result.unique_values = {
        layer.name: int(np.unique(layer.get_weights()[0]).size)
        for layer in stripped.layers
        if _has_kernel(layer) and np.size(layer.get_weights()[0]) > clusters
    }
    result.sparsity = kernel_sparsity(stripped)
    return result


def _bridge_for_fine_tuning(model, train_data):
    """The bridged tf_keras model with every layer trainable but BatchNormalization.

    TF-MOT fine-tunes the whole network: a backbone left frozen by the head
    phase would keep its kernels, so pruning masks could never be compensated
    and clustering would find no weights. BatchNormalization stays frozen
    (inference mode), as keras_transfer always runs it.
    """
    bridged = to_tf_keras(model, check_data=_first_inputs(train_data), fold_batch_norm=True)
    batch_norm = tf_keras().layers.BatchNormalization
    for layer in bridged.model.layers:
        if not isinstance(layer, batch_norm):
            layer.trainable = True
    return bridged


def kernel_sparsity(tf_model):
    """Fraction of zero weights among the Conv/Dense kernels of a tf_keras model."""
    kernels = [layer.get_weights()[0] for layer in tf_model.layers if _has_kernel(layer)]
    total = sum(kernel.size for kernel in kernels)
    return float(sum(np.sum(kernel == 0) for kernel in kernels) / total) if total else 0.0


# --------------------------------------------------------------------------
# Checks.


def _check_arguments(model, train_data, *, epochs, sparsity=None, clusters=None):
    """Fails on bad input before anything is built or trained."""
    check_model(model)
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}.")
    if sparsity is not None and not 0.0 < sparsity < 1.0:
        raise ValueError(f"sparsity must be between 0 and 1 (exclusive), got {sparsity!r}.")
    if clusters is not None and not (isinstance(clusters, int) and clusters >= 2):
        raise ValueError(f"clusters must be an integer >= 2, got {clusters!r}.")
    if _first_inputs(train_data) is None:
        raise ValueError("train_data is empty: pass a dataset (or (inputs, labels) tuple) with examples.")


def check_method(method):
    """Raises ValueError unless `method` is one of `METHODS`."""
    if method not in METHODS:
        raise ValueError(f"Unknown optimization method {method!r}; valid ones are {', '.join(METHODS)}.")
    return method


def optimize(model, train_data, method, **options):
    """Runs `quantization_aware`, `prune` or `cluster` by name."""
    check_method(method)
    return {"quantization_aware": quantization_aware, "prune": prune, "cluster": cluster}[method](
        model, train_data, **options
    )


# --------------------------------------------------------------------------
# Data.


def _first_inputs(data):
    """The first batch's inputs, or None for empty data."""
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError("Pass train_data as a dataset of (inputs, labels) or an (inputs, labels) tuple.")
        return np.asarray(data[0])[:32] if len(data[0]) else None
    if not isinstance(data, tf.data.Dataset):
        raise ValueError(
            f"train_data must be a tf.data.Dataset or an (inputs, labels) tuple, not {type(data).__name__}."
        )
    for batch in data.take(1).as_numpy_iterator():
        return batch[0] if isinstance(batch, tuple) else batch
    return None


def _first_labels(data):
    if isinstance(data, tuple):
        return np.asarray(data[1])
    for batch in data.take(1).as_numpy_iterator():
        return np.asarray(batch[1])
    return None


def _counted_steps_per_epoch(data):
    """Batches per epoch; a dataset of unknown length is counted by iterating it once."""
    if isinstance(data, tf.data.Dataset) and int(data.cardinality()) < 0:
        return sum(1 for _ in data)
    return steps_per_epoch_of(data, _FIT_BATCH_SIZE)


def _fit_arguments(data):
    if isinstance(data, tuple):
        return {"x": np.asarray(data[0]), "y": np.asarray(data[1]), "batch_size": _FIT_BATCH_SIZE}
    return {"x": data}


# --------------------------------------------------------------------------
# Training.


def _loss_and_metrics(head, labels):
    """tf_keras loss and metrics for `head`, sparse or one-hot as the labels are."""
    tfk = tf_keras()
    if head.task == "multiclass":
        one_hot = labels is not None and labels.ndim >= 2 and labels.shape[-1] == head.num_outputs > 1
        if one_hot:
            return tfk.losses.CategoricalCrossentropy(from_logits=head.from_logits), ["categorical_accuracy"]
        return (
            tfk.losses.SparseCategoricalCrossentropy(from_logits=head.from_logits),
            [tfk.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    if head.task in ("binary", "multilabel"):
        threshold = 0.0 if head.from_logits else 0.5  # on logits, decode_outputs' 0.5 after the sigmoid
        return (
            tfk.losses.BinaryCrossentropy(from_logits=head.from_logits),
            [tfk.metrics.BinaryAccuracy(name="accuracy", threshold=threshold)],
        )
    return tfk.losses.MeanSquaredError(), [tfk.metrics.MeanAbsoluteError(name="mae")]


# How a method's fine-tuning is announced.
_PHASE_LABELS = {"quantization_aware": "Quantization-aware training", "prune": "Pruning", "cluster": "Clustering"}


def _fine_tune(
    method,
    tf_model,
    model,
    train_data,
    settings,
    validation_data,
    steps_per_epoch,
    verbose,
    backup_dir=None,
    callbacks=(),
):
    from keras_transfer.finetune.progress import (
        EpochLinesMixin,
        announce,
        counted,
        format_learning_rate,
        resolve_verbose,
    )

    label, epochs, learning_rate = _PHASE_LABELS[method], settings["epochs"], settings["learning_rate"]
    loss, metrics = _loss_and_metrics(guess_head(model), _first_labels(train_data))
    tf_model.compile(optimizer=tf_keras().optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
    trainable = sum(int(np.prod(weight.shape)) for weight in tf_model.trainable_weights)
    announce(
        verbose,
        f"{label}: trains {trainable:,} parameters (tf_keras, TF-MOT), adam, learning rate "
        f"{format_learning_rate(learning_rate)}, {counted(epochs, 'epoch')}.",
    )
    shown = resolve_verbose(verbose)
    lines = []
    if shown == 2:  # off a terminal: one plain line per epoch instead of tf_keras's two

        class EpochLines(EpochLinesMixin, tf_keras().callbacks.Callback):
            pass

        lines = [EpochLines(label, epochs=epochs)]
    if isinstance(validation_data, tuple):
        validation_data = tuple(np.asarray(part) for part in validation_data)
    backup = []
    log = None
    if backup_dir is not None:
        # The epoch log first: an epoch logged but not backed up runs again, never the other way round.
        log = _epoch_log(os.path.join(os.fspath(backup_dir), "epochs.json"))
        backup = [log, tf_keras().callbacks.BackupAndRestore(os.path.join(os.fspath(backup_dir), "state"))]
    history = tf_model.fit(
        **_fit_arguments(train_data),
        epochs=epochs,
        validation_data=validation_data,
        steps_per_epoch=steps_per_epoch,
        callbacks=[*backup, *callbacks, *lines],
        verbose=1 if shown == 1 else 0,
    )
    if log is not None and log.epochs:
        return log.metrics()
    return {name: [float(value) for value in values] for name, values in history.history.items()}


def _epoch_log(path):
    """A tf_keras callback keeping every epoch's logs in `path`, for the whole history of a resumed fit."""
    from keras_transfer.finetune.epoch_log import EpochLogMixin

    class EpochLog(EpochLogMixin, tf_keras().callbacks.Callback):
        pass

    return EpochLog(path)


def _result(tf_model, method, settings, history, model, bridged):
    return OptimizedModel(
        model=tf_model,
        method=method,
        settings=settings,
        history=history,
        head=guess_head(model),
        class_names=getattr(model, "class_names", None),
        bridge=bridged,
    )


def _has_kernel(layer):
    return type(layer).__name__ in _KERNEL_LAYERS and type(layer).__module__.startswith("tf_keras")


def _is_preprocessing(layer):
    from keras_transfer.models.layers import BackbonePreprocessing

    return isinstance(layer._keras_transfer_source[0], BackbonePreprocessing)


def _pruning_schedule(sparsity_lib, sparsity, total_steps):
    # PolynomialDecay changes the mask every `frequency` steps up to end_step;
    # ending on a multiple of the frequency makes the last change reach the target.
    end_step = int(total_steps * 0.75)
    if end_step < 4:
        return sparsity_lib.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    frequency = max(1, end_step // 10)
    end_step -= end_step % frequency
    return sparsity_lib.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=end_step, frequency=frequency
    )
