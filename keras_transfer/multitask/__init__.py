"""Multi-task learning: one backbone, several named heads trained together.

Modules: tasks (`Task`: a name, a `Head`, a loss weight; `TaskHeads`: the
heads of all tasks on the shared features, with their loss and metric dicts),
data (the two forms of training data made into one dataset of mixed batches
with per-task sample weights), model (`MultiTaskTextModel`,
`MultiTaskImageModel` and their shared base `MultiTaskModel`), export (one
multi-output LiteRT file checked task by task in the interpreter), defaults
(what the command line shows without TensorFlow). The public names are
re-exported by `keras_transfer` (`kt.Task`, `kt.MultiTaskTextModel`, ...);
this package imports nothing heavy.
"""
