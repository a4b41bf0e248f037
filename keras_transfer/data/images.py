"""Image classification datasets from folders: one sub-folder of images per class.

Every image loader (`image_folder` here, `from_arrays`, `from_tfds`,
`tfds_image_folder`) returns `tf.data.Dataset` objects that yield batches
`(images, labels)`: images are float32 `(B, H, W, 3)` raw pixels in [0, 255]
(models do their own preprocessing) and labels are int32 class indices `(B,)`.
Like `keras.utils.image_dataset_from_directory`, the datasets carry Python
attributes: `class_names`, `num_classes`, `num_examples` and `skipped_files`;
`image_folder`'s also carry `skipped_reasons` (`{path: why}`).
"""

import os
import warnings
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_transfer.data.checks import check_class_count, check_class_coverage, check_split_range
from keras_transfer.data.pipeline import finish_image_dataset, image_size_pair, resolve_augment
from keras_transfer.data.splits import split_examples
from keras_transfer.distribute import sharding
from keras_transfer.errors import DataError

# The extensions training reads: those of keras.utils.image_dataset_from_directory,
# WebP, and the other names of JPEG files. tf.io.decode_image decodes them all.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp", ".jfif", ".jpe")

# Image files that `predict` (PIL) opens but tf.io.decode_image cannot: found in
# a class folder they are skipped and named, never silently ignored.
OTHER_IMAGE_EXTENSIONS = (
    ".tif", ".tiff", ".heic", ".heif", ".avif", ".ico", ".ppm", ".pgm", ".pbm", ".pnm",
    ".tga", ".psd", ".jp2", ".j2k", ".dib", ".pcx", ".qoi", ".icns", ".dds", ".sgi",
)  # fmt: skip

# Larger images are skipped: PIL's decompression-bomb limit (about 89
# megapixels), so training and `predict` refuse the same files. Decoding one
# takes over 268 MB, a handful in parallel more memory than most machines have.
MAX_IMAGE_PIXELS = 89_478_485


class _FolderScan(NamedTuple):
    class_names: list
    paths: list  # the readable images, class by class
    labels: np.ndarray  # int32 class index per path
    unreadable: list  # skipped paths, in folder order
    reasons: dict  # skipped path -> why
    missing_classes: list  # of the given class_names, those without a folder


def _header_problem(path):
    """Why the header of `path` (read by PIL, no pixels decoded) rules it out, or None.

    Catches empty files and decompression bombs before anything decodes them;
    files PIL cannot identify are left to the decode check.
    """
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the size is checked below
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError as error:
        return f"too large to decode safely ({error})"
    except Exception:  # noqa: BLE001 - PIL raises many kinds; the decode check decides
        return None
    if width * height > MAX_IMAGE_PIXELS:
        return (
            f"{width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is over the "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel limit (a decompression bomb, or a photo "
            f"to scale down first)"
        )
    return None


def _decode_problem(path):
    """A short reason why a file the decode check refused cannot be read."""
    from PIL import Image

    try:
        with open(path, "rb") as file:
            head = file.read(16)
        with Image.open(path) as image:
            kind = image.format
            image.load()
    except Exception as error:  # noqa: BLE001
        text = str(error).split("\n")[0].replace(f" {path!r}", "").replace(path, "the file")[:120]
        return f"cannot be decoded ({text})" if text else "cannot be decoded (corrupt or truncated)"
    extension = os.path.splitext(path)[1].lower()
    if kind and f".{kind.lower()}" not in IMAGE_EXTENSIONS and not head.startswith(b"\xff\xd8"):
        return f"a {kind} image named {extension}: training reads {_formats()} only; convert it"
    return "cannot be decoded by TensorFlow (corrupt or truncated)"


def _unsupported_format(extension):
    kind = "image" if extension in OTHER_IMAGE_EXTENSIONS else "file"
    return f"a {extension or 'extension-less'} {kind}: training reads {_formats()} files only; convert it (e.g. to PNG)"


def _formats():
    return " ".join(IMAGE_EXTENSIONS)


def _unreadable_images(paths):
    """Return the paths that `tf.io.decode_image` cannot decode.

    Decodes every file in a parallel tf.data pipeline. JPEGs are decoded at
    1/8 scale: libjpeg still reads all the compressed data, so the same files
    fail as with a full decode (checked on hundreds of corrupted JPEGs), at
    about half the cost.
    """
    if not paths:
        return []

    def decode_shape(path):
        contents = tf.io.read_file(path)
        shape = tf.cond(
            tf.io.is_jpeg(contents),
            lambda: tf.shape(tf.io.decode_jpeg(contents, channels=3, ratio=8, dct_method="INTEGER_FAST")),
            lambda: tf.shape(tf.io.decode_image(contents, channels=3, expand_animations=False)),
        )
        # Output something computed from the image, or tf.data prunes the
        # decode away and every file looks readable.
        return path, shape

    readable = (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(decode_shape, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .ignore_errors()
        .batch(512)  # fewer Python round trips
    )
    good = {os.fsdecode(path) for batch_paths, _ in readable.as_numpy_iterator() for path in batch_paths}
    return [path for path in paths if path not in good]


def _check_folder(directory):
    if not os.path.exists(directory):
        raise DataError(
            f"image folder {directory!r} does not exist: check the path. It "
            f"should contain one sub-folder per class, e.g. "
            f"{os.path.join(directory, 'cats')}/*.jpg."
        )
    if not os.path.isdir(directory):
        raise DataError(
            f"{directory!r} is a file, not a folder: pass the folder that holds one sub-folder of images per class."
        )


def _class_folders(directory, class_names):
    """The class folders found, and (with `class_names`) the classes named there that have none."""
    with os.scandir(directory) as entries:
        found = sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))
    if not found:
        raise DataError(
            f"found no class sub-folders in {directory!r}: put the images in "
            f"one sub-folder per class, e.g. "
            f"{os.path.join(directory, 'cats')}/*.jpg and "
            f"{os.path.join(directory, 'dogs')}/*.jpg."
        )
    if class_names is None:
        return found, []
    unknown = [name for name in found if name not in class_names]
    if unknown:
        raise DataError(
            f"the classes of image folder {directory!r} differ from {list(class_names)}: its class "
            f"folder(s) {unknown} are not among them. Remove or rename them, or use a model trained on them."
        )
    return found, [name for name in class_names if name not in found]


def _scan_image_folder(directory, class_names=None):
    """List classes and check every image, raising DataError on bad layout.

    With `class_names`, the folder may hold any subset of those classes (and
    no others); labels index `class_names`.
    """
    _check_folder(directory)
    if class_names is not None:
        class_names = [str(name) for name in class_names]
    found, missing = _class_folders(directory, class_names)
    if class_names is None:
        class_names = found

    # Walk each class folder like Keras does (nested folders included).
    files_by_class, reasons = {}, {}
    for name in found:
        files = files_by_class[name] = []
        for root, _, filenames in sorted(os.walk(os.path.join(directory, name))):
            for filename in sorted(filenames):
                path = os.path.join(root, filename)
                extension = os.path.splitext(filename)[1].lower()
                if extension in IMAGE_EXTENSIONS:
                    files.append(path)
                elif extension in OTHER_IMAGE_EXTENSIONS:
                    files.append(path)
                    reasons[path] = _unsupported_format(extension)
    reasons.update(_file_problems([path for files in files_by_class.values() for path in files if path not in reasons]))

    paths, labels, unreadable = [], [], []
    for name, files in files_by_class.items():
        readable = [path for path in files if path not in reasons]
        unreadable += [path for path in files if path in reasons]
        if not readable:
            found_text = (
                f"none of its {len(files)} image files could be decoded"
                if files
                else f"it has no {'/'.join(IMAGE_EXTENSIONS)} files"
            )
            raise DataError(
                f"class folder {os.path.join(directory, name)!r} has no readable "
                f"images ({found_text}): add images to it or remove the folder."
            )
        paths += readable
        labels += [class_names.index(name)] * len(readable)
    check_class_count(class_names, f"image folder {directory!r}")
    return _FolderScan(
        class_names,
        paths,
        np.array(labels, np.int32),
        unreadable,
        {path: reasons[path] for path in unreadable},
        missing,
    )


def _file_problems(paths):
    """`{path: why}` for the image files among `paths` that cannot be trained on (header check, then decode)."""
    reasons = {}
    for path in paths:
        problem = _header_problem(path)
        if problem:
            reasons[path] = problem
    for path in _unreadable_images([path for path in paths if path not in reasons]):
        reasons[path] = _decode_problem(path)
    return reasons


def read_image_files(paths, image_size, *, interpolation="bilinear"):
    """Decodes and resizes image files exactly as the folder loaders do, for prediction.

    Returns `(images, skipped)`: a float32 array of the readable images, in
    order, and `{path: why}` for the others (missing, a folder, a format
    training does not read, corrupt, too large), named as `image_folder`
    names the files it skips.
    """
    paths = [os.fspath(path) for path in paths]
    image_size = image_size_pair(image_size)
    skipped = {}
    for path in paths:
        if os.path.isdir(path):
            skipped[path] = "a folder, not an image file"
        elif not os.path.exists(path):
            skipped[path] = "no such file"
        elif os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS:
            skipped[path] = _unsupported_format(os.path.splitext(path)[1].lower())
    skipped.update(_file_problems([path for path in paths if path not in skipped]))
    readable = [path for path in paths if path not in skipped]
    images = np.zeros((0, *image_size, 3), np.float32)
    if readable:
        # No ignore_errors here: every image must stay beside its path.
        dataset = tf.data.Dataset.from_tensor_slices(readable).map(
            lambda path: _decode_and_resize(path, image_size, interpolation), num_parallel_calls=tf.data.AUTOTUNE
        )
        images = np.stack(list(dataset.as_numpy_iterator())).astype(np.float32)
    return images, {path: skipped[path] for path in paths if path in skipped}


def _decode_and_resize(path, image_size, interpolation):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(image, image_size, method=interpolation)
    image.set_shape((*image_size, 3))
    return image


def _read_images(paths, labels, *, image_size, interpolation, shuffle, seed, keep=None, count=None):
    """Unbatched `(image, label)` pairs, decoded and resized as Keras' directory loader does.

    `keep` (a dataset transformation, `distribute.sharding.keep_for_worker`)
    keeps one worker's `count` files, after the shuffle and before decoding.

    Every file passed the scan's decode check. Should one still fail (changed
    on disk since), it is dropped and the epoch is filled up from the next
    pass, so the epoch keeps its length instead of stopping with a
    dataset-size error.
    """

    def read(path, label):
        return _decode_and_resize(path, image_size, interpolation), label

    dataset = tf.data.Dataset.from_tensor_slices((list(paths), labels))
    if shuffle:
        # Paths are cheap to shuffle whole, every epoch, before decoding.
        dataset = dataset.shuffle(len(paths), seed=seed)
    if keep is not None:
        dataset = keep(dataset)
    count = len(paths) if count is None else count
    dataset = dataset.map(read, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    # A bounded repeat: files that all fail end the epoch early instead of looping.
    return dataset.repeat(2).take(count)


def _warn_skipped(scans):
    reasons = {path: why for scan in scans if scan is not None for path, why in scan.reasons.items()}
    if reasons:
        warnings.warn(
            f"Skipping {len(reasons)} unreadable image {'file' if len(reasons) == 1 else 'files'}:\n  "
            + "\n  ".join(f"{path}: {why}" for path, why in reasons.items()),
            stacklevel=3,
        )


def _check_validation_classes(train_scan, validation_dir, directory):
    """Validation class folders must be training classes (missing ones only warn, after the split)."""
    _check_folder(validation_dir)
    with os.scandir(validation_dir) as entries:
        found = {entry.name for entry in entries if entry.is_dir() and not entry.name.startswith(".")}
    extra = sorted(found - set(train_scan.class_names))
    if extra:
        raise DataError(
            f"validation folder {validation_dir!r} has class folder(s) {extra} that train folder "
            f"{directory!r} lacks (its classes: {train_scan.class_names}): the model cannot learn a class "
            f"it has no training images of. Add them to the train folder or remove them from validation."
        )


def image_folder(
    directory,
    *,
    image_size=224,
    batch_size=32,
    validation_split=None,
    validation_dir=None,
    class_names=None,
    seed=1337,
    shuffle=True,
    augment=None,
    cache=False,
    interpolation="bilinear",
):
    """Load an image classification dataset from one sub-folder per class.

    Every file is checked first: its header (empty files and images over
    `MAX_IMAGE_PIXELS` are skipped before anything decodes them) and a
    decode. Unreadable files, and image formats training does not read
    (e.g. TIFF), are skipped with one warning and listed in the
    `skipped_files` attribute, with the reasons in `skipped_reasons` (of the
    training dataset for files of `directory`, of the validation dataset for
    files of `validation_dir`).

    Args:
        directory: Folder with one sub-folder of images per class
            (.bmp .gif .jpeg .jpg .png .webp .jfif .jpe; animated GIFs give
            their first frame). Class names are the sorted sub-folder names.
        image_size: Int (square) or `(height, width)` to resize images to
            (at most 2048 a side).
        batch_size: Number of images per batch.
        validation_split: Optional fraction in (0, 1) of the images to hold
            out for validation: seeded and stratified by class (see
            `keras_transfer.data.splits.split_train_validation`). With
            `shuffle=False` the last files of each class in sorted order.
        validation_dir: Optional folder of class sub-folders used as
            validation data: each a class of `directory` (a class it lacks
            gives a warning). Not together with `validation_split`.
        class_names: Optional list of classes the labels index (e.g. a
            model's `class_names`, to evaluate it): the folders may hold any
            of them (a class without a folder gives a warning) and no other.
            Defaults to the sorted sub-folder names.
        seed: Seed for shuffling, the split and preset augmentation.
        shuffle: Whether to shuffle the training data every epoch.
        augment: Preset name (see `keras_transfer.data.image_augmentation`), a Keras layer,
            or None. Applied to the training data only.
        cache: True caches decoded, resized images in memory; a string is a
            cache file path prefix (`_train` / `_validation` is appended).
        interpolation: Resize method, e.g. "bilinear", "nearest", "bicubic".

    Returns:
        The training dataset, or `(train, validation)` when `validation_split`
        or `validation_dir` is given.

    Raises:
        DataError: for a missing folder, no or empty class folders, a single
            class, a validation class the train folder lacks, a folder of a
            class not in `class_names`, a class left without training
            images, or a bad split or image size.

    Example:
        >>> train, val = image_folder("data/train", validation_dir="data/val",
        ...                           image_size=160, augment="standard")
        >>> train.class_names, train.num_examples
        (['cats', 'dogs'], 2000)
    """
    image_size = image_size_pair(image_size)
    directory = os.fspath(directory)
    if validation_split is not None and validation_dir is not None:
        raise DataError(
            "pass either validation_split or validation_dir, not both: use "
            "validation_split to carve validation images out of the train "
            "folder, or validation_dir for a separate folder."
        )
    if validation_split is not None:
        check_split_range(validation_split)

    train_scan = _scan_image_folder(directory, class_names)
    validation_scan = None
    if validation_dir is not None:
        validation_dir = os.fspath(validation_dir)
        _check_validation_classes(train_scan, validation_dir, directory)
        validation_scan = _scan_image_folder(validation_dir, train_scan.class_names)
    train_files = (np.array(train_scan.paths, dtype=object), train_scan.labels)
    validation_files = None
    if validation_split is not None:
        train_files, validation_files = split_examples(*train_files, validation_split, seed=seed, shuffle=shuffle)
    elif validation_scan is not None:
        validation_files = (validation_scan.paths, validation_scan.labels)
    _warn_skipped([train_scan, validation_scan])
    check_class_coverage(
        train_scan.class_names,
        train_files[1],
        None if validation_files is None else validation_files[1],
        where=f"image folder {directory!r}",
        split=validation_split is not None,
    )

    def make(files, subset, scan, worker=None, **options):
        paths, labels = files
        shuffled = subset == "train" and shuffle
        num_examples, rows, keep = len(paths), batch_size, None
        if worker is not None:  # one worker's share of multi-worker training, kept before decoding
            num_examples = sharding.kept_count(len(paths), *worker, batch_size)
            rows = sharding.rows_for_worker(batch_size, *worker)
            keep = sharding.keep_for_worker(*worker, batch_size)
        dataset = finish_image_dataset(
            _read_images(
                paths,
                labels,
                image_size=image_size,
                interpolation=interpolation,
                shuffle=shuffled,
                # Every worker shuffles alike, so that their shares add up to the data.
                seed=seed if seed is not None or worker is None else 1337,
                keep=keep,
                count=num_examples,
            ),
            class_names=train_scan.class_names,
            num_examples=num_examples,
            batch_size=rows,
            cache=f"{cache}_{subset}" if isinstance(cache, str) else cache,
            skipped_files=scan.unreadable if scan else [],
            labels=labels,
            **options,
        )
        dataset.skipped_reasons = dict(scan.reasons) if scan else {}
        if worker is None:
            dataset.for_worker = lambda num_workers, index: make(files, subset, scan, (num_workers, index), **options)
        return dataset

    train = make(
        train_files,
        "train",
        train_scan,
        # A cache freezes the order of the upstream shuffle, so reshuffle after.
        shuffle_buffer=8 * batch_size if (shuffle and cache) else 0,
        seed=seed,
        augment=resolve_augment(augment, seed),
    )
    if validation_files is None:
        return train
    return train, make(validation_files, "validation", validation_scan)
