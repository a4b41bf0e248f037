"""The shared checks of tests/helpers.py run on both tasks (and would catch a broken round trip)."""

import numpy as np
import pytest
from helpers import (
    image_arrays,
    run_export_test,
    run_fit_test,
    run_serialization_test,
    sentiment_texts,
    tiny_classifier,
    tiny_text_classifier,
)


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_image_classifier_fits_serializes_and_exports(tmp_path):
    model = tiny_classifier(class_names=["dark", "bright"])
    images, labels = image_arrays(16)
    run_fit_test(model, images, labels)
    model.freeze_backbone()
    restored = run_serialization_test(model, images[:4], tmp_path / "model.keras")
    assert restored.backbone.trainable is False
    run_export_test(restored, images[:8], tmp_path / "model.tflite", labels=labels[:8], atol=1e-4)


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_text_classifier_fits_serializes_and_exports(tmp_path):
    model = tiny_text_classifier(class_names=["neg", "pos"], pooling="mean")
    texts, labels = sentiment_texts(1)
    run_fit_test(model, texts, labels, batch_size=4)
    restored = run_serialization_test(model, texts, tmp_path / "model.keras", atol=1e-5)
    run_export_test(restored, texts, tmp_path / "model.tflite", labels=labels, atol=1e-4)


def test_serialization_check_fails_on_a_model_that_changed(tmp_path):
    model = tiny_classifier()
    images, _ = image_arrays(4)
    changed = tiny_classifier()
    changed.save(tmp_path / "other.keras")  # a different model under the path the check loads
    model.save = lambda path: None
    with pytest.raises(AssertionError):
        run_serialization_test(model, images, tmp_path / "other.keras")
    assert np.isfinite(changed.predict(images, verbose=0)).all()
