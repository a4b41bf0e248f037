"""Data for transfer learning: image folders, arrays, text files, TFDS, augmentation.

Every loader returns `tf.data.Dataset` objects of `(inputs, labels)` batches
that carry `class_names`, `num_classes`, `num_examples` and `skipped_files`.
"""

from keras_transfer.data.augmentation import AUGMENTATION_PRESETS, augmentation
from keras_transfer.data.images import (
    IMAGE_EXTENSIONS,
    check_num_classes,
    class_names_of,
    from_arrays,
    from_tfds,
    image_folder,
    tfds_image_folder,
)
from keras_transfer.data.text import (
    CLEANING_STEPS,
    LABEL_MODES,
    TextCleaner,
    choose_sequence_length,
    from_pandas,
    from_texts,
    from_tfds_text,
    text_file,
)
from keras_transfer.errors import DataError
