"""Data in every form export accepts (arrays, dicts, `(x, y)` tuples, datasets) as numpy batches."""

import numpy as np
import tensorflow as tf

from keras_transfer.deploy import litert


def iterate_batches(data):
    """Yields `(x, y or None)` numpy batches from any accepted form of data."""
    if isinstance(data, tf.data.Dataset):
        for batch in data.as_numpy_iterator():
            if isinstance(batch, tuple):
                yield batch[0], (np.asarray(batch[1]) if len(batch) > 1 else None)
            else:
                yield batch, None
    elif isinstance(data, tuple) and len(data) == 2:
        yield _as_numpy(data[0]), np.asarray(data[1])
    else:
        yield _as_numpy(data), None


def collect_examples(data, max_examples=None):
    """All of `data` (up to `max_examples` rows) as one `(x, y or None)`."""
    xs, ys, count = [], [], 0
    for x, y in iterate_batches(data):
        xs.append(x)
        ys.append(y)
        count += litert.num_rows(x)
        if max_examples is not None and count >= max_examples:
            break
    if not xs:
        raise ValueError("No examples to check the export on.")
    if isinstance(xs[0], dict):
        x = {name: np.concatenate([batch[name] for batch in xs]) for name in xs[0]}
    else:
        x = np.concatenate(xs)
    y = None if any(batch is None for batch in ys) else np.concatenate(ys)
    if max_examples is not None:
        x = litert.take_rows(x, slice(0, max_examples))
        y = None if y is None else y[:max_examples]
    return x, y


def _as_numpy(x):
    if isinstance(x, dict):
        return {name: np.asarray(value) for name, value in x.items()}
    return np.asarray(x)
