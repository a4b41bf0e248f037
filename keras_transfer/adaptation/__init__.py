"""Domain adaptation: a labelled source domain, an unlabelled target domain.

Modules: methods (the method names and defaults; no TensorFlow), training
(`adapt` and `AdaptationResult`), reversal (DANN's `GradientReversal` layer
and its weight schedule), losses (CORAL and MMD), batch_norm (AdaBN),
trainer (the training step with an adaptation loss), domains (the two
domains' batches, the target's labels split off). Importing this package
loads TensorFlow; the command line reads `methods` from its source instead.
"""

from keras_transfer.adaptation.batch_norm import adapt_batch_norm, batch_norm_layers
from keras_transfer.adaptation.losses import coral_loss, mmd_loss
from keras_transfer.adaptation.methods import METHODS, TEXT_METHODS
from keras_transfer.adaptation.reversal import GradientReversal, ReversalSchedule, reversal_weight
from keras_transfer.adaptation.trainer import AdaptationTrainer
from keras_transfer.adaptation.training import AdaptationResult, adapt

__all__ = [
    "METHODS",
    "TEXT_METHODS",
    "AdaptationResult",
    "AdaptationTrainer",
    "GradientReversal",
    "ReversalSchedule",
    "adapt",
    "adapt_batch_norm",
    "batch_norm_layers",
    "coral_loss",
    "mmd_loss",
    "reversal_weight",
]
