"""Choosing a sequence length for transformer backbones from the texts themselves."""

import math

import numpy as np
import tensorflow as tf

from keras_transfer.errors import DataError


def _collect_texts(texts):
    """A list of Python strings from a list, an array or a (batched) dataset."""
    if not isinstance(texts, tf.data.Dataset):
        return [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts]
    if isinstance(texts.element_spec, tuple):  # (texts, labels) batches
        texts = texts.map(lambda text, *_: text)
    if texts.element_spec.shape.rank == 1:
        texts = texts.unbatch()
    return [text.decode("utf-8") for batch in texts.batch(1024).as_numpy_iterator() for text in batch]


def _token_counts(token_ids):
    if isinstance(token_ids, tf.RaggedTensor):
        return token_ids.row_lengths().numpy()
    if isinstance(token_ids, list):  # keras-hub returns lists when called eagerly
        return np.array([len(ids) for ids in token_ids])
    raise ValueError(
        f"the tokenizer returned a {type(token_ids).__name__}, not ragged token "
        f"ids: use a tokenizer without a fixed sequence_length."
    )


def choose_sequence_length(texts, tokenizer, *, percentile=95, maximum=None, sample_size=2000, seed=0):
    """Pick a sequence length that fits most texts without wasting padding.

    Tokenizes a seeded random sample of the texts and returns the given
    percentile of the token counts, plus 2 for the [CLS] and [SEP] tokens,
    at least 8 and at most `maximum`.

    Args:
        texts: A list or array of strings, or a dataset from these loaders
            (batches of `(texts, labels)`, read to the end) or of strings.
        tokenizer: A keras-hub tokenizer (or any callable mapping a tf.string
            tensor to ragged token ids), e.g.
            `keras_hub.models.BertTokenizer.from_preset(...)`.
        percentile: Percentile of the token counts to cover, in [0, 100].
        maximum: Optional upper bound, e.g. the backbone's
            `max_sequence_length`.
        sample_size: Number of texts to tokenize.
        seed: Seed for the sample.

    Returns:
        The sequence length, an int.

    Example:
        >>> length = choose_sequence_length(train, tokenizer, maximum=512)
        >>> preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        ...     tokenizer, sequence_length=length)
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile!r}.")
    texts = _collect_texts(texts)
    if not texts:
        raise DataError("choose_sequence_length got no texts: pass a non-empty list or dataset.")
    if len(texts) > sample_size:
        chosen = np.random.default_rng(seed).choice(len(texts), sample_size, replace=False)
        texts = [texts[i] for i in chosen]
    counts = _token_counts(tokenizer(tf.constant(texts, dtype=tf.string)))
    special_tokens = 2  # [CLS] and [SEP]
    length = max(int(math.ceil(np.percentile(counts, percentile))) + special_tokens, 8)
    return min(length, int(maximum)) if maximum is not None else length
