"""Image augmentation presets built from Keras 3 preprocessing layers.

Every preset works on float32 batches with pixel values in [0, 255] and keeps
the image size. Apply augmentation to training data only.
"""

import itertools

import keras
from keras import layers

AUGMENTATION_PRESETS = ("none", "flip", "standard", "strong", "randaugment")


def augmentation(preset="standard", *, seed=None):
    """Build a named augmentation pipeline.

    Args:
        preset: One of `AUGMENTATION_PRESETS`:
            "none" returns None; "flip" is a random horizontal flip;
            "standard" adds small rotations, zooms and contrast changes;
            "strong" uses larger factors plus translation, zoom-in crops and
            brightness changes; "randaugment" is `keras.layers.RandAugment`.
        seed: Optional int for reproducible augmentation. Each layer gets its
            own seed derived from it.

    Returns:
        A `keras.Sequential` to call as `aug(images, training=True)`, or None
        for "none".

    Raises:
        ValueError: if `preset` is not a known preset name.

    Example:
        >>> aug = augmentation("standard", seed=0)
        >>> augmented = aug(images, training=True)  # images: (B, H, W, 3)
    """
    if preset not in AUGMENTATION_PRESETS:
        raise ValueError(f"Unknown augmentation preset {preset!r}. Valid presets: {', '.join(AUGMENTATION_PRESETS)}.")
    if preset == "none":
        return None

    # Distinct seeds so that layers do not draw correlated random numbers.
    seeds = itertools.count(seed) if seed is not None else itertools.repeat(None)

    def flip():
        return [layers.RandomFlip("horizontal", seed=next(seeds))]

    if preset == "flip":
        chain = flip()
    elif preset == "standard":
        chain = flip() + [
            layers.RandomRotation(0.1, seed=next(seeds)),
            layers.RandomZoom(0.1, seed=next(seeds)),
            layers.RandomContrast(0.1, seed=next(seeds)),
        ]
    elif preset == "strong":
        chain = flip() + [
            layers.RandomRotation(0.2, seed=next(seeds)),
            # Negative zoom factors zoom in: a random crop resized back to size.
            layers.RandomZoom((-0.3, 0.1), seed=next(seeds)),
            layers.RandomTranslation(0.15, 0.15, seed=next(seeds)),
            layers.RandomContrast(0.3, seed=next(seeds)),
            layers.RandomBrightness(0.2, value_range=(0, 255), seed=next(seeds)),
        ]
    else:  # "randaugment"
        chain = [layers.RandAugment(value_range=(0, 255), seed=next(seeds))]
    return keras.Sequential(chain, name=f"augmentation_{preset}")
