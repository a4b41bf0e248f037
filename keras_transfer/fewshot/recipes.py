"""The few-shot recipes and defaults, defined once (imports no TensorFlow: `--help` reads them).

>>> PROTOTYPE_FINETUNE_RECIPE.head_epochs
0
"""

from keras_transfer.finetune.recipes import IMAGE_RECIPE

# What `--method` chooses for images and for text.
IMAGE_METHODS = ("prototypes", "finetune")
TEXT_METHODS = ("prototypes", "setfit")

# Fine-tuning from prototypes: the head starts at the class means, so there is
# no head phase; the top 30% of the backbone and the head train on the
# frozen layers' cached output (IMAGE_RECIPE's frozen cut). K examples give
# one step per epoch, hence 10 epochs of Adam at 1e-4: measured on
# cats_and_dogs_filtered (ImageNet MobileNetV2, 160 px, K = 5, 2 draws, all
# 1,000 validation images), 0.959 where 1e-5 reached 0.946 and the prototypes
# 0.918. All K: benchmarks/results/few_shot.md.
PROTOTYPE_FINETUNE_RECIPE = IMAGE_RECIPE.replace(
    head_epochs=0,
    finetune_epochs=10,
    finetune_optimizer="adam",
    finetune_learning_rate=1e-4,
    probe_start=False,
)
