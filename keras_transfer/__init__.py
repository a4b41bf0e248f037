"""keras-transfer: transfer learning on Keras 3.

Pretrained image and text backbones with new heads, LoRA, freezing and two-phase fine-tuning
(feature caching, progressive unfreezing, layer-wise learning rates, one-cycle and warmup-cosine
schedules, an LR finder), weight transfer, feature extraction, evaluation, checked TFLite/LiteRT
export with post-training quantization (the TFLite converter or the LiteRT Quantizer, mixed int4/int8
within an accuracy budget), quantization-aware training (int8; binary, ternary or int4 kernels),
pruning and clustering (TF-MOT through a Keras 3 -> tf_keras bridge), and a command line.

The package has one room per capability: `models` (tasks, heads, backbones), `finetune`
(recipes, freezing, schedules, caching, weight transfer), `data`, `deploy` (quantization,
export, LiteRT, reports; `deploy.tfmot` for TF-MOT), `evaluation` and `cli`. The names in
`keras_transfer.api` are the public surface; importing this package also registers the Keras-serializable classes,
so `keras.saving.load_model` reads saved keras_transfer models.

>>> import keras_transfer as kt
>>> model = kt.ImageClassifier("mobilenet_v2", num_classes=3, weights=None, image_size=32)
"""

from keras_transfer.quiet import started_as_command
from keras_transfer.version import __version__

if started_as_command():
    # `keras-transfer` parses its arguments (and prints --help) before TensorFlow loads; cli.main then
    # imports keras_transfer.api, and a name used before that loads it.
    def __getattr__(name):
        import importlib

        api = importlib.import_module("keras_transfer.api")
        if name != "api" and hasattr(api, name):
            return getattr(api, name)
        raise AttributeError(f"module 'keras_transfer' has no attribute {name!r}")

else:
    from keras_transfer.api import *  # noqa: F403
