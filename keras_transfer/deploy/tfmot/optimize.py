"""Quantization-aware training (int8; binary, ternary or int4 kernels), pruning and weight clustering with TF-MOT.

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
import tempfile
from typing import Any

import numpy as np
import tensorflow as tf

from keras_transfer.deploy.checks import check_export, guess_head
from keras_transfer.deploy.export import export
from keras_transfer.deploy.quantization import Quantization
from keras_transfer.deploy.tfmot import low_bit
from keras_transfer.deploy.tfmot.bridge import check_model, tf_keras, tfmot, to_tf_keras
from keras_transfer.deploy.tfmot.qat_config import calibrate_ranges, output_quantize_config
from keras_transfer.finetune.two_phase import steps_per_epoch_of
from keras_transfer.models.heads import Head

METHODS = ("quantization_aware", "prune", "cluster", "low_bit_weights")
# Layers whose kernels TF-MOT prunes and clusters (its registries leave
# DepthwiseConv2D kernels alone).
_KERNEL_LAYERS = ("Conv1D", "Conv2D", "Dense")
# Which of them a method compresses, besides a list of names (`chosen_kernels`).
LAYER_CHOICES = ("all", "inner", "largest")
# "largest": the fewest of the inner kernels that hold this share of their weights. On MobileNetV2 those are
# 8 of the 1x1 convolutions of the last four blocks: int4 there kept a cats/dogs head's accuracy (0.191x the
# float file), int4 on every inner kernel cost 1.6 points (benchmarks/on_device.py).
LARGEST_SHARE = 0.75
# Batch size of fine-tuning on `(inputs, labels)` arrays.
_FIT_BATCH_SIZE = 32


@dataclasses.dataclass
class OptimizedModel:
    """A tf_keras model optimized with TF-MOT, ready to export.

    Attributes:
        model: the tf_keras model (quantization-aware, or with pruning or
            clustering stripped).
        method: `"quantization_aware"`, `"prune"`, `"cluster"` or `"low_bit_weights"`.
        settings: the method's settings, e.g. `{"sparsity": 0.5, ...}`.
        history: the fine-tuning history (`{metric: [per epoch]}`).
        head: the Keras 3 model's `Head` (the task of the outputs).
        class_names: the Keras 3 model's class names, or None.
        sparsity: fraction of zero weights among the prunable kernels.
        unique_values: `{layer: distinct values in its kernel}` after clustering
            or low-bit training.
        low_bit_layers: `{layer: kernel size}` of the layers `low_bit_weights` trained.
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
    low_bit_layers: dict | None = None
    bridge: Any = dataclasses.field(default=None, repr=False)

    def to_tflite(self, path, *, overwrite=False, optimize=None, metadata=None):
        """Exports the model to a LiteRT file through `keras_transfer.deploy.export.export`.

        Quantization-aware models become real int8 models (float inputs and
        outputs); low-bit ones store their trained kernels in int4 and every
        other weight in int8 (LiteRT Quantizer, weight-only); clustered ones
        get int8 weights (each kernel's shared values stay few per channel, so
        gzip packs them) unless `optimize=False`; pruned ones stay float32
        unless `optimize=True`
        (`tf.lite.Optimize.DEFAULT`: int8 weights, float activations).
        `<path>.json` holds the metadata (class names, input, method).

        Args:
            path: the `.tflite` file to write.
            overwrite: replace an existing file; otherwise it is an error.
            optimize: apply `tf.lite.Optimize.DEFAULT`; defaults to True for
                quantization-aware and clustered models.
            metadata: more JSON-serializable entries for `<path>.json`.

        Returns:
            The path written.
        """
        if self.method == "low_bit_weights":
            if optimize is False:
                raise ValueError("A low-bit model is written with its trained kernels in int4: leave optimize unset.")
            return self._low_bit_tflite(path, overwrite=overwrite, metadata=metadata)
        optimize = self.method in ("quantization_aware", "cluster") if optimize is None else optimize
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

    def _low_bit_tflite(self, path, *, overwrite, metadata):
        """The trained kernels in int4 (their values are on its grid), every other weight int8.

        The quantizer names layers by the float file's op scopes, so the float
        file is written first to find them.
        """
        from keras_transfer.deploy.litert_quantizer import scopes_of_layers

        with tempfile.TemporaryDirectory() as scratch:
            float_path = os.path.join(scratch, "float.tflite")
            export(self, float_path, engine="tf_keras")
            scopes = scopes_of_layers(float_path, self.low_bit_layers)
        quantization = Quantization.mixed(scopes.values())
        described = {**quantization.get_config(), "method": self.method, **self.settings}
        return export(
            self, path, quantization=quantization, metadata={"quantization": described, **(metadata or {})},
            overwrite=overwrite,
        ).path  # fmt: skip

    def bit_packed_size_bytes(self, path):
        """The size of the low-bit file at `path` with its binary or ternary kernels packed at 1 or 2 bits
        per weight (TFLite stores them in int4); the file's own size for any other method."""
        size = os.path.getsize(path)
        if self.method != "low_bit_weights":
            return size
        return low_bit.bit_packed_size_bytes(size, self.low_bit_layers.values(), self.settings["scheme"])

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
    epochs=2,
    learning_rate=1e-4,
    init="kmeans_plus_plus",
    layers="largest",
    validation_data=None,
    steps_per_epoch=None,
    verbose="auto",
    backup_dir=None,
):
    """Weight clustering of the Conv/Dense kernels into `clusters` shared values.

    The defaults are a recipe measured on an ImageNet MobileNetV2 with a
    cats-vs-dogs head (`benchmarks/on_device.py`): 16 values in the largest
    kernels (three quarters of the weights), 2 epochs at 1e-4, stayed within
    a point of the float model (0.966-0.977 against 0.976 in three runs)
    with a gzip size of 1.61 MB exported with int8 weights (int8 alone:
    2.15 MB). Clustering every kernel for 1 epoch at 1e-5 lost 7 points.

    Args:
        model: a built Keras 3 functional model.
        train_data: `(inputs, labels)` batches or tuple.
        clusters: distinct values per kernel (at least 2).
        epochs: fine-tuning epochs.
        learning_rate: Adam's learning rate.
        init: centroid initialisation: `"kmeans_plus_plus"`, `"linear"`,
            `"density_based"` or `"random"`.
        layers: the Conv/Dense kernels to cluster: `"largest"`, `"inner"`,
            `"all"` or a list of names (`chosen_kernels`); kernels with no more
            weights than `clusters` have nothing to share.
        validation_data, steps_per_epoch, verbose, backup_dir: as for `quantization_aware`.

    Returns:
        An `OptimizedModel` with method `"cluster"` and `unique_values` per kernel.
    """
    _check_arguments(model, train_data, epochs=epochs, clusters=clusters)
    clustering = tfmot().clustering.keras
    initialisation = getattr(clustering.CentroidInitialization, str(init).upper(), None)
    if initialisation is None:
        raise ValueError(f"Unknown init {init!r}: use 'kmeans_plus_plus', 'linear', 'density_based' or 'random'.")
    bridged = _bridge_for_fine_tuning(model, train_data)
    chosen = chosen_kernels(bridged.model, layers, min_size=clusters)
    settings = {
        "clusters": clusters,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "init": str(init).lower(),
        "layers": layers if isinstance(layers, str) else list(layers),
    }

    def wrap(layer):
        if layer.name in chosen:
            return clustering.cluster_weights(layer, number_of_clusters=clusters, cluster_centroids_init=initialisation)
        return layer

    clustered = tf_keras().models.clone_model(bridged.model, clone_function=wrap)
    history = _fine_tune(
        "cluster", clustered, model, train_data, settings, validation_data, steps_per_epoch, verbose, backup_dir,
    )  # fmt: skip
    stripped = clustering.strip_clustering(clustered)
    result = _result(stripped, "cluster", settings, history, model, bridged)
    result.unique_values = {name: int(np.unique(stripped.get_layer(name).get_weights()[0]).size) for name in chosen}
    result.sparsity = kernel_sparsity(stripped)
    return result


def low_bit_weights(
    model,
    train_data,
    *,
    scheme="ternary",
    layers="largest",
    epochs=2,
    learning_rate=1e-4,
    validation_data=None,
    steps_per_epoch=None,
    verbose="auto",
    backup_dir=None,
):
    """Trains chosen Conv/Dense kernels to binary, ternary or int4 weights (straight-through estimator).

    See `keras_transfer.deploy.tfmot.low_bit` for the schemes. The kernels
    trained are the ones exported: BatchNormalization is folded into the
    convolution before it, then the kernel is quantized per output channel
    in every forward pass while its float copy takes the gradient. The
    result exports (`to_tflite`) with these kernels stored in int4 and every
    other weight in int8.

    Args:
        model: a built Keras 3 functional model.
        train_data: `(inputs, labels)` batches or tuple.
        scheme: `"binary"`, `"ternary"` or `"int4"`.
        layers: the Conv2D/Dense layers to quantize: `"largest"` (the fewest
            holding three quarters of the weights, leaving out the first
            convolution and the output layer, which low-bit networks keep at
            higher precision), `"inner"` (all but those two), `"all"`, or a
            list of names (`chosen_kernels`).
        epochs: fine-tuning epochs.
        learning_rate: Adam's first learning rate, decaying to zero along a cosine (a low-bit
            model's accuracy swings from step to step at a constant rate).
        validation_data, steps_per_epoch, verbose, backup_dir: as for `quantization_aware`.

    Returns:
        An `OptimizedModel` with method `"low_bit_weights"`, `low_bit_layers` and
        `unique_values` (at most 2 per channel for binary, 3 for ternary, 16 for int4).
    """
    low_bit.check_scheme(scheme)
    _check_arguments(model, train_data, epochs=epochs)
    bridged = _bridge_for_fine_tuning(model, train_data)
    chosen = chosen_kernels(bridged.model, layers)
    settings = {
        "scheme": scheme,
        "bits": low_bit.SCHEMES[scheme],
        "layers": layers if isinstance(layers, str) else list(layers),
        "epochs": epochs,
        "learning_rate": learning_rate,
    }
    quantize = tfmot().quantization.keras
    config = low_bit.quantize_config(scheme)

    def annotate(layer):
        return quantize.quantize_annotate_layer(layer, quantize_config=config) if layer.name in chosen else layer

    annotated = tf_keras().models.clone_model(bridged.model, clone_function=annotate)
    with quantize.quantize_scope({type(config).__name__: type(config)}):
        quantized = quantize.quantize_apply(annotated, scheme=low_bit.kernels_only_scheme())
    history = _fine_tune(
        "low_bit_weights", quantized, model, train_data, settings, validation_data, steps_per_epoch, verbose,
        backup_dir, cosine_decay=True,
    )  # fmt: skip
    baked = _bake_low_bit(quantized, bridged.model, chosen, scheme)
    result = _result(baked, "low_bit_weights", settings, history, model, bridged)
    result.low_bit_layers = chosen
    result.unique_values = {
        name: int(max(np.unique(kernel).size for kernel in np.moveaxis(baked.get_layer(name).get_weights()[0], -1, 0)))
        for name in chosen
    }
    return result


def chosen_kernels(tf_model, layers, *, min_size=0):
    """`{name: kernel size}` of the Conv/Dense layers `layers` picks in the bridged `tf_model`.

    `layers` is `"all"`, `"inner"` (all but the first and the last: the input
    convolution and the output layer, which compression hurts most),
    `"largest"` (the fewest inner kernels holding `LARGEST_SHARE` of their
    weights: most of the size, few of the layers) or a list of layer names;
    kernels of `min_size` weights or fewer are left out of the first three.
    """
    kernels = {layer.name: int(np.prod(layer.kernel.shape)) for layer in tf_model.layers if _has_kernel(layer)}
    if layers in LAYER_CHOICES:
        names = list(kernels) if layers == "all" else list(kernels)[1:-1]
        if layers == "largest":
            by_size = sorted(names, key=kernels.get, reverse=True)
            held = np.cumsum([kernels[name] for name in by_size])
            names = by_size[: int(np.searchsorted(held, LARGEST_SHARE * held[-1])) + 1] if names else []
        return {name: kernels[name] for name in names if kernels[name] > min_size}
    names = [layers] if isinstance(layers, str) else list(layers)
    unknown = [name for name in names if name not in kernels]
    if unknown or not names:
        raise ValueError(
            f"layers must be {' or '.join(map(repr, LAYER_CHOICES))} or names of the model's Conv2D/Dense layers; "
            f"{unknown or 'no names'} given. Valid names: {', '.join(kernels)}."
        )
    return {name: kernels[name] for name in names}


def _bake_low_bit(quantized, target, chosen, scheme):
    """`target` (the bridged float model) with the trained weights, the chosen kernels quantized.

    A QuantizeWrapper lists its layer's variables first (kernel, bias), then
    its own step counter.
    """
    trained = {getattr(layer, "layer", layer).name: layer.weights for layer in quantized.layers}
    for layer in target.layers:
        values = [weight.numpy() for weight in trained[layer.name][: len(layer.weights)]]
        if layer.name in chosen:
            values[0] = low_bit.quantize_kernel(values[0], scheme).numpy()
        if values:
            layer.set_weights(values)
    return target


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
    """Runs `quantization_aware`, `prune`, `cluster` or `low_bit_weights` by name."""
    check_method(method)
    methods = {
        "quantization_aware": quantization_aware,
        "prune": prune,
        "cluster": cluster,
        "low_bit_weights": low_bit_weights,
    }
    return methods[method](model, train_data, **options)


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
_PHASE_LABELS = {
    "quantization_aware": "Quantization-aware training",
    "prune": "Pruning",
    "cluster": "Clustering",
    "low_bit_weights": "Low-bit weight training",
}


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
    cosine_decay=False,
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
    rate = learning_rate
    if cosine_decay:  # to zero at the last step: the weights settle instead of ending on a noisy step
        total_steps = epochs * (steps_per_epoch or _counted_steps_per_epoch(train_data))
        rate = tf_keras().optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, total_steps))
    tf_model.compile(optimizer=tf_keras().optimizers.Adam(rate), loss=loss, metrics=metrics)
    trainable = sum(int(np.prod(weight.shape)) for weight in tf_model.trainable_weights)
    announce(
        verbose,
        f"{label}: trains {trainable:,} parameters (tf_keras, TF-MOT), adam, learning rate "
        f"{format_learning_rate(learning_rate)}{' with cosine decay' if cosine_decay else ''}, "
        f"{counted(epochs, 'epoch')}.",
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
