"""Data that trains on nothing, or on numbers gone bad, is found before training (issue 13, group 9)."""

import os
import types
import warnings

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_classifier
from PIL import Image

import keras_transfer as kt
from keras_transfer import data
from keras_transfer.cli import CommandError, common
from keras_transfer.data import DataError


def make_folder(root, classes=("cats", "dogs"), per_class=3, size=24):
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        count = per_class[index] if isinstance(per_class, (list, tuple)) else per_class
        for i in range(count):
            pixels = np.clip(rng.normal(40 + 150 * index, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, name, f"{i}.png"))
    return str(root)


def count_batches(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


# --- class coverage of splits ------------------------------------------------


def test_a_class_with_one_image_has_no_validation_example_and_says_so(tmp_path):
    root = make_folder(tmp_path / "images", per_class=(6, 1))
    with pytest.warns(UserWarning, match=r"\['dogs'\] of image folder .* have no validation examples.*'dogs' \(1\)"):
        train, validation = data.image_folder(root, image_size=16, validation_split=0.3)
    assert set(count_batches(train)[1]) == {0, 1} and set(count_batches(validation)[1]) == {0}


def test_a_class_left_without_training_examples_is_an_error(tmp_path):
    texts = ["good film", "great plot", "bad film", "awful plot", "fine film", "dull plot"]
    labels = ["pos", "pos", "neg", "neg", "pos", "neg"]
    with pytest.raises(DataError, match=r"class\(es\) \['meh'\] of the texts list have no training examples"):
        data.from_texts(texts, labels, class_names=["neg", "meh", "pos"], validation_split=0.3)
    root = make_folder(tmp_path / "images")
    with pytest.raises(DataError, match=r"\['birds'\] of image folder .* no training examples.*lower validation_split"):
        data.image_folder(root, image_size=16, validation_split=0.3, class_names=["birds", "cats", "dogs"])


def test_a_validation_file_without_some_classes_warns(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\ngood film,pos\nbad film,neg\nfine plot,pos\ndull plot,neg\n")
    validation = tmp_path / "val.csv"
    validation.write_text("text,label\ngreat film,pos\nnice plot,pos\n")
    with pytest.warns(UserWarning, match=r"\['neg'\] .* have no validation examples \(the validation data has none"):
        data.text_file(train, text_column="text", label_column="label", validation_file=validation)


def test_a_class_with_few_validation_examples_warns_and_the_split_is_stratified(tmp_path):
    # The case: 8 images, 4 per class; a random split could hold out two dogs only.
    root = make_folder(tmp_path / "images", per_class=(4, 4))
    with pytest.warns(UserWarning, match=r"\['cats', 'dogs'\] .* fewer than 5 validation examples.*by 100% or more"):
        train, validation = data.image_folder(root, image_size=16, validation_split=0.25)
    assert train.class_counts == [3, 3] and validation.class_counts == [1, 1]
    texts = [f"text {i}" for i in range(40)]
    labels = ["pos"] * 30 + ["neg"] * 10
    with pytest.warns(
        UserWarning, match=r"\['neg'\] of the texts list have fewer than 5 validation examples.*'neg' \(2\)"
    ):
        train, validation = data.from_texts(texts, labels, validation_split=0.2)
    assert validation.class_counts == [2, 6] and train.class_counts == [8, 24]


# --- a header row with index columns ------------------------------------------


@pytest.mark.parametrize(
    "content, names",
    [
        ("sentence,sentiment\nloved it,pos\nhated it,neg\nso good,pos\nso bad,neg\n", ["neg", "pos"]),
        ("text\tlabel\nloved it\t1\nhated it\t0\nso good\t1\n", ["0", "1"]),
    ],
)
def test_a_header_row_is_not_read_as_an_example(tmp_path, content, names):
    path = tmp_path / ("data.tsv" if "\t" in content else "data.csv")
    path.write_text(content)
    with pytest.warns(UserWarning, match="as a header.*--header no"):
        dataset = data.text_file(path, text_column=0, label_column=1)
    assert dataset.class_names == names and dataset.num_examples == content.count("\n") - 1
    # A first row that is an example stays one.
    plain = tmp_path / "plain.csv"
    plain.write_text("loved it,pos\nhated it,neg\nso good,pos\nso bad,neg\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert data.text_file(plain, text_column=0, label_column=1).num_examples == 4


def test_an_unclosed_quote_is_an_error_not_one_giant_text(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('text,label\ngood,pos\n"bad,neg\nfine,pos\ndull,neg\n')
    with pytest.raises(DataError, match="line 3 of .* opens a quote .* never closed"):
        data.text_file(path, text_column="text", label_column="label")
    # A quoted text over several lines is fine.
    path.write_text('text,label\ngood,pos\n"two\nlines",neg\nfine,pos\n"dull, really",neg\n')
    assert data.text_file(path, text_column="text", label_column="label").num_examples == 4


# --- evaluate on a folder with some of the model's classes -------------------


def _args(batch_size=4):
    return types.SimpleNamespace(batch_size=batch_size)


def test_labelled_data_takes_a_subset_of_the_model_classes(tmp_path):
    root = make_folder(tmp_path / "test", classes=("dogs",), per_class=3)
    model = types.SimpleNamespace(class_names=["birds", "cats", "dogs"], image_size=(16, 16))
    with pytest.warns(UserWarning, match=r"no examples of class\(es\) \['birds', 'cats'\]"):
        dataset = common.labelled_data(model, root, _args(), "DATA")
    assert dataset.class_names == model.class_names and dataset.num_classes == 3
    assert set(count_batches(dataset)[1]) == {2}  # indexes the model's classes

    make_folder(tmp_path / "test", classes=("horses",), per_class=1)
    with pytest.raises(CommandError, match=r"differ from .* folder\(s\) \['horses'\] are not among them"):
        common.labelled_data(model, root, _args(), "DATA")


# --- images that pass the scan but fail inside an epoch ------------------------


def test_a_file_that_breaks_after_the_scan_does_not_stop_the_epoch(tmp_path):
    root = make_folder(tmp_path / "images", per_class=5)
    dataset = data.image_folder(root, image_size=16, batch_size=4)
    with open(os.path.join(root, "cats", "0.png"), "wb") as file:
        file.write(b"broken since")
    for _ in range(2):
        images, _ = count_batches(dataset)
        assert len(images) == dataset.num_examples == 10


def test_formats_training_cannot_read_are_named_and_webp_is_read(tmp_path):
    root = make_folder(tmp_path / "images")
    image = Image.fromarray(np.full((20, 20, 3), 90, np.uint8))
    image.save(os.path.join(root, "cats", "scan.tiff"))
    image.save(os.path.join(root, "dogs", "photo.webp"))
    (tmp_path / "images" / "dogs" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"scan.tiff: a .tiff image: training reads"):
        dataset = data.image_folder(root, image_size=16)
    assert dataset.skipped_files == [os.path.join(root, "cats", "scan.tiff")]
    assert "convert it" in dataset.skipped_reasons[dataset.skipped_files[0]]
    assert dataset.num_examples == 7 and len(count_batches(dataset)[0]) == 7


def test_an_absurd_image_size_is_refused_at_once(tmp_path):
    with pytest.raises(DataError, match="over the maximum of 2048 pixels a side.*image_size=224"):
        data.image_folder(make_folder(tmp_path / "images"), image_size=100000)


# --- NaN/Inf in datasets ----------------------------------------------------


def test_nan_in_a_dataset_is_refused_before_training():
    images = np.full((12, 32, 32, 3), 100.0, np.float32)
    images[9, 3, 3, 0] = np.nan
    labels = np.arange(12) % 2
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    model = tiny_classifier()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(kt.DataError, match=r"training inputs in batch 3 \(of the first 3\) hold 1 NaN"):
        model.fine_tune(dataset, head_epochs=1, finetune_epochs=0, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_predict_reads_images_as_training_does_and_skips_the_same_files(tmp_path):
    root = make_folder(tmp_path / "images", per_class=2, size=40)
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(os.path.join(root, "cats", "scan.tiff"))
    with pytest.warns(UserWarning, match="scan.tiff"):
        dataset = data.image_folder(root, image_size=16, shuffle=False)
    trained_on, _ = count_batches(dataset)
    paths = [os.path.join(root, name, f"{i}.png") for name in ("cats", "dogs") for i in range(2)]
    tiff = os.path.join(root, "cats", "scan.tiff")
    images, skipped = data.read_image_files([paths[0], tiff, *paths[1:], str(tmp_path)], 16)
    # The same decode and bilinear resize as training (PIL's load_img would resize differently).
    np.testing.assert_allclose(images, trained_on, atol=1e-4)
    assert list(skipped) == [tiff, str(tmp_path)]
    assert skipped[tiff] == dataset.skipped_reasons[tiff]
    assert skipped[str(tmp_path)] == "a folder, not an image file"
