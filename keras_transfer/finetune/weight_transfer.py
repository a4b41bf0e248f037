"""Weight transfer between models, and feature extraction for other estimators."""

import collections
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.models import task_io
from keras_transfer.models.transfer_model import TransferModel


@dataclasses.dataclass
class TransferReport:
    """What `transfer_weights` copied and what it did not, and why."""

    copied: list
    skipped: list  # (layer name, reason) pairs
    unused_source: list

    @property
    def copied_parameters(self):
        return sum(count for _, count in self.copied)

    def __str__(self):
        lines = [f"Copied {len(self.copied)} layers ({self.copied_parameters:,} parameters)."]
        lines += [f"  copied   {name} ({count:,} parameters)" for name, count in self.copied]
        lines += [f"  skipped  {name}: {reason}" for name, reason in self.skipped]
        if self.unused_source:
            lines.append(f"  unused in source: {', '.join(self.unused_source)}")
        return "\n".join(lines)


def _weighted_layers(model):
    """Leaf layers that hold weights, nested models opened, in order."""
    layers = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.weights and not layer._layers:
            layers.append(layer)
        elif layer.weights and not isinstance(layer, keras.Model):
            # Composite layers (e.g. keras-hub blocks) move as one unit.
            layers.append(layer)
    # A composite layer's own sublayers are copied with it: keep outermost only.
    inside = {
        id(sub)
        for layer in layers
        if not isinstance(layer, keras.Model)
        for sub in layer._flatten_layers(include_self=False)
    }
    return [layer for layer in layers if id(layer) not in inside]


def transfer_weights(source, target, *, layer_names=None):
    """Copies weights from `source` into `target` wherever names and shapes agree.

    The documents' source_model -> target_model example: train on a source
    task, then start a related target task from what the source learned.
    Layers are matched by name (nested backbones are searched too) and copied
    only when every weight has the same shape; everything else is reported.

    Args:
        source: the trained `keras.Model` (or layer) to copy from.
        target: the `keras.Model` to copy into.
        layer_names: copy only these target layers (all matching by default).

    Returns:
        A `TransferReport`; `print(report)` shows it.

    Example:
    >>> report = transfer_weights(source_model.backbone, target_model.backbone)
    >>> print(report)  # doctest: +SKIP
    """
    source_by_name = collections.defaultdict(list)
    for layer in _weighted_layers(source):
        source_by_name[layer.name].append(layer)
    target_layers = _weighted_layers(target)
    if layer_names is not None:
        wanted = set(layer_names)
        missing = wanted - {layer.name for layer in target_layers}
        if missing:
            raise ValueError(
                f"The target has no layers with weights named {sorted(missing)}: "
                "check the names with [l.name for l in model.layers]."
            )
        target_layers = [layer for layer in target_layers if layer.name in wanted]

    copied, skipped, used = [], [], set()
    for layer in target_layers:
        matches = source_by_name.get(layer.name, [])
        if not matches:
            skipped.append((layer.name, "no layer of this name in the source"))
            continue
        if len(matches) > 1:
            skipped.append((layer.name, f"{len(matches)} source layers share this name"))
            continue
        source_weights = matches[0].get_weights()
        target_shapes = [tuple(w.shape) for w in layer.weights]
        source_shapes = [tuple(w.shape) for w in source_weights]
        if source_shapes != target_shapes:
            skipped.append((layer.name, f"shapes differ: source {source_shapes}, target {target_shapes}"))
            continue
        layer.set_weights(source_weights)
        used.add(layer.name)
        copied.append((layer.name, int(sum(np.prod(shape) for shape in target_shapes))))
    unused = [name for name in source_by_name if name not in used]
    return TransferReport(copied, skipped, unused)


def extract_features(model, data, *, pooling=None, verbose="auto"):
    """Pooled backbone features as numpy arrays, for scikit-learn estimators.

    Args:
        model: a keras_transfer task (its `feature_extractor(pooling)` is
            used, not its head) or any `keras.Model` mapping inputs to features.
        data: a `tf.data.Dataset` of `(inputs, labels)` or of inputs, an
            `(inputs, labels)` tuple, or inputs alone; raw inputs as the task's
            `fit` takes them (sentences for a `TextClassifier`).
        pooling: None for the features the head sees, or another pooling of
            the task's backbone output: `"mean"`, `"max"` or `"flatten"` for
            images, `"mean"`, `"max"`, `"cls"` or `"pooled"` for text.
        verbose: show a progress bar.

    Returns:
        `(features, labels)`; `labels` is None for unlabelled data. The data is
        read once, so features and labels stay paired even when it shuffles.

    Example:
    >>> features, labels = extract_features(model, train)  # doctest: +SKIP
    >>> sklearn.linear_model.LogisticRegression().fit(features, labels)  # doctest: +SKIP
    """
    data = task_io.as_model_inputs(model, data)
    if isinstance(model, TransferModel):
        model = model.feature_extractor(pooling)
    if isinstance(data, tuple):
        inputs, labels = data
        return model.predict(inputs, verbose=0), np.asarray(labels)
    if not isinstance(data, tf.data.Dataset):
        return model.predict(data, verbose=0), None
    features, labels = [], []
    progress = keras.utils.Progbar(_cardinality(data), verbose=1 if verbose == "auto" else verbose)
    for step, batch in enumerate(data, start=1):
        inputs, batch_labels = batch if isinstance(batch, tuple) else (batch, None)
        features.append(np.asarray(model(inputs, training=False)))
        if batch_labels is not None:
            labels.append(np.asarray(batch_labels))
        progress.update(step)
    return np.concatenate(features), (np.concatenate(labels) if labels else None)


def _cardinality(dataset):
    count = int(dataset.cardinality())
    return count if count >= 0 else None
