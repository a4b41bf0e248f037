"""Pretrained image backbones: one registry of Keras Applications, plus keras-hub presets.

Every entry is data: which `keras.applications` constructor builds it, which
module's `preprocess_input` it expects, and its default and minimum input size.
keras-hub image backbones (a preset name, a local preset folder, or a Hugging
Face / timm folder that keras-hub converts) come in through the same factory.
"""

import dataclasses
import difflib
import os
import re

import keras

from keras_transfer.errors import UnknownBackboneError, WeightsUnavailableError, import_extra, is_download_failure
from keras_transfer.models.layers import BackbonePreprocessing

IMAGENET = "imagenet"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build one Keras Applications backbone.

    Args:
        name: registry name, e.g. `"mobilenet_v2"`.
        constructor: the `keras.applications` attribute, e.g. `"MobileNetV2"`.
        preprocessing: the `keras.applications` module whose `preprocess_input`
            turns raw pixels in [0, 255] into what the backbone was trained on.
        default_size: the input size the ImageNet weights were trained at.
        min_size: the smallest input the architecture accepts.
        family: the architecture family, for listing.
        imagenet_size: set when ImageNet weights only load at that exact size.
    """

    name: str
    constructor: str
    preprocessing: str
    default_size: int
    family: str
    min_size: int = 32
    imagenet_size: int | None = None

    def build_model(self, weights, input_shape):
        build = getattr(keras.applications, self.constructor)
        return build(include_top=False, weights=weights, input_shape=input_shape)

    def preprocess_input(self, images):
        return getattr(keras.applications, self.preprocessing).preprocess_input(images)


def _specs():
    def family(name, module, entries, min_size=32):
        return [BackboneSpec(key, ctor, module, size, name, min_size=min_size) for key, ctor, size in entries]

    efficientnet_sizes = [224, 240, 260, 300, 380, 456, 528, 600]
    return [
        *family("VGG", "vgg16", [("vgg16", "VGG16", 224)]),
        *family("VGG", "vgg19", [("vgg19", "VGG19", 224)]),
        *family(
            "ResNet",
            "resnet",
            [(f"resnet{d}", f"ResNet{d}", 224) for d in (50, 101, 152)],
        ),
        *family(
            "ResNetV2",
            "resnet_v2",
            [(f"resnet{d}_v2", f"ResNet{d}V2", 224) for d in (50, 101, 152)],
        ),
        *family("Inception", "inception_v3", [("inception_v3", "InceptionV3", 299)], 75),
        *family(
            "Inception",
            "inception_resnet_v2",
            [("inception_resnet_v2", "InceptionResNetV2", 299)],
            75,
        ),
        *family("Xception", "xception", [("xception", "Xception", 299)], 71),
        *family("MobileNet", "mobilenet", [("mobilenet", "MobileNet", 224)]),
        *family("MobileNet", "mobilenet_v2", [("mobilenet_v2", "MobileNetV2", 224)]),
        *family(
            "MobileNet",
            "mobilenet_v3",
            [
                ("mobilenet_v3_small", "MobileNetV3Small", 224),
                ("mobilenet_v3_large", "MobileNetV3Large", 224),
            ],
        ),
        *family(
            "DenseNet",
            "densenet",
            [(f"densenet{d}", f"DenseNet{d}", 224) for d in (121, 169, 201)],
        ),
        BackboneSpec("nasnet_mobile", "NASNetMobile", "nasnet", 224, "NASNet", imagenet_size=224),
        BackboneSpec("nasnet_large", "NASNetLarge", "nasnet", 331, "NASNet", imagenet_size=331),
        *family(
            "EfficientNet",
            "efficientnet",
            [(f"efficientnet_b{i}", f"EfficientNetB{i}", s) for i, s in enumerate(efficientnet_sizes)],
        ),
        *family(
            "EfficientNetV2",
            "efficientnet_v2",
            [
                *[(f"efficientnet_v2_b{i}", f"EfficientNetV2B{i}", s) for i, s in enumerate(efficientnet_sizes[:4])],
                ("efficientnet_v2_s", "EfficientNetV2S", 384),
                ("efficientnet_v2_m", "EfficientNetV2M", 480),
                ("efficientnet_v2_l", "EfficientNetV2L", 480),
            ],
        ),
        *family(
            "ConvNeXt",
            "convnext",
            [
                (f"convnext_{size.lower()}", f"ConvNeXt{size}", 224)
                for size in ("Tiny", "Small", "Base", "Large", "XLarge")
            ],
        ),
    ]


BACKBONES = {spec.name: spec for spec in _specs()}


def _normalize(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


# "MobileNetV2", "mobilenetv2" and "mobilenet-v2" all find "mobilenet_v2".
_ALIASES = {
    **{_normalize(spec.name): spec.name for spec in BACKBONES.values()},
    **{_normalize(spec.constructor): spec.name for spec in BACKBONES.values()},
}


def list_backbones(family=None):
    """Returns the registry's `BackboneSpec`s, optionally of one family.

    >>> [spec.name for spec in list_backbones("VGG")]
    ['vgg16', 'vgg19']
    """
    specs = list(BACKBONES.values())
    if family is not None:
        specs = [spec for spec in specs if spec.family.lower() == family.lower()]
    return specs


def get_backbone_spec(name):
    """Finds a registry entry by name, accepting Keras's own spelling too."""
    key = _ALIASES.get(_normalize(name))
    if key is None:
        hub_presets = _keras_hub_image_presets()
        close = difflib.get_close_matches(name.lower(), list(BACKBONES) + hub_presets, n=5, cutoff=0.5)
        hint = f" Closest names: {', '.join(close)}." if close else ""
        hub = "" if hub_presets else ' (keras-hub presets need keras-hub: pip install "keras-transfer[text]")'
        raise UnknownBackboneError(
            f"Unknown backbone {name!r}.{hint} Run `keras-transfer backbones` "
            "(or `keras_transfer.list_backbones()`) for the full list, or pass a "
            f"keras-hub preset name or a local preset folder{hub}."
        )
    return BACKBONES[key]


@dataclasses.dataclass
class BuiltBackbone:
    """A backbone model with the preprocessing it expects and its input size."""

    model: keras.Model
    preprocessor: keras.layers.Layer
    image_size: tuple
    name: str


def _check_weights(weights):
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return None
    if weights == IMAGENET:
        return IMAGENET
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return os.fspath(weights)
    raise ValueError(
        f"weights={weights!r} is neither 'imagenet', None, nor an existing "
        "weights file (.h5 or .weights.h5): pass one of those (check the path)."
    )


def _image_size(image_size, default):
    if image_size is None:
        return (default, default)
    if isinstance(image_size, int):
        return (image_size, image_size)
    height, width = image_size
    return (int(height), int(width))


def is_keras_hub_source(name):
    """True for a keras-hub preset name, a hub handle, or a local folder."""
    name = os.fspath(name)
    if os.path.isdir(name) or "://" in name:
        return True
    return name in _keras_hub_image_presets()


# keras-hub is optional (the `text` extra): the Keras Applications backbones need only Keras.
_KERAS_HUB_FEATURE = "A keras-hub image preset or preset folder"


def _keras_hub_image_presets():
    try:
        import keras_hub
    except ImportError:  # keras-hub is optional for image work
        return []
    return list(keras_hub.models.ImageClassifier.presets)


def build_backbone(name, *, weights=IMAGENET, image_size=None):
    """Builds a headless backbone and the preprocessing that goes in front of it.

    Args:
        name: a registry name (`keras-transfer backbones` lists them), a
            keras-hub preset name or handle, or a local keras-hub / Hugging
            Face / timm folder.
        weights: `"imagenet"` (the pretrained weights; for keras-hub, the
            preset's), `None` for random initialisation, or a weights file.
        image_size: int or (height, width); defaults to the backbone's own.

    Returns:
        A `BuiltBackbone`.

    Example:
    >>> built = build_backbone("mobilenet_v2", weights=None, image_size=32)
    >>> built.model.output_shape
    (None, 1, 1, 1280)
    """
    weights = _check_weights(weights)
    if not isinstance(name, str) or is_keras_hub_source(name):
        return _build_keras_hub_backbone(os.fspath(name), weights, image_size)
    spec = get_backbone_spec(name)
    size = _image_size(image_size, spec.default_size)
    if min(size) < spec.min_size:
        raise ValueError(
            f"{spec.name} needs images of at least {spec.min_size}x{spec.min_size} "
            f"pixels, got {size[0]}x{size[1]}: pass image_size>={spec.min_size}."
        )
    if weights == IMAGENET and spec.imagenet_size and size != (spec.imagenet_size,) * 2:
        raise ValueError(
            f"{spec.name}'s ImageNet weights only load at "
            f"{spec.imagenet_size}x{spec.imagenet_size}, got {size[0]}x{size[1]}: pass "
            f"image_size={spec.imagenet_size} or weights=None."
        )
    try:
        model = spec.build_model(weights, input_shape=(*size, 3))
    except Exception as error:
        if weights == IMAGENET and is_download_failure(error):
            raise WeightsUnavailableError(_imagenet_download_message(spec, error)) from error
        raise
    preprocessor = BackbonePreprocessing(spec.preprocessing, name="preprocessing")
    return BuiltBackbone(model, preprocessor, size, spec.name)


def _keras_cache_dir():
    try:
        from keras.src.backend.config import keras_home
    except ImportError:  # older Keras
        return os.path.join(os.path.expanduser("~"), ".keras", "models")
    return os.path.join(keras_home(), "models")


def _imagenet_download_message(spec, error):
    url = re.search(r"https?://\S+?(?=:?\s|$)", str(error))
    file = url.group(0).rsplit("/", 1)[-1] if url else None
    where = f"the file {file} (from {url.group(0)})" if url else "the weights file"
    return (
        f"could not download the ImageNet weights of {spec.name} (no network?). Give them another way: "
        f"copy {where} into {_keras_cache_dir()}, or pass weights=PATH to a local weights file "
        "(.h5 or .weights.h5), or weights=None to start from random weights."
    )


def hub_download_message(preset):
    """The message for a keras-hub `preset` that could not be downloaded."""
    return (
        f"could not download the keras-hub preset {preset!r} (no network?). Give a local preset folder "
        "instead: download the preset's files where there is network (e.g. with kagglehub.model_download "
        "or `huggingface-cli download`), copy the folder here and pass its path as the backbone."
    )


def load_from_hub(load, preset):
    """`load()` (a keras-hub `from_preset` call), a failed download a `WeightsUnavailableError`."""
    try:
        return load()
    except Exception as error:
        if is_download_failure(error):
            raise WeightsUnavailableError(hub_download_message(preset)) from error
        raise


def _build_keras_hub_backbone(preset, weights, image_size):
    keras_hub = import_extra("keras_hub", _KERAS_HUB_FEATURE)

    load_weights = weights == IMAGENET
    model = load_from_hub(lambda: keras_hub.models.Backbone.from_preset(preset, load_weights=load_weights), preset)
    if weights not in (None, IMAGENET):
        model.load_weights(weights)
    converter = load_from_hub(lambda: keras_hub.layers.ImageConverter.from_preset(preset, name="preprocessing"), preset)
    if image_size is not None:
        converter.image_size = _image_size(image_size, None)
    if converter.image_size is None:
        raise ValueError(f"The keras-hub preset {preset!r} does not say its image size: pass image_size.")
    return BuiltBackbone(model, converter, tuple(converter.image_size), preset)


def default_image_size(name):
    """The input size a backbone is built at when none is given, as (height, width)."""
    if is_keras_hub_source(name):
        keras_hub = import_extra("keras_hub", _KERAS_HUB_FEATURE)

        size = load_from_hub(lambda: keras_hub.layers.ImageConverter.from_preset(name), name).image_size
        if size is None:
            raise ValueError(f"The keras-hub preset {name!r} does not say its image size: pass image_size.")
        return tuple(size)
    spec = get_backbone_spec(name)
    return (spec.default_size, spec.default_size)
