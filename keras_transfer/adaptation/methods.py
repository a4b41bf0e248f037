"""The domain-adaptation methods and their defaults, defined once (no TensorFlow: `--help` reads them).

- `"dann"`: a domain classifier learns to tell source from target features
  through a gradient-reversal layer, so the backbone learns features it
  cannot tell apart (Ganin et al., 2016).
- `"coral"`: the covariances of source and target features are pulled
  together (Deep CORAL, Sun & Saenko, 2016).
- `"mmd"`: the maximum mean discrepancy between them, with a sum of Gaussian
  kernels, is pulled down (DAN, Long et al., 2015).
- `"adabn"`: BatchNormalization statistics are estimated again on the target
  data after training on the source (Li et al., 2016); no training on the
  target, and for image backbones only (text backbones have no
  BatchNormalization).
"""

METHODS = ("dann", "coral", "mmd", "adabn")
# Methods that train with a loss on the target's features (AdaBN only re-estimates statistics).
TRAINING_METHODS = ("dann", "coral", "mmd")
# Transformers normalise with LayerNormalization: AdaBN has nothing to re-estimate there.
TEXT_METHODS = TRAINING_METHODS

# The adaptation loss's weight against the classification loss. DANN's is the
# largest reversal weight, reached along `reversal_weight`'s schedule; CORAL's
# and MMD's weight their losses. CORAL divides by 4 d^2 (d features), which
# leaves it small: on digits -> MNIST (benchmarks/domain_adaptation.py, small
# CNN, 128 features, one seed) CORAL at 1 gained 0.05 over the source-only
# model and at 10 gained 0.11; MMD at 1 gained 0.22 and at 10 lost 0.09. On
# SST-2 -> Yelp (all-MiniLM-L6-v2 fine-tuned, one seed) CORAL at 10 gained 0.09
# and MMD at 1 0.07. DANN at 1 lost on both pairs (its domain loss grew instead
# of settling near log 2); at 0.1 it gained 0.11 on digits -> MNIST (3 seeds;
# not measured on text).
DEFAULT_WEIGHTS = {"dann": 0.1, "coral": 10.0, "mmd": 1.0}
# Hidden units of DANN's domain classifier (features -> Dense(relu) -> Dense(1)).
DOMAIN_CLASSIFIER_UNITS = 256
# MMD's Gaussian kernel bandwidths, as multiples of the batch's mean squared distance.
MMD_BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)


def check_method(method, *, text=False):
    """Raises ValueError for a method that is unknown (or that text models cannot use); returns it."""
    allowed = TEXT_METHODS if text else METHODS
    if method not in allowed:
        hint = (
            " (AdaBN re-estimates BatchNormalization, which text backbones have none of)" if method == "adabn" else ""
        )
        raise ValueError(f"Unknown adaptation method {method!r}{hint}: use one of {', '.join(allowed)}.")
    return method
