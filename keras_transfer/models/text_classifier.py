"""`TextClassifier`: a keras-hub text backbone + a new head, with its tokenizer beside it.

The Keras model takes token ids (`token_ids`, `padding_mask` and, for BERT,
`segment_ids`), which is what exports to SavedModel and TFLite. Its keras-hub
preprocessor (tokenizer + packer) runs in the tf.data pipeline, so `fit`,
`evaluate`, `predict` and `fine_tune` also take raw sentences.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer import data as data_lib
from keras_transfer import atomic_files as files
from keras_transfer.models.backbones import PRETRAINED, build_text_backbone
from keras_transfer.finetune.recipes import TEXT_RECIPE
from keras_transfer.models.heads import Head
from keras_transfer.models.transfer_model import TransferModel, resolve_head

POOLINGS = ("auto", "pooled", "cls", "mean", "max")
# keras-hub's name for the [CLS] pooler of BERT, ALBERT, ELECTRA and FNet.
POOLER_LAYER = "pooled_dense"


@keras.saving.register_keras_serializable(package="keras_transfer")
class TokenPooling(keras.layers.Layer):
    """Reduces a token sequence to one vector, ignoring padding.

    Args:
        mode: `"mean"` (masked mean, what sentence-transformers use), `"max"`
            (masked max) or `"cls"` (the first token).
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("mean", "max", "cls"):
            raise ValueError(f"Unknown token pooling {mode!r}: use 'mean', 'max' or 'cls'.")
        self.mode = mode

    def call(self, sequence, padding_mask):
        if self.mode == "cls":
            return sequence[:, 0, :]
        mask = keras.ops.cast(keras.ops.expand_dims(padding_mask, -1), sequence.dtype)
        if self.mode == "max":
            return keras.ops.max(sequence + (mask - 1.0) * 1e9, axis=1)
        total = keras.ops.sum(sequence * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, sequence_shape, padding_mask_shape):
        return (sequence_shape[0], sequence_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


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
            or `"max"` over tokens; `"auto"` takes what a sentence-transformers
            folder says it was trained with (`1_Pooling/config.json`), else
            the pooler where the backbone has one, else the mean.

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
        **kwargs,
    ):
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
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}.")
        head, class_names = resolve_head(head, num_classes, class_names)

        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name)
            for name in backbone.input
        }
        outputs = backbone(inputs)
        has_pooler = isinstance(outputs, dict) and "pooled_output" in outputs
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        if pooling == "auto":
            pooling = "pooled" if has_pooler else "mean"
        if pooling == "pooled":
            if not has_pooler:
                raise ValueError(
                    f"The backbone {backbone_name!r} has no pooler: use pooling='mean' or 'cls'."
                )
            features = outputs["pooled_output"]
        else:
            features = TokenPooling(pooling, name="token_pooling")(sequence, inputs["padding_mask"])
        super().__init__(inputs=inputs, outputs=head.build(features), **kwargs)

        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head = head
        self.class_names = class_names
        self.pooling = pooling
        self.backbone_name = backbone_name
        self.sequence_length_fixed = sequence_length is not None

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

    @classmethod
    def create(cls, train, validation_data=None, *, backbone, weights=PRETRAINED, preprocessor=None,
               head=None, pooling="auto", sequence_length=None, lora_rank=None, strategy=None,
               **fine_tune_options):
        """Builds a classifier for `train` and fine-tunes it, inside `strategy`'s scope.

        The classes come from the data. With `lora_rank`, LoRA adapters train
        instead of the whole backbone. Other keyword arguments go to `fine_tune`.
        A backbone given as a model must have been built in `strategy`'s scope.

        Returns:
            `(model, FineTuneHistory)`.
        """
        class_names = data_lib.class_names_of(train)
        if head is None and class_names is None:
            raise ValueError(
                "The training data carries no class_names: load it with "
                "keras_transfer.data, or pass head=Head.multiclass(num_classes)."
            )
        strategy = strategy or tf.distribute.get_strategy()
        with strategy.scope():
            model = cls(backbone, weights=weights, preprocessor=preprocessor, head=head,
                        class_names=class_names, pooling=pooling, sequence_length=sequence_length)
            if lora_rank:
                model.enable_lora(lora_rank)
        history = model.fine_tune(train, validation_data, **fine_tune_options)
        return model, history

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
        texts = [texts] if isinstance(texts, str) else list(texts)
        (tokens,) = self._preprocess(tf.constant(texts, dtype=tf.string))
        return {name: value.numpy() for name, value in tokens.items()}

    def _token_data(self, x, y=None, *, batch_size=None, shuffle=False):
        """Turns raw sentences (a dataset or a list) into token-id batches."""
        if isinstance(x, tf.data.Dataset):
            if not _yields_text(x):
                return x, y
            return x.map(self._preprocess, num_parallel_calls=tf.data.AUTOTUNE), None
        if isinstance(x, str) or _is_text_list(x):
            texts = np.asarray([x] if isinstance(x, str) else list(x), dtype=object).astype(str)
            slices = texts if y is None else (texts, np.asarray(y))
            dataset = tf.data.Dataset.from_tensor_slices(slices)
            if shuffle:
                dataset = dataset.shuffle(len(texts), reshuffle_each_iteration=True)
            dataset = dataset.batch(batch_size or 32).map(self._preprocess, num_parallel_calls=tf.data.AUTOTUNE)
            return dataset.prefetch(tf.data.AUTOTUNE), None
        return x, y

    def model_inputs(self, data):
        """Token ids for raw sentences: a list, an `(texts, labels)` tuple or a string dataset."""
        if isinstance(data, tuple) and _is_text_list(data[0]):
            return self._token_data(*data, batch_size=32)[0]
        if isinstance(data, tf.data.Dataset):
            return self._token_data(data)[0]
        if isinstance(data, str) or _is_text_list(data):
            return self.tokenize(data)
        return data

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

    def _preprocess(self, texts, *rest):
        # keras-hub packs a bool padding mask; the graph (and its exports) take
        # int32, and tf.distribute cannot gather bool tensors across replicas.
        tokens = {name: tf.cast(value, tf.int32) for name, value in self.preprocessor(texts).items()}
        return (tokens, *rest)

    def _validation_tokens(self, validation_data):
        if isinstance(validation_data, tuple) and _is_text_list(validation_data[0]):
            return self._token_data(*validation_data)[0]
        if isinstance(validation_data, tf.data.Dataset):
            return self._token_data(validation_data)[0]
        return validation_data

    def fit(self, x=None, y=None, batch_size=None, epochs=1, *, shuffle=True, validation_data=None, **kwargs):
        """`keras.Model.fit` that also takes raw sentences (lists or string datasets)."""
        tokens, y = self._token_data(x, y, batch_size=batch_size, shuffle=shuffle)
        if tokens is not x:
            batch_size, shuffle = None, False
        return super().fit(tokens, y, batch_size=batch_size, epochs=epochs, shuffle=shuffle,
                           validation_data=self._validation_tokens(validation_data), **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """`keras.Model.evaluate` that also takes raw sentences."""
        tokens, y = self._token_data(x, y, batch_size=batch_size)
        return super().evaluate(tokens, y, batch_size=None if tokens is not x else batch_size, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        """`keras.Model.predict` that also takes raw sentences."""
        tokens, _ = self._token_data(x, batch_size=batch_size)
        return super().predict(tokens, batch_size=None if tokens is not x else batch_size, **kwargs)

    # --- saving ----------------------------------------------------------

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "head": self.head.get_config(),
            "class_names": self.class_names,
            "pooling": self.pooling,
            "sequence_length": self.sequence_length if self.sequence_length_fixed else None,
            "name": self.name,
            "trainable": self.trainable,
            "backbone_name": self.backbone_name,
            **self._backbone_state(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        backbone_name = config.pop("backbone_name", None)
        backbone = cls._restore_backbone(config)
        model = cls(
            backbone,
            preprocessor=keras.saving.deserialize_keras_object(config.pop("preprocessor")),
            head=Head.from_config(config.pop("head")),
            **config,
        )
        model.backbone_name = backbone_name or model.backbone_name
        return model


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
    for key, mode in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"),
                      ("pooling_mode_max_tokens", "max")):
        if config.get(key):
            return mode
    return None


def _max_sequence_length(backbone):
    return getattr(backbone, "max_sequence_length", None)


def _check_sequence_length(sequence_length, backbone):
    sequence_length = int(sequence_length)
    maximum = _max_sequence_length(backbone)
    if sequence_length < 2 or (maximum and sequence_length > maximum):
        raise ValueError(
            f"sequence_length={sequence_length} is out of range: the backbone takes "
            f"2 to {maximum} tokens."
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
