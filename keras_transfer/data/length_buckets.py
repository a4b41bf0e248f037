"""Length bucketing: token batches padded only as far as their longest example needs.

A text model's preprocessor pads every example to the full `sequence_length`,
so a batch of SST-2 phrases of 10 tokens costs as much as one of 64-token
sentences. The two steps here work on a dataset of such fixed-length token
batches (dicts with `token_ids`, `padding_mask`, ..., with or without labels
and sample weights) and change only how many padding columns reach the model:

- `trim_batches` cuts each batch to the smallest bucket length that holds its
  longest example. Batches and their order stay as they are, so predictions
  come back in input order. The lengths are a few fixed boundaries (16, 32,
  64, ... up to `sequence_length`), so a compiled step (XLA on a GPU) sees a
  bounded number of shapes, not one per batch.
- `group_by_length` (training only) first regroups the examples of a window
  of consecutive batches so each batch holds examples of similar length:
  the window is sorted by token count and cut back into batches of the
  sizes it came in (so the number of batches, and the dataset's cardinality,
  stay the same), and the batches of a window are shuffled. The data still
  shuffles as before: only examples within one window change batches.

A model built on the padding mask (BERT's attention mask, mean pooling over
`padding_mask`) gives the same outputs for an example padded to 16 or to 128
tokens, so trimming changes speed, not results.
"""

import numpy as np
import tensorflow as tf

# Bucket lengths below the sequence length: powers of two with the midpoints
# between them, so a batch is padded by at most a third above its longest example.
DEFAULT_BOUNDARIES = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# Batches per window that `group_by_length` regroups.
DEFAULT_WINDOW = 16
MASK = "padding_mask"


def bucket_lengths(sequence_length, boundaries=DEFAULT_BOUNDARIES):
    """The lengths batches are padded to: the boundaries below `sequence_length`, then `sequence_length`."""
    sequence_length = int(sequence_length)
    lengths = sorted({int(b) for b in boundaries if 0 < int(b) < sequence_length} | {sequence_length})
    return tuple(lengths)


def example_lengths(tokens):
    """Tokens per example (the columns up to its last unmasked one) of a batch dict with `padding_mask`."""
    mask = tf.cast(tokens[MASK], tf.int32)
    columns = tf.range(1, tf.shape(mask)[1] + 1, dtype=tf.int32)
    return tf.reduce_max(mask * columns[tf.newaxis, :], axis=1)


def _split(element):
    """`(tokens, rest)` of a batch: the token dict and the tuple of what follows it (labels, weights)."""
    if isinstance(element, tuple):
        return element[0], element[1:]
    return element, ()


def _join(tokens, rest):
    return (tokens, *rest) if rest else tokens


def _check_tokens(dataset):
    tokens, _ = _split(dataset.element_spec)
    if not isinstance(tokens, dict) or MASK not in tokens:
        raise ValueError(
            f"Length bucketing needs batches of token dicts with {MASK!r}, got {dataset.element_spec}: "
            "bucket the batches a text model's preprocessor makes."
        )
    return tokens


def trim_batches(dataset, lengths):
    """Cuts every batch of a token dataset to the smallest of `lengths` that holds its longest example.

    Right-padded batches (keras-hub's packers pad on the right) lose
    columns on the right; all of them keep their examples, in order.
    """
    _check_tokens(dataset)
    buckets = tf.constant(sorted(int(length) for length in lengths), tf.int32)

    def trim(*element):
        tokens, rest = _split(element if len(element) > 1 else element[0])
        longest = tf.reduce_max(example_lengths(tokens))
        index = tf.minimum(tf.searchsorted(buckets, longest[tf.newaxis], side="left")[0], tf.size(buckets) - 1)
        width = tf.minimum(buckets[index], tf.shape(tokens[MASK])[1])
        return _join({name: value[:, :width] for name, value in tokens.items()}, rest)

    return dataset.map(trim, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def group_by_length(dataset, *, window=DEFAULT_WINDOW, seed=0):
    """Regroups the examples of every `window` consecutive batches so each batch holds similar lengths.

    The batches must all have the same width (fixed-length padding, before
    `trim_batches`). Each window is sorted by token count and cut into
    batches of the sizes it came in, whose order is then shuffled with
    `seed`: the same input order gives the same batches (so a resumed run
    sees what an uninterrupted one saw), and the number of batches and the
    examples of an epoch stay the same.
    """
    _check_tokens(dataset)
    cardinality = dataset.cardinality()
    random = tf.data.Dataset.random(seed=int(seed)).map(lambda value: tf.stack([value, 0]))

    def regroup(element, seeds):
        # Every component is (window batches, batch size, ...) with a ragged batch dimension.
        flat = tf.nest.flatten(element)
        sizes = flat[0].row_lengths()
        # A width unknown to the static shape comes ragged too: every batch of a window has the same one.
        values = [part.values.to_tensor() if isinstance(part.values, tf.RaggedTensor) else part.values for part in flat]
        tokens, _ = _split(tf.nest.pack_sequence_as(element, values))
        order = tf.argsort(example_lengths(tokens), stable=True)
        batches = tf.random.experimental.stateless_shuffle(tf.range(tf.size(sizes)), seed=seeds)
        regrouped = [tf.RaggedTensor.from_row_lengths(tf.gather(value, order), sizes) for value in values]
        regrouped = [tf.gather(part, batches) for part in regrouped]
        return tf.data.Dataset.from_tensor_slices(tf.nest.pack_sequence_as(element, regrouped))

    grouped = tf.data.Dataset.zip(dataset.ragged_batch(int(window)), random).flat_map(regroup)
    grouped = grouped.map(_dense, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if int(cardinality) >= 0:
        grouped = grouped.apply(tf.data.experimental.assert_cardinality(cardinality))
    return grouped


def _dense(*element):
    element = element if len(element) > 1 else element[0]
    return tf.nest.map_structure(lambda part: part.to_tensor() if isinstance(part, tf.RaggedTensor) else part, element)


def bucket_batches(dataset, lengths, *, group=False, window=DEFAULT_WINDOW, seed=0):
    """`trim_batches`, after `group_by_length` when `group` (training): see the module's docstring."""
    if group:
        dataset = group_by_length(dataset, window=window, seed=seed)
    return trim_batches(dataset, lengths).prefetch(tf.data.AUTOTUNE)


def padded_tokens(dataset):
    """`(real tokens, padded tokens)` over a dataset of token batches: what padding costs."""
    real = padded = 0
    for element in dataset:
        tokens, _ = _split(element)
        mask = np.asarray(tokens[MASK])
        real += int(mask.sum())
        padded += int(mask.size)
    return real, padded
