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

from keras_transfer.deploy.tfmot import bridge
from keras_transfer import data
from keras_transfer import atomic_files as files
from keras_transfer import evaluation
from keras_transfer.deploy import litert
from keras_transfer.deploy.tfmot import optimize
from keras_transfer.deploy import reports as report
from keras_transfer.finetune import schedules
from keras_transfer.data.augmentation import augmentation
from keras_transfer.finetune.layer_blocks import layer_blocks
from keras_transfer.finetune.progressive import ProgressiveUnfreezing
from keras_transfer.models.backbones import (
    BackbonePreprocessing,
    BackboneSpec,
    UnknownBackboneError,
    build_backbone,
    build_text_backbone,
    get_backbone_spec,
    list_backbones,
    list_text_backbones,
)
from keras_transfer.deploy.tfmot.bridge import Bridge, UnsupportedLayerError, to_tf_keras
from keras_transfer.deploy.export import (
    BudgetChoice,
    ExportCheck,
    ExportResult,
    Quantization,
    check_export,
    export_within_budget,
    keras_quantize,
)
from keras_transfer.deploy.export import export as export_model
from keras_transfer.finetune.feature_cache import FeatureCache
from keras_transfer.finetune.layerwise import LayerwiseLearningRates, depth_decay, layerwise_learning_rates
from keras_transfer.deploy.litert import LiteRTModel
from keras_transfer.finetune.freezing import freeze, parameter_counts, recompile, select_layers, unfreeze
from keras_transfer.models.heads import Head
from keras_transfer.models.image_classifier import ImageClassifier
from keras_transfer.deploy.tfmot.optimize import OptimizedModel, cluster, prune, quantization_aware
from keras_transfer.deploy.reports import ModelReport, measure_export
from keras_transfer.finetune.schedules import LearningRateFinderResult, OneCycle, find_learning_rate, warmup_cosine
from keras_transfer.models.transfer_model import TransferModel
from keras_transfer.models.text_classifier import TextClassifier, TokenPooling
from keras_transfer.finetune.optimizers import make_optimizer
from keras_transfer.finetune.recipes import IMAGE_RECIPE, TEXT_RECIPE, TEXT_RECIPES, Recipe, text_recipe
from keras_transfer.finetune.two_phase import FineTuneHistory
from keras_transfer.finetune.weight_transfer import TransferReport, extract_features, transfer_weights

__version__ = "0.1.0"
