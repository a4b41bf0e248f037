"""keras-transfer: transfer learning on Keras 3.

Pretrained image and text backbones with new heads, LoRA, freezing and two-phase fine-tuning
(feature caching, progressive unfreezing, layer-wise learning rates, one-cycle and warmup-cosine
schedules, an LR finder),
weight transfer, feature extraction, evaluation, checked TFLite/LiteRT export with
post-training quantization, quantization-aware training, pruning and clustering (TF-MOT
through a Keras 3 -> tf_keras bridge), and a command line.

>>> import keras_transfer as kt
>>> model = kt.ImageClassifier("mobilenet_v2", num_classes=3, weights=None, image_size=32)
"""

from keras_transfer import bridge
from keras_transfer import data
from keras_transfer import files
from keras_transfer import evaluation
from keras_transfer import litert
from keras_transfer import optimize
from keras_transfer import report
from keras_transfer import schedules
from keras_transfer.augment import augmentation
from keras_transfer.blocks import layer_blocks
from keras_transfer.callbacks import ProgressiveUnfreezing
from keras_transfer.backbones import (
    BackbonePreprocessing,
    BackboneSpec,
    build_backbone,
    build_text_backbone,
    get_backbone_spec,
    list_backbones,
    list_text_backbones,
)
from keras_transfer.bridge import Bridge, UnsupportedLayerError, to_tf_keras
from keras_transfer.export import (
    BudgetChoice,
    ExportCheck,
    ExportResult,
    Quantization,
    check_export,
    export_within_budget,
    keras_quantize,
)
from keras_transfer.export import export as export_model
from keras_transfer.feature_cache import FeatureCache
from keras_transfer.layerwise import LayerwiseLearningRates, depth_decay, layerwise_learning_rates
from keras_transfer.litert import LiteRTModel
from keras_transfer.freezing import freeze, parameter_counts, recompile, select_layers, unfreeze
from keras_transfer.heads import Head
from keras_transfer.image_classifier import ImageClassifier
from keras_transfer.optimize import OptimizedModel, cluster, prune, quantization_aware
from keras_transfer.report import ModelReport, measure_export
from keras_transfer.schedules import LearningRateFinderResult, OneCycle, find_learning_rate, warmup_cosine
from keras_transfer.task import TransferModel
from keras_transfer.text import TextClassifier, TokenPooling
from keras_transfer.training import FineTuneHistory, make_optimizer
from keras_transfer.transfer import TransferReport, extract_features, transfer_weights

__version__ = "0.1.0"
