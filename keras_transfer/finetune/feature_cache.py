"""Backbone features computed once, so a head trains without running a frozen backbone every epoch.

While the backbone is frozen, every epoch of head training pushes each image
through the same backbone again. `FeatureCache` runs that forward pass once
(optionally for a few augmented copies of each example), keeps the features in
memory or in a file on disk, and serves them as a `tf.data.Dataset` for the
head alone. The head's layers are the model's own layers, so once trained they
are already in place on the backbone.
"""

import math
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.finetune.progress import resolve_verbose


class FeatureCache:
    """Features and labels of a dataset, one row per example and augmented copy.

    Build it with `FeatureCache.compute`. `features` has shape
    `(copies, num_examples, *feature_shape)`; on disk it is a read-only
    `np.memmap`, so data larger than memory is read batch by batch.

    Example:
    >>> cache = FeatureCache.compute(model.feature_extractor(), train, copies=2)  # doctest: +SKIP
    >>> model.head_model().fit(cache.dataset(32), steps_per_epoch=cache.steps(32))  # doctest: +SKIP
    """

    def __init__(self, features, labels, batch_size=32, copy_labels=None):
        if len(features) < 1 or features.shape[1] != len(labels):
            raise ValueError(
                f"features of shape {features.shape} do not match {len(labels)} labels: "
                "expected (copies, num_examples, ...)."
            )
        self.features = features
        # The first copy's labels; `copy_labels[c]` those of copy c when the data came in another order
        # each pass (a dataset that reshuffles), else None.
        self.labels = labels
        self.copy_labels = copy_labels
        # The batch size of the data it came from: the head trains on the same.
        self.batch_size = int(batch_size)

    @property
    def copies(self):
        return self.features.shape[0]

    @property
    def num_examples(self):
        return self.features.shape[1]

    @classmethod
    def compute(cls, extractor, data, *, copies=1, directory=None, verbose="auto"):
        """Runs `extractor` over `data` `copies` times and keeps what it returns.

        Each pass reads `data` again, so a dataset that augments (or shuffles)
        gives a new augmented copy per pass; the first pass fixes the number of
        examples and every later pass must yield as many.

        Args:
            extractor: a `keras.Model` from the model's inputs to the features
                the head takes (e.g. `model.feature_extractor()`).
            data: a finite `tf.data.Dataset` of `(inputs, labels)` batches.
            copies: passes over `data` to keep; more than one only makes sense
                when `data` augments.
            directory: a folder for an on-disk cache (for data that does not
                fit in memory); None keeps the features in memory.
            verbose: show a progress bar per pass.

        Returns:
            A `FeatureCache`.
        """
        if int(copies) < 1:
            raise ValueError(f"copies must be >= 1, got {copies}.")
        if not isinstance(data, tf.data.Dataset):
            raise TypeError(
                f"FeatureCache.compute takes a tf.data.Dataset of (inputs, labels) batches, "
                f"got {type(data).__name__}; wrap arrays with tf.data.Dataset.from_tensor_slices(...).batch(n)."
            )
        if data.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError("The dataset repeats forever: pass one epoch (drop .repeat()) to cache it.")
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) != 2:
            raise ValueError("FeatureCache needs labelled data: a dataset of (inputs, labels) batches.")
        # One trace for every batch, the last shorter one included: calling the
        # model eagerly per batch would cost more than the forward pass.
        forward = tf.function(lambda inputs: extractor(inputs, training=False), input_signature=[spec[0]])
        writer = _FeatureWriter(directory)
        labels = None
        every_pass = []
        batch_size = None
        steps = _cardinality(data)
        for copy in range(int(copies)):
            progress = keras.utils.Progbar(steps, verbose=_progress_verbosity(verbose), unit_name="batch")
            pass_labels = []
            for step, (inputs, batch_labels) in enumerate(data, start=1):
                batch_size = batch_size or len(batch_labels)
                writer.write(np.asarray(forward(inputs)))
                pass_labels.append(np.asarray(batch_labels))
                progress.update(step)
            pass_labels = np.concatenate(pass_labels)
            if labels is None:
                labels = pass_labels
            elif len(pass_labels) != len(labels):
                raise ValueError(
                    f"Pass {copy + 1} over the data gave {len(pass_labels)} examples, the first "
                    f"{len(labels)}: cache a dataset that yields the same examples every pass."
                )
            every_pass.append(pass_labels)
        if labels is None:
            raise ValueError("The dataset is empty: there is nothing to cache.")
        # A dataset that reshuffles gives each pass its own order: each copy keeps its own labels.
        reordered = any(not np.array_equal(other, labels) for other in every_pass[1:])
        copy_labels = np.stack(every_pass) if reordered else None
        return cls(writer.finish(int(copies), len(labels)), labels, batch_size, copy_labels)

    def gather_workers(self, strategy):
        """The whole cache, on every worker, from each worker's part of it (multi-worker training).

        Each worker cached its rows of every batch (`distribute.sharding`);
        they go back in the order of the single dataset, so what trains on the
        cache sees what it would in one process. Outside multi-worker training:
        this cache.
        """
        from keras_transfer.distribute import sharding

        parts = sharding.all_gather_rows([self.batch_size], strategy)
        if len(parts) == 1:
            return self
        batch_size = int(sum(int(part[0]) for part in parts))  # the rows of one global batch

        def whole(rows):
            return sharding.interleave_rows(sharding.all_gather_rows(rows, strategy), len(parts), batch_size)

        features = np.stack([whole(np.asarray(copy, dtype="float32")) for copy in self.features])
        # Every worker gathers the same things (a collective each): each copy's labels, reordered or not.
        own_copy_labels = [self.labels] * self.copies if self.copy_labels is None else self.copy_labels
        copy_labels = np.stack([whole(labels) for labels in own_copy_labels])
        if all(np.array_equal(labels, copy_labels[0]) for labels in copy_labels[1:]):
            copy_labels = None
        return FeatureCache(features, whole(self.labels), batch_size, copy_labels)

    def transform(self, model, *, directory=None, verbose="auto"):
        """A new cache of `model` run over these features, every copy in order.

        The top of a network over its cached bottom: features cached below
        the fine-tuned layers give the pooled features of the layers above
        without reading the data again.
        """
        forward = tf.function(
            lambda inputs: model(inputs, training=False),
            input_signature=[tf.TensorSpec((None, *self.features.shape[2:]), tf.float32)],
        )
        writer = _FeatureWriter(directory)
        size = self.batch_size
        for copy in self.features:  # batch by batch: an on-disk cache is read, not loaded whole
            progress = keras.utils.Progbar(self.steps(size), verbose=_progress_verbosity(verbose), unit_name="batch")
            for step, start in enumerate(range(0, self.num_examples, size), start=1):
                writer.write(np.asarray(forward(np.asarray(copy[start : start + size], dtype="float32"))))
                progress.update(step)
        return FeatureCache(
            writer.finish(self.copies, self.num_examples), self.labels, self.batch_size, self.copy_labels
        )

    def steps(self, batch_size):
        """Batches in one epoch: every example once."""
        return math.ceil(self.num_examples / batch_size)

    def dataset(self, batch_size=32, *, shuffle=True, seed=None):
        """An endless dataset of `(features, labels)` batches; fit it with `steps_per_epoch=steps(batch_size)`.

        One epoch shows each example once; epoch `e` shows augmented copy
        `e % copies`, so an epoch means the same as without the cache. Labels
        of a dataset with one copy and `shuffle=False` come in the order the
        data gave them.
        """
        rng = np.random.default_rng(seed)
        features, labels = self.features, self.labels

        def batches():
            epoch = 0
            while True:
                copy = features[epoch % self.copies]
                copy_labels = labels if self.copy_labels is None else self.copy_labels[epoch % self.copies]
                order = rng.permutation(self.num_examples) if shuffle else np.arange(self.num_examples)
                for start in range(0, self.num_examples, batch_size):
                    # Sorted within a batch (same gradient): a memmap reads front to back.
                    index = np.sort(order[start : start + batch_size])
                    yield np.asarray(copy[index], dtype="float32"), copy_labels[index]
                epoch += 1

        signature = (
            tf.TensorSpec((None, *features.shape[2:]), tf.float32),
            tf.TensorSpec((None, *labels.shape[1:]), tf.as_dtype(labels.dtype)),
        )
        return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(2)

    def validation_dataset(self, batch_size=32):
        """The first copy, in order, once: for `validation_data`."""
        return tf.data.Dataset.from_tensor_slices((np.asarray(self.features[0], dtype="float32"), self.labels)).batch(
            batch_size
        )


class _FeatureWriter:
    """Collects feature batches in memory, or appends them to a raw file read back as a memmap."""

    def __init__(self, directory):
        self.chunks = []
        self.file = None
        self.shape = None
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
            handle, self.path = tempfile.mkstemp(prefix="features_", suffix=".f32", dir=directory)
            self.file = os.fdopen(handle, "wb")

    def write(self, batch):
        batch = np.ascontiguousarray(batch, dtype="float32")
        if self.shape is None:
            self.shape = batch.shape[1:]
        if self.file is not None:
            self.file.write(batch.tobytes())
        else:
            self.chunks.append(batch)

    def finish(self, copies, num_examples):
        shape = (copies, num_examples, *self.shape)
        if self.file is None:
            return np.concatenate(self.chunks).reshape(shape)
        self.file.close()
        return np.memmap(self.path, dtype="float32", mode="r", shape=shape)


def _cardinality(dataset):
    count = int(dataset.cardinality())
    return count if count >= 0 else None


def _progress_verbosity(verbose):
    """A bar on a terminal; nothing off one, where `fine_tune` says what was cached in one line."""
    return 1 if resolve_verbose(verbose) == 1 else 0
