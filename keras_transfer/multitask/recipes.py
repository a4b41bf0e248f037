"""What a multi-task model's `fine_tune` does when given no recipe (no TensorFlow: the CLI shows these).

Multi-task models train every epoch on the whole network: their heads do not
train on cached features (`Recipe.cache_features`), since the cache keeps one
label per example, not a dict of labels with per-task weights.
"""

from keras_transfer.finetune.recipes import GUIDE_RECIPE, TEXT_RECIPE

# Text: a short head phase on the frozen backbone, then the whole network at
# BERT's rate with a warm-up and decay (the `full` text recipe's schedule),
# for 2 epochs: on 2 CPU cores one epoch of all-MiniLM-L6-v2 costs about 100 s
# per 1,000 sentences. benchmarks/results/multi_task.md runs it with 1
# fine-tuning epoch on SST-2 and SMS spam against two single-task models.
MULTITASK_TEXT_RECIPE = TEXT_RECIPE.replace(head_epochs=1, finetune_epochs=2, schedule="warmup_cosine")

# Images: the Keras guide's two phases (Adam on the heads, then RMSprop at a
# 100x lower rate on the top 30% of the backbone); fine-tuning goes on only
# while it beats the best validation epoch so far.
MULTITASK_IMAGE_RECIPE = GUIDE_RECIPE.replace(finetune_patience=1)
