"""Heads: what goes on top of a backbone, and the loss and metrics that follow."""

import dataclasses

import keras
import numpy as np

from keras_transfer.models.layers import canonical_pooling, global_pooling

TASKS = ("multiclass", "binary", "multilabel", "regression")
POOLINGS = ("mean", "max", "flatten")
# Cosine similarity (in [-1, 1]) times this is a logit: a softmax over 2 classes
# at cosines 0.6 and 0.4 gives 0.88, sharp enough to train from, not saturated.
DEFAULT_COSINE_SCALE = 10.0


@dataclasses.dataclass
class Head:
    """A new head for a backbone; the loss and metrics follow from `task`.

    Use the builders rather than the constructor:
    `Head.multiclass(10)`, `Head.binary()`, `Head.multilabel(5)`,
    `Head.regression(1)`.

    Args:
        task: one of `"multiclass"`, `"binary"`, `"multilabel"`, `"regression"`.
        num_outputs: classes, labels or regression targets (1 for binary).
        pooling: how to reduce the backbone's feature map: `"mean"`, `"max"`, or
            `"flatten"` (as in the classic VGG16 example); `"avg"` means `"mean"`.
        dropout: dropout rate before each Dense layer; 0 for none.
        hidden_units: sizes of optional hidden Dense layers.
        from_logits: output logits instead of probabilities (classification).
        hidden_activation: activation of the hidden layers.
        cosine_scale: when set (multiclass only), a cosine classifier: the
            features are scaled to unit length and the last Dense layer has no
            bias, so each logit is `cosine_scale` times the cosine similarity
            to that class's vector (a kernel column). `set_class_vectors`
            writes class vectors there: class means of features (few-shot
            prototypes) or embedded class names (zero-shot). 10 to 30 is the
            usual scale: cosines lie in [-1, 1], so the scale sets how sharp
            the softmax is.

    Example:
    >>> head = Head.multiclass(3, dropout=0.0)
    >>> head.loss().name
    'sparse_categorical_crossentropy'
    """

    task: str = "multiclass"
    num_outputs: int = 2
    pooling: str = "mean"
    dropout: float = 0.2
    hidden_units: tuple = ()
    from_logits: bool = False
    hidden_activation: str = "relu"
    cosine_scale: float | None = None

    def __post_init__(self):
        self.hidden_units = tuple(int(units) for units in self.hidden_units)
        self.pooling = canonical_pooling(self.pooling)
        if self.task not in TASKS:
            raise ValueError(f"Unknown head task {self.task!r}: use one of {', '.join(TASKS)}.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {self.pooling!r}: use one of {', '.join(POOLINGS)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.task == "multiclass" and (self.num_outputs is None or self.num_outputs < 2):
            raise ValueError(
                f"A multiclass head needs num_classes >= 2, got {self.num_outputs}: "
                "for one yes/no output use Head.binary()."
            )
        if self.task == "binary" and self.num_outputs != 1:
            raise ValueError("A binary head has exactly one output.")
        if self.num_outputs is None or self.num_outputs < 1:
            raise ValueError(f"num_outputs must be >= 1, got {self.num_outputs}.")
        if self.cosine_scale is not None:
            if self.task != "multiclass":
                raise ValueError(f"A cosine head is multiclass (class vectors), not {self.task!r}.")
            if not self.cosine_scale > 0:
                raise ValueError(f"cosine_scale must be > 0, got {self.cosine_scale}.")

    @classmethod
    def multiclass(cls, num_classes, *, logits=False, **options):
        """Softmax over `num_classes` (or logits), sparse categorical cross-entropy."""
        return cls("multiclass", num_classes, from_logits=logits, **options)

    @classmethod
    def binary(cls, *, logits=False, **options):
        """One sigmoid unit (or a logit), binary cross-entropy."""
        return cls("binary", 1, from_logits=logits, **options)

    @classmethod
    def multilabel(cls, num_labels, *, logits=False, **options):
        """One sigmoid per label; targets are multi-hot vectors."""
        return cls("multilabel", num_labels, from_logits=logits, **options)

    @classmethod
    def cosine(cls, num_classes, *, scale=DEFAULT_COSINE_SCALE, logits=False, dropout=0.0, **options):
        """Cosine similarity to one vector per class, times `scale`, then softmax (prototypes, zero-shot)."""
        return cls("multiclass", num_classes, from_logits=logits, dropout=dropout, cosine_scale=scale, **options)

    @classmethod
    def regression(cls, num_outputs=1, **options):
        """Linear outputs and mean squared error (function fitting)."""
        return cls("regression", num_outputs, **options)

    @property
    def is_classification(self):
        return self.task != "regression"

    def pool(self, features):
        """Reduces a feature map (or token sequence) to one vector per example."""
        rank = len(features.shape)
        if rank == 2:
            return features
        # Rank 3 is a token sequence (vision transformers), rank 4 a feature map.
        return global_pooling(self.pooling, rank, name="head_pooling")(features)

    def build(self, features):
        """Applies the head's layers to a backbone output tensor."""
        x = self.pool(features)
        for index, units in enumerate(self.hidden_units, start=1):
            if self.dropout:
                x = keras.layers.Dropout(self.dropout, name=f"head_dropout_{index}")(x)
            x = keras.layers.Dense(units, self.hidden_activation, name=f"head_dense_{index}")(x)
        if self.dropout:
            x = keras.layers.Dropout(self.dropout, name="head_dropout")(x)
        if self.cosine_scale is not None:
            x = keras.layers.UnitNormalization(name="head_unit_normalization")(x)
            return keras.layers.Dense(
                self.num_outputs, self._activation(), use_bias=False, dtype="float32", name="predictions"
            )(x)
        # The output stays float32 so that mixed precision never hurts the loss.
        return keras.layers.Dense(self.num_outputs, self._activation(), dtype="float32", name="predictions")(x)

    def _activation(self):
        if self.from_logits or self.task == "regression":
            return None
        return "softmax" if self.task == "multiclass" else "sigmoid"

    def loss(self):
        if self.task == "multiclass":
            return keras.losses.SparseCategoricalCrossentropy(from_logits=self.from_logits)
        if self.task in ("binary", "multilabel"):
            return keras.losses.BinaryCrossentropy(from_logits=self.from_logits)
        return keras.losses.MeanSquaredError()

    def metrics(self):
        if self.task == "multiclass":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
            if self.num_outputs > 3:
                k = min(5, self.num_outputs - 1)
                metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k, name=f"top{k}_accuracy"))
            return metrics
        if self.task in ("binary", "multilabel"):
            threshold = 0.0 if self.from_logits else 0.5
            return [
                keras.metrics.BinaryAccuracy(name="accuracy", threshold=threshold),
                keras.metrics.AUC(name="auc", from_logits=self.from_logits, multi_label=self.task == "multilabel"),
            ]
        return [
            keras.metrics.MeanAbsoluteError(name="mae"),
            keras.metrics.RootMeanSquaredError(name="rmse"),
        ]

    def class_vector_kernel(self, class_vectors):
        """The cosine head's kernel for `class_vectors` `(num_classes, features)`: unit columns times the scale."""
        vectors = np.asarray(class_vectors, dtype=np.float32)
        if self.cosine_scale is None:
            raise ValueError("Class vectors need a cosine head: Head.cosine(num_classes).")
        if vectors.ndim != 2 or vectors.shape[0] != self.num_outputs:
            raise ValueError(
                f"Expected {self.num_outputs} class vectors (one row per class), got an array of shape {vectors.shape}."
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
            raise ValueError("Every class vector must be finite and non-zero.")
        return (self.cosine_scale * vectors / norms).T

    def get_config(self):
        return {**dataclasses.asdict(self), "hidden_units": list(self.hidden_units)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
