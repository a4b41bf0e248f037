"""The idx format of MNIST-style files (`t10k-images-idx3-ubyte.gz`), read with numpy.

A big-endian header (two zero bytes, a type code, the number of dimensions,
then one 4-byte size per dimension) and the values; `.gz` files are read
through gzip.
"""

import gzip

import numpy as np

from keras_transfer.errors import DataError

# idx type codes -> numpy big-endian types.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """The array in an idx file (gzipped or not): `(N, 28, 28)` uint8 images, `(N,)` uint8 labels, ...

    Raises:
        DataError: the file is not in the idx format.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as file:
        content = file.read()
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an idx file (MNIST format): its header is not 0, 0, type, dimensions.")
    dimensions = content[3]
    shape = tuple(int(size) for size in np.frombuffer(content, ">u4", count=dimensions, offset=4))
    dtype = np.dtype(_IDX_TYPES[content[2]])
    offset = 4 + 4 * dimensions
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(content) - offset != expected:
        raise DataError(f"{path} holds {len(content) - offset} bytes of values, but its header says {expected}.")
    return np.frombuffer(content, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))
