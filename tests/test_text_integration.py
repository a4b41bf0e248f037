"""Integration: the real all-MiniLM-L6-v2 (a 6-layer BERT) on real SMS spam.

Reads the Hugging Face folder and the SMS Spam Collection from the offline
assets (KERAS_TRANSFER_ASSETS, or ../shared/assets); keras-hub converts the
folder with no network.
"""

import os

import numpy as np
import pytest

import keras_transfer as kt

TRAIN_EXAMPLES = 300
VAL_EXAMPLES = 300
SEQUENCE_LENGTH = 48
LORA = dict(head_epochs=0, finetune_epochs=2, finetune_learning_rate=2e-3, verbose=0)


@pytest.fixture(scope="module")
def minilm(assets_dir):
    folder = os.path.join(assets_dir, "keras-hub", "all-MiniLM-L6-v2")
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        pytest.fail(f"Missing {folder}: the offline assets are incomplete.", pytrace=False)
    return folder


@pytest.fixture(scope="module")
def sms_spam(assets_dir):
    """Disjoint random subsets of the SMS Spam Collection for training and validation."""
    path = os.path.join(assets_dir, "text", "sms_spam", "SMSSpamCollection")
    train, val = kt.data.text_file(
        path,
        text_column="SMS",
        label_column="Label",
        validation_split=VAL_EXAMPLES / (TRAIN_EXAMPLES + VAL_EXAMPLES),
        max_examples=TRAIN_EXAMPLES + VAL_EXAMPLES,
        batch_size=16,
        seed=7,
    )
    assert train.class_names == val.class_names == ["ham", "spam"]
    return train, val


def majority_rate(dataset):
    labels = np.concatenate([y.numpy() for _, y in dataset])
    return np.bincount(labels).max() / len(labels)


def lora_accuracy(folder, train, val, weights):
    model = kt.TextClassifier(
        folder, weights=weights, class_names=train.class_names, pooling="mean", sequence_length=SEQUENCE_LENGTH
    )
    model.enable_lora(8)
    model.fine_tune(train, **LORA)
    _, accuracy = model.evaluate(val, verbose=0)
    return model, accuracy


@pytest.mark.integration
def test_pretrained_minilm_with_lora_beats_majority_and_random_weights(minilm, sms_spam, tmp_path):
    train, val = sms_spam
    majority = majority_rate(val)
    model, pretrained = lora_accuracy(minilm, train, val, "pretrained")
    summary = model.lora_summary()
    print(
        f"SMS spam, {train.num_examples} train / {val.num_examples} val: LoRA on MiniLM "
        f"{pretrained:.3f}, majority {majority:.3f}, trainable {summary['trainable_percent']:.2f}%"
    )
    assert summary["trainable_percent"] < 5.0 and summary["total_params"] > 22_000_000
    assert pretrained >= majority + 0.08

    # Merged and exported with dynamic-range int8 weights, it still agrees on real messages.
    result = kt.export_model(
        model.merge_lora(), tmp_path / "sms_spam.tflite", quantization="dynamic", check_data=val.take(4)
    )
    print(
        f"dynamic-range TFLite: {result.size_bytes / 1e6:.1f} MB, agreement "
        f"{result.check.top1_agreement:.3f}, max abs difference {result.check.max_abs_difference:.4f}"
    )
    assert result.check.num_examples == 64 and result.check.top1_agreement >= 0.97
    assert result.size_bytes < 0.4 * 4 * summary["total_params"]
    _, random = lora_accuracy(minilm, train, val, None)
    print(f"same architecture, random weights: {random:.3f}")
    assert pretrained >= random + 0.04
