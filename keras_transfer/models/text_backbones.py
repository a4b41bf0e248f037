"""Pretrained text backbones: keras-hub presets and folders, with their tokenizers."""

import dataclasses
import difflib
import os

import keras

from keras_transfer.errors import UnknownBackboneError, WeightsUnavailableError, import_extra
from keras_transfer.models.image_backbones import load_from_hub

PRETRAINED = "pretrained"


@dataclasses.dataclass(frozen=True)
class TextBackboneSpec:
    """A keras-hub text backbone family.

    Args:
        family: display name, e.g. `"BERT"`.
        backbone_class: the `keras_hub.models` backbone class name.
        has_pooler: whether the backbone outputs a pooled [CLS] vector.
    """

    family: str
    backbone_class: str
    has_pooler: bool = False

    def presets(self):
        keras_hub = import_extra("keras_hub", "Listing the text backbones")

        backbone = getattr(keras_hub.models, self.backbone_class)
        # keras-hub lists a subclass's presets under its parents too (XLMRobertaBackbone's under
        # RobertaBackbone): each preset belongs to the most specific registered family.
        subclasses = [
            getattr(keras_hub.models, spec.backbone_class)
            for spec in TEXT_BACKBONES.values()
            if spec.backbone_class != self.backbone_class
        ]
        claimed = {
            name for other in subclasses if issubclass(other, backbone) for name in getattr(other, "presets", {})
        }
        return [name for name in backbone.presets if name not in claimed]


TEXT_BACKBONES = {
    spec.family: spec
    for spec in (
        TextBackboneSpec("BERT", "BertBackbone", has_pooler=True),
        TextBackboneSpec("DistilBERT", "DistilBertBackbone"),
        TextBackboneSpec("RoBERTa", "RobertaBackbone"),
        TextBackboneSpec("XLM-RoBERTa", "XLMRobertaBackbone"),
        TextBackboneSpec("ALBERT", "AlbertBackbone", has_pooler=True),
        TextBackboneSpec("DeBERTaV3", "DebertaV3Backbone"),
        TextBackboneSpec("ELECTRA", "ElectraBackbone", has_pooler=True),
    )
}


def list_text_backbones(family=None):
    """`{family: [preset names]}` of the keras-hub text backbones (offline: names only).

    >>> "bert_base_en_uncased" in list_text_backbones("BERT")["BERT"]
    True
    """
    specs = TEXT_BACKBONES.values()
    if family is not None:
        specs = [spec for spec in specs if spec.family.lower() == family.lower()]
    return {spec.family: spec.presets() for spec in specs}


@dataclasses.dataclass
class BuiltTextBackbone:
    """A text backbone with the preprocessor (tokenizer + packer) that feeds it."""

    model: keras.Model
    preprocessor: keras.layers.Layer
    name: str


def build_text_backbone(source, *, weights=PRETRAINED, sequence_length=None):
    """Builds a keras-hub text backbone and its text-classifier preprocessor.

    Args:
        source: a keras-hub preset name (see `list_text_backbones()`), a hub
            handle (`kaggle://...`, `hf://...`), or a local folder: a saved
            keras-hub preset or a Hugging Face model that keras-hub converts.
        weights: `"pretrained"` for the preset's weights, `None` for random
            initialisation, or a `.weights.h5` file.
        sequence_length: tokens per example (the preset's default when None).

    Returns:
        A `BuiltTextBackbone`.

    Raises:
        MissingExtraError: keras-hub is not installed (`pip install "keras-transfer[text]"`).
    """
    keras_hub = import_extra("keras_hub", "A text backbone")

    source = os.fspath(source)
    known = [name for presets in list_text_backbones().values() for name in presets]
    if not (os.path.isdir(source) or "://" in source or source in known):
        close = difflib.get_close_matches(source, known, n=5, cutoff=0.5)
        hint = f" Closest names: {', '.join(close)}." if close else ""
        raise UnknownBackboneError(
            f"Unknown text backbone {source!r}.{hint} Pass a keras-hub preset name "
            "(`keras-transfer backbones --text` lists them), a hub handle, or a "
            "local keras-hub / Hugging Face folder."
        )
    if weights not in (PRETRAINED, None) and not os.path.isfile(os.fspath(weights)):
        raise ValueError(
            f"weights={weights!r} is neither 'pretrained', None, nor an existing "
            "weights file: pass one of those (check the path)."
        )
    model = load_from_hub(
        lambda: keras_hub.models.Backbone.from_preset(source, load_weights=weights == PRETRAINED), source
    )
    if weights not in (PRETRAINED, None):
        model.load_weights(weights)
    options = {} if sequence_length is None else {"sequence_length": int(sequence_length)}
    try:
        preprocessor = load_from_hub(
            lambda: keras_hub.models.TextClassifierPreprocessor.from_preset(source, **options), source
        )
    except WeightsUnavailableError:
        raise
    except ValueError:
        # Families without a classifier preprocessor of their own (e.g. ELECTRA)
        # still have a tokenizer; the generic packer adds [CLS]/[SEP].
        tokenizer = load_from_hub(lambda: keras_hub.tokenizers.Tokenizer.from_preset(source), source)
        preprocessor = keras_hub.models.TextClassifierPreprocessor(tokenizer=tokenizer, **options)
    return BuiltTextBackbone(model, preprocessor, source)
