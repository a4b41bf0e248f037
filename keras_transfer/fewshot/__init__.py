"""Few-shot transfer: a handful of labelled examples per class.

Modules: shots (drawing exactly K examples of each class), prototypes (class
means of frozen backbone features in a cosine head: no training; and
fine-tuning that starts from them), recipes (the fine-tuning recipe for K
examples), setfit (contrastive fine-tuning of a sentence-embedding backbone).
The public names are re-exported by `keras_transfer` (`kt.draw_shots`,
`kt.prototype_classifier`, ...); this package imports nothing heavy, so the
command line reads its defaults without TensorFlow.
"""
