"""`TextClassifier`: a keras-hub text backbone + a new head, with its tokenizer beside it.

The Keras model takes token ids (`token_ids`, `padding_mask` and, for BERT,
`segment_ids`), which is what exports to SavedModel and TFLite. Its keras-hub
preprocessor (tokenizer + packer) runs in the tf.data pipeline through
`TransferModel`'s conversion hooks, so `fit`, `evaluate`, `predict` and
`fine_tune` also take raw sentences. There, with `bucket_by_length` (the
default), each batch is padded only to its longest sentence (rounded up to a
few bucket lengths) and training batches group sentences of similar length
(`keras_transfer.data.length_buckets`); `tokenize` and `model_inputs` keep
the full `sequence_length`, the shape exports take.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer import atomic_files as files
from keras_transfer import data as data_lib
from keras_transfer.data import length_buckets
from keras_transfer.errors import import_extra
from keras_transfer.finetune.recipes import TEXT_RECIPE
from keras_transfer.models.layers import TOKEN_POOLINGS, TokenPooling, canonical_pooling
from keras_transfer.models.text_backbones import PRETRAINED, build_text_backbone
from keras_transfer.models.transfer_model import TransferModel, resolve_head

# What the features can be; "auto" chooses one of them when the model is built.
FEATURE_POOLINGS = ("pooled", *TOKEN_POOLINGS)
POOLINGS = ("auto", *FEATURE_POOLINGS)
# keras-hub's name for the [CLS] pooler of BERT, ALBERT, ELECTRA and FNet.
POOLER_LAYER = "pooled_dense"


@keras.saving.register_keras_serializable(package="keras_transfer")
class TextClassifier(TransferModel):
    """A pretrained keras-hub text backbone with a new head.

    Args:
        backbone: a keras-hub preset name, hub handle or local folder (a saved
            keras-hub preset, or a Hugging Face folder), or a
            `keras_hub.models.Backbone` (then pass `preprocessor`).
        num_classes: number of classes for the default multiclass head.
        weights: `"pretrained"`, `None` (random initialisation) or a weights file.
        preprocessor: a keras-hub `TextClassifierPreprocessor`, for a backbone
            given as a model.
        sequence_length: tokens per example. When None, `fine_tune` chooses it
            from the training and validation texts (the larger 95th percentile
            of token counts, capped by the backbone) unless the model was
            trained before.
        head: a `Head`; defaults to `Head.multiclass(num_classes)`.
        class_names: names of the classes, kept with the saved model.
        pooling: `"pooled"` (the backbone's pooler output), `"cls"`, `"mean"`
            or `"max"` over tokens (`"avg"` means `"mean"`); `"auto"` takes
            what a sentence-transformers folder says it was trained with
            (`1_Pooling/config.json`), else the pooler where the backbone has
            one, else the mean.
        bucket_by_length: when True (the default), `fit`, `evaluate`,
            `predict` and `fine_tune` pad each batch of sentences only to its
            longest one, rounded up to a bucket length (16, 24, 32, 48, 64,
            ... up to `sequence_length`), and training regroups the
            sentences of every 16 batches by length; the padding mask keeps
            the outputs those of full padding, and predictions keep the input
            order. False pads every batch to `sequence_length`.

    Raises:
        MissingExtraError: keras-hub is not installed (`pip install "keras-transfer[text]"`).

    Example:
    >>> model = TextClassifier("path/to/all-MiniLM-L6-v2", num_classes=2, pooling="mean")
    >>> model.fine_tune(["great film", "dull"], [1, 0])  # doctest: +SKIP
    """

    RECIPE = TEXT_RECIPE

    def __init__(
        self,
        backbone,
        num_classes=None,
        *,
        weights=PRETRAINED,
        preprocessor=None,
        sequence_length=None,
        head=None,
        class_names=None,
        pooling="auto",
        bucket_by_length=True,
        **kwargs,
    ):
        import_extra("keras_hub", "TextClassifier")  # optional: a clear error without it, not a deep one
        if isinstance(backbone, keras.Model):
            if preprocessor is None:
                raise ValueError(
                    "A backbone given as a model needs its preprocessor: pass "
                    "preprocessor=keras_hub.models.TextClassifierPreprocessor(...)."
                )
            backbone_name = backbone.name
        else:
            if pooling == "auto":
                pooling = sentence_transformers_pooling(backbone) or pooling
            built = build_text_backbone(backbone, weights=weights, sequence_length=sequence_length)
            backbone, preprocessor, backbone_name = built.model, built.preprocessor, built.name
        if sequence_length is not None:
            preprocessor.sequence_length = _check_sequence_length(sequence_length, backbone)
        pooling = canonical_pooling(pooling)
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}.")
        head, class_names = resolve_head(head, num_classes, class_names)

        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in backbone.input}
        outputs = backbone(inputs)
        if pooling == "auto":
            pooling = "pooled" if _has_pooler(outputs) else "mean"
        head_features = _pool_tokens(outputs, inputs["padding_mask"], pooling, backbone_name, "token_pooling")
        super().__init__(
            inputs=inputs,
            outputs=head.build(head_features),
            backbone=backbone,
            head=head,
            head_features=head_features,
            backbone_outputs=outputs,
            preprocessor=preprocessor,
            class_names=class_names,
            backbone_name=backbone_name,
            **kwargs,
        )
        self.pooling = pooling
        self.sequence_length_fixed = sequence_length is not None
        self.bucket_by_length = bool(bucket_by_length)

    def _recompile(self, **options):
        # Pooling over tokens leaves keras-hub's pooler layer out of the graph's
        # path: keep it frozen so it is neither counted as trained nor warned about.
        if self.pooling != "pooled":
            for layer in self.backbone.layers:
                if layer.name == POOLER_LAYER:
                    layer.trainable = False
        super()._recompile(**options)

    @property
    def sequence_length(self):
        return int(self.preprocessor.sequence_length)

    @property
    def max_sequence_length(self):
        return _max_sequence_length(self.backbone)

    @property
    def bucket_lengths(self):
        """The widths `bucket_by_length` pads batches to: a few boundaries up to `sequence_length`."""
        return length_buckets.bucket_lengths(self.sequence_length)

    # --- data --------------------------------------------------------------

    def check_data(self, train, validation_data):
        """Fails early on bad data; picks the sequence length from it when not fixed."""
        super().check_data(train, validation_data)
        texts = [data for data in (train, validation_data) if data is not None and _yields_text(data)]
        if not self.sequence_length_fixed and texts:
            # Validation texts count too: training sets of short phrases (SST-2)
            # would otherwise cut a fifth of the full sentences they are scored on.
            self.preprocessor.sequence_length = max(
                data_lib.choose_sequence_length(
                    _texts_of(data), self.preprocessor.tokenizer, maximum=self.max_sequence_length
                )
                for data in texts
            )
            self.sequence_length_fixed = True

    def tokenize(self, texts):
        """The model's inputs (a dict of int32 arrays) for a list of sentences."""
        return self.model_inputs([texts] if isinstance(texts, str) else list(texts))

    def raw_inputs(self, x):
        """Sentences (a string, a list or 1-D array of them, or a dataset of string batches), else None."""
        if isinstance(x, tf.data.Dataset):
            return x if _yields_text(x) else None
        if isinstance(x, str) or _is_text_list(x):
            return np.asarray([x] if isinstance(x, str) else list(x), dtype=object).astype(str)
        return None

    def preprocess_samples(self, x, y=None, sample_weight=None):
        """A batch of sentences -> token ids, with the keras-hub preprocessor (tokenizer + packer)."""
        # keras-hub packs a bool padding mask; the graph (and its exports) take
        # int32, and tf.distribute cannot gather bool tensors across replicas.
        tokens = {name: tf.cast(value, tf.int32) for name, value in self.preprocessor(x).items()}
        return keras.utils.pack_x_y_sample_weight(tokens, y, sample_weight)

    def arrange_batches(self, batches, *, training=False):
        """With `bucket_by_length`: each batch padded only to its longest sentence; training groups them by length."""
        if not self.bucket_by_length:
            return batches
        return length_buckets.bucket_batches(batches, self.bucket_lengths, group=training)

    def pooled_features(self, pooling):
        """The backbone's output pooled with `"mean"`, `"max"`, `"cls"` or `"pooled"` (its pooler)."""
        pooling = canonical_pooling(pooling)
        if pooling not in FEATURE_POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}: use one of {', '.join(FEATURE_POOLINGS)}.")
        if pooling == self.pooling:
            return self.head_features
        return _pool_tokens(
            self.backbone_outputs,
            self.input["padding_mask"],
            pooling,
            self.backbone_name,
            f"features_{pooling}_pooling",
        )

    def export_assets(self, folder):
        """Saves the tokenizer and packer beside an export, as a keras-hub preset without weights.

        `keras_hub.models.TextClassifierPreprocessor.from_preset(folder)` loads
        it back; keras-hub finds the preprocessor's class through the
        backbone's `config.json`, so that is saved too (no weights).
        """
        self.preprocessor.save_to_preset(folder)
        config = keras.saving.serialize_keras_object(self.backbone)
        config.pop("build_config", None)
        files.write_json(config, os.path.join(folder, "config.json"))
        return {"sequence_length": self.sequence_length, "pooling": self.pooling}

    # --- saving ----------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "pooling": self.pooling,
            "sequence_length": self.sequence_length if self.sequence_length_fixed else None,
            "bucket_by_length": self.bucket_by_length,
        }


def sentence_transformers_pooling(folder):
    """The pooling a sentence-transformers folder was trained with, or None.

    Such folders (e.g. all-MiniLM-L6-v2) keep BERT's pooler weights, which
    sentence-embedding training never used; `1_Pooling/config.json` names the
    pooling it did use.
    """
    config_path = os.path.join(os.fspath(folder), "1_Pooling", "config.json")
    if not os.path.isfile(config_path):
        return None
    with open(config_path, encoding="utf-8") as file:
        config = json.load(file)
    for key, mode in (
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_max_tokens", "max"),
    ):
        if config.get(key):
            return mode
    return None


def _has_pooler(outputs):
    return isinstance(outputs, dict) and "pooled_output" in outputs


def _pool_tokens(outputs, padding_mask, pooling, backbone_name, layer_name):
    """One vector per example from the backbone's outputs: its pooler's, or a `TokenPooling` of its tokens."""
    if pooling == "pooled":
        if not _has_pooler(outputs):
            raise ValueError(f"The backbone {backbone_name!r} has no pooler: use pooling='mean' or 'cls'.")
        return outputs["pooled_output"]
    sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
    return TokenPooling(pooling, name=layer_name)(sequence, padding_mask)


def _max_sequence_length(backbone):
    return getattr(backbone, "max_sequence_length", None)


def _check_sequence_length(sequence_length, backbone):
    sequence_length = int(sequence_length)
    maximum = _max_sequence_length(backbone)
    if sequence_length < 2 or (maximum and sequence_length > maximum):
        raise ValueError(
            f"sequence_length={sequence_length} is out of range: the backbone takes 2 to {maximum} tokens."
        )
    return sequence_length


def _is_text_list(value):
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "UO" and value.ndim == 1
    return isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], str)


def _yields_text(data):
    if isinstance(data, tuple):
        return _is_text_list(data[0])
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        first = spec[0] if isinstance(spec, tuple) else spec
        return isinstance(first, tf.TensorSpec) and first.dtype == tf.string
    return _is_text_list(data)


def _texts_of(data):
    if isinstance(data, tuple):
        return [str(text) for text in data[0]]
    return data
