"""The public surface of `keras_transfer` (`import keras_transfer as kt` gives every name here).

Importing it loads TensorFlow and registers the Keras-serializable classes, so
`keras.saving.load_model` reads saved keras_transfer models.
"""

# Every import is a re-export, after TensorFlow is imported quietly.
# ruff: noqa: E402, F401

from keras_transfer.quiet import import_tensorflow_quietly as _import_tensorflow_quietly

_import_tensorflow_quietly()  # before anything imports TensorFlow: its start-up log lines are not for users

# Sorted by room; modules imported whole are namespaces: kt.data.image_folder, kt.report.format_table, ...
from keras_transfer import adaptation, data, distribute, evaluation, zeroshot
from keras_transfer import atomic_files as files
from keras_transfer.adaptation import AdaptationResult, GradientReversal, adapt, adapt_batch_norm
from keras_transfer.data.image_augmentation import augmentation
from keras_transfer.deploy import export, litert
from keras_transfer.deploy import reports as report
from keras_transfer.deploy.budget import BudgetChoice, export_within_budget
from keras_transfer.deploy.checks import ExportCheck, check_export
from keras_transfer.deploy.export import ExportResult
from keras_transfer.deploy.export import export as export_model
from keras_transfer.deploy.litert import LiteRTModel
from keras_transfer.deploy.mixed_precision import MixedPrecisionChoice, export_mixed_precision
from keras_transfer.deploy.quantization import Quantization, keras_quantize
from keras_transfer.deploy.reports import ModelReport, measure_export
from keras_transfer.deploy.tfmot.bridge import Bridge, to_tf_keras
from keras_transfer.deploy.tfmot.optimize import OptimizedModel, cluster, low_bit_weights, prune, quantization_aware
from keras_transfer.distribute import keras_fixes as _keras_fixes
from keras_transfer.errors import (
    DataError,
    MissingExtraError,
    ModelFileError,
    UnknownBackboneError,
    UnsupportedLayerError,
    WeightsUnavailableError,
)
from keras_transfer.fewshot.prototypes import (
    class_means,
    finetune_from_prototypes,
    fit_prototypes,
    prototype_classifier,
)
from keras_transfer.fewshot.recipes import PROTOTYPE_FINETUNE_RECIPE
from keras_transfer.fewshot.setfit import SetFitHistory, setfit_classifier
from keras_transfer.fewshot.shots import dataset_shots, draw_shots
from keras_transfer.finetune.feature_cache import FeatureCache
from keras_transfer.finetune.freezing import freeze, parameter_counts, recompile, select_layers, unfreeze
from keras_transfer.finetune.layer_blocks import layer_blocks
from keras_transfer.finetune.layerwise import LayerwiseLearningRates, depth_decay, layerwise_learning_rates
from keras_transfer.finetune.lr_finder import LearningRateFinderResult, find_learning_rate
from keras_transfer.finetune.optimizers import make_optimizer
from keras_transfer.finetune.progressive import ProgressiveUnfreezing
from keras_transfer.finetune.recipes import IMAGE_RECIPE, TEXT_RECIPE, TEXT_RECIPES, Recipe, text_recipe
from keras_transfer.finetune.schedules import OneCycle, warmup_cosine
from keras_transfer.finetune.two_phase import FineTuneHistory
from keras_transfer.finetune.weight_transfer import TransferReport, extract_features, transfer_weights
from keras_transfer.models.heads import Head
from keras_transfer.models.image_backbones import (
    BackboneSpec,
    build_backbone,
    get_backbone_spec,
    list_backbones,
)
from keras_transfer.models.image_classifier import ImageClassifier
from keras_transfer.models.layers import BackbonePreprocessing, TokenPooling
from keras_transfer.models.text_backbones import build_text_backbone, list_text_backbones
from keras_transfer.models.text_classifier import TextClassifier
from keras_transfer.models.transfer_model import TransferModel
from keras_transfer.multitask.model import MultiTaskImageModel, MultiTaskModel, MultiTaskTextModel
from keras_transfer.multitask.tasks import Task, TaskHeads
from keras_transfer.zeroshot import zero_shot_classifier, zero_shot_image_classifier

_keras_fixes.install()  # Keras 3 models train under MultiWorkerMirroredStrategy (distribute.keras_fixes)
