"""Bad input is refused before any training: nothing is trained and then lost (issue "No lost work")."""

import contextlib
import os

import numpy as np
import pytest
from helpers import TINY_LAYERS, image_arrays, tiny_classifier, weights_by_layer

import keras_transfer as kt
from keras_transfer.cli import EXIT_BAD_INPUT, main


def _untouched(model, train, **options):
    """Runs fine_tune expecting a refusal; returns the error after checking no weight moved."""
    before = weights_by_layer(model)
    with pytest.raises((ValueError, kt.DataError)) as caught:
        model.fine_tune(train, verbose=0, batch_size=8, **options)
    after = weights_by_layer(model)
    assert all(np.array_equal(a, b) for name in before for a, b in zip(before[name], after[name]))
    return caught.value


def test_an_unknown_unfreeze_layer_is_refused_before_the_head_phase():
    images, labels = image_arrays(16)
    error = _untouched(tiny_classifier(), (images, labels), head_epochs=1, finetune_epochs=1, unfreeze="conv_3")
    assert "unfreeze='conv_3' names no layer" in str(error) and "conv3" in str(error)
    assert "conv3" in TINY_LAYERS


def test_nan_inputs_and_out_of_range_labels_are_refused_before_training():
    images, labels = image_arrays(16)
    images[5, 0, 0, 0] = np.nan
    error = _untouched(tiny_classifier(), (images, labels), head_epochs=1, finetune_epochs=0)
    assert "1 NaN or infinite values (the first in example 5)" in str(error)
    images, labels = image_arrays(16)
    error = _untouched(tiny_classifier(), (images, labels + 1), head_epochs=1, finetune_epochs=0)
    assert "labels run from 1 to 2, but the model has 2 classes" in str(error)
    with pytest.raises(kt.DataError, match="NaN or infinite"):
        kt.data.from_arrays(np.full((4, 8, 8, 3), np.inf), np.array([0, 1, 0, 1]))


def test_images_without_a_channel_axis_are_refused_before_training():
    images, labels = image_arrays(16)
    error = _untouched(tiny_classifier(), (images[..., 0], labels), head_epochs=1, finetune_epochs=0)
    assert "got rank 3: add the channel axis" in str(error)
    error = _untouched(tiny_classifier(), (images[..., :1], labels), head_epochs=1, finetune_epochs=0)
    assert "have 1 channels but the model takes 3" in str(error)


def test_a_recipe_that_trains_nothing_is_refused():
    with pytest.raises(ValueError, match="both 0: nothing would train"):
        kt.IMAGE_RECIPE.replace(head_epochs=0, finetune_epochs=0)


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    missing_data = tmp_path / "no_such_images"  # would fail later: the output check must come first
    code = main(["train", str(missing_data), "--backbone", "mobilenet_v2", "--output", str(blocker / "run")])
    assert code == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "--output" in error and "is a file, not a folder" in error and "Traceback" not in error
    with pytest.raises(PermissionError, match="is a file, not a folder"):
        kt.files.check_writable(blocker / "run")
    kt.files.check_writable(tmp_path / "new" / "deeper")  # a folder still to create is fine
    assert sorted(os.listdir(tmp_path)) == ["a_file"]  # the probe leaves nothing behind


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--head-epochs", "0", "--finetune-epochs", "0"], "nothing would train"),
        (["--image-size", "0"], "'0' is not a positive integer"),
        (["--batch-size", "0"], "'0' is not a positive integer"),
    ],
)
def test_cli_numbers_out_of_range_exit_2(tmp_path, capsys, extra, message):
    # argparse refuses a bad number itself (SystemExit 2); the recipe's own check returns 2.
    with contextlib.nullcontext() if "--head-epochs" in extra else pytest.raises(SystemExit):
        code = main(["train", str(tmp_path), "--backbone", "mobilenet_v2", "--output", str(tmp_path / "o"), *extra])
        assert code == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_cli_unknown_unfreeze_layer_exits_2_before_training(tmp_path, make_image_folder, capsys):
    images = make_image_folder(per_class=3, size=32)
    code = main(
        ["train", images, "--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32",
         "--finetune-epochs", "1", "--unfreeze", "block_16_projectt", "--output", str(tmp_path / "run")]
    )  # fmt: skip
    assert code == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "--unfreeze 'block_16_projectt' names no layer" in error and "block_16_project" in error
    assert not os.path.exists(tmp_path / "run")
