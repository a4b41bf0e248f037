"""Data for transfer learning: image folders, arrays, text files, TFDS, augmentation.

Every loader returns `tf.data.Dataset` objects of `(inputs, labels)` batches
that carry `class_names`, `num_classes`, `num_examples` and `skipped_files`.
A `validation_split` is always the one seeded, class-stratified split of
`keras_transfer.data.splits.split_train_validation`.

Modules: images (class folders), arrays (numpy), text_files (CSV/TSV),
text_lists (lists, pandas), tfds (TensorFlow Datasets), text_cleaning,
text_labels, sequence_length, augmentation, splits, checks, and the shared
pipeline, text_rows and text_datasets steps.
"""

from keras_transfer.data.arrays import from_arrays
from keras_transfer.data.checks import check_finite, check_num_classes, class_names_of
from keras_transfer.data.image_augmentation import AUGMENTATION_PRESETS, augmentation
from keras_transfer.data.images import IMAGE_EXTENSIONS, image_folder, read_image_files
from keras_transfer.data.sequence_length import choose_sequence_length
from keras_transfer.data.text_cleaning import CLEANING_STEPS, TextCleaner
from keras_transfer.data.text_files import read_column, read_texts, text_file
from keras_transfer.data.text_labels import LABEL_MODES
from keras_transfer.data.text_lists import from_pandas, from_texts
from keras_transfer.data.tfds import from_tfds, from_tfds_text, tfds_image_folder
from keras_transfer.errors import DataError
