"""TextClassifier on a tiny random BERT: heads, pooling, recipes, LoRA, saving."""

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    run_export_test,
    run_serialization_test,
    sentiment_texts,
    tiny_bert,
    tiny_text_classifier,
    weights_by_layer,
)

import keras_transfer as kt

FAST = dict(batch_size=8, verbose=0)


def backbone_kernels(model):
    """`{variable path: array}` of the backbone's variables."""
    return {v.path: np.array(v) for v in model.backbone.weights}


def changed(before, after):
    return sorted(path for path in before if not np.array_equal(before[path], after[path]))


# --- building ----------------------------------------------------------------


@pytest.mark.parametrize(
    "pooling,layer",
    [("auto", None), ("pooled", None), ("mean", "token_pooling"), ("cls", "token_pooling"), ("max", "token_pooling")],
)
def test_builds_with_each_pooling(pooling, layer):
    model = tiny_text_classifier(3, pooling=pooling)
    assert model.output_shape == (None, 3)
    assert sorted(model.input) == ["padding_mask", "segment_ids", "token_ids"]
    assert model.pooling == ("pooled" if pooling == "auto" else pooling)
    names = [each.name for each in model.layers]
    assert (layer in names) if layer else "token_pooling" not in names


def test_the_task_contract_and_the_pooling_vocabulary():
    model = tiny_text_classifier(pooling="avg")  # the image heads' 0.1.0 spelling of "mean"
    assert model.pooling == "mean" and model.head.pooling == "mean"
    assert model.head_features is model.get_layer("token_pooling").output
    assert model.train_batch_norm is False
    tokens = model.tokenize(sentiment_texts(1)[0])
    assert model.feature_extractor().predict(tokens, verbose=0).shape == (12, 32)
    pooled = model.feature_extractor("pooled").predict(tokens, verbose=0)
    np.testing.assert_allclose(pooled, model.backbone(tokens)["pooled_output"], atol=1e-5)
    with pytest.raises(ValueError, match="Unknown pooling 'flatten'"):
        model.feature_extractor("flatten")
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=30,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
    )
    without_pooler = kt.TextClassifier(backbone, preprocessor=tiny_bert()[1], num_classes=2)
    with pytest.raises(ValueError, match="has no pooler"):
        without_pooler.feature_extractor("pooled")


def test_token_pooling_ignores_padding():
    sequence = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], dtype="float32")
    mask = np.array([[1, 1, 0]], dtype="int32")
    np.testing.assert_allclose(kt.TokenPooling("mean")(sequence, mask), [[2.0, 3.0]])
    np.testing.assert_allclose(kt.TokenPooling("max")(sequence, mask), [[3.0, 4.0]])
    np.testing.assert_allclose(kt.TokenPooling("cls")(sequence, mask), [[1.0, 2.0]])


def test_a_backbone_without_pooler_pools_the_mean_and_refuses_pooled():
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=30,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
    )
    _, preprocessor = tiny_bert()
    model = kt.TextClassifier(backbone, preprocessor=preprocessor, num_classes=2)
    assert model.pooling == "mean" and sorted(model.input) == ["padding_mask", "token_ids"]
    with pytest.raises(ValueError, match="has no pooler: use pooling='mean'"):
        kt.TextClassifier(backbone, preprocessor=preprocessor, num_classes=2, pooling="pooled")


@pytest.mark.parametrize(
    "head,labels,loss",
    [
        (kt.Head.binary(dropout=0.0), [[1], [0]], "binary_crossentropy"),
        (kt.Head.multilabel(3, dropout=0.0), [[1, 0, 1], [0, 1, 0]], "binary_crossentropy"),
        (kt.Head.regression(1, dropout=0.0), [[0.5], [-1.0]], "mean_squared_error"),
    ],
)
def test_text_heads_share_the_image_head_builders(head, labels, loss):
    model = tiny_text_classifier(head=head)
    model.compile(run_eagerly=True)  # one tiny epoch: tracing would cost more than it saves
    assert model.loss.name == loss
    history = model.fit(["good film", "bad film"] * 4, np.array(labels * 4, "float32"), epochs=1, **FAST)
    assert np.isfinite(history.history["loss"][0])


def test_bad_arguments_are_refused():
    backbone, preprocessor = tiny_bert()
    with pytest.raises(ValueError, match="needs its preprocessor"):
        kt.TextClassifier(backbone, num_classes=2)
    with pytest.raises(ValueError, match="sequence_length=99 is out of range: the backbone takes 2 to 32"):
        kt.TextClassifier(backbone, preprocessor=preprocessor, num_classes=2, sequence_length=99)
    with pytest.raises(ValueError, match="Unknown pooling 'first'"):
        kt.TextClassifier(backbone, preprocessor=preprocessor, num_classes=2, pooling="first")
    with pytest.raises(ValueError, match="Pass num_classes"):
        kt.TextClassifier(backbone, preprocessor=preprocessor)


def test_unknown_text_backbone_lists_close_names():
    with pytest.raises(kt.UnknownBackboneError, match="Closest names: bert_base_en_uncased"):
        kt.TextClassifier("bert_base_en_uncasd", num_classes=2)


def test_text_backbone_registry_lists_the_families():
    families = kt.list_text_backbones()
    assert {"BERT", "DistilBERT", "RoBERTa", "XLM-RoBERTa", "ALBERT", "DeBERTaV3", "ELECTRA"} <= set(families)
    assert "bert_tiny_en_uncased" in families["BERT"]
    assert list(kt.list_text_backbones("roberta")) == ["RoBERTa"]


# --- data in any form -----------------------------------------------------------


def test_takes_raw_sentences_string_datasets_and_token_ids():
    model = tiny_text_classifier()
    model.compile()
    texts, labels = sentiment_texts(1)
    from_lists = model.predict(texts, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(5)
    from_dataset = model.predict(dataset, verbose=0)
    from_tokens = model.predict(model.tokenize(texts), verbose=0)
    np.testing.assert_allclose(from_lists, from_tokens, atol=1e-6)
    np.testing.assert_allclose(from_dataset, from_tokens, atol=1e-6)
    assert model.tokenize("good film")["token_ids"].shape == (1, 16)
    loss, accuracy = model.evaluate(dataset, verbose=0)
    assert np.isfinite(loss) and 0 <= accuracy <= 1


def test_sequence_length_comes_from_the_training_data_unless_given():
    model = tiny_text_classifier()
    assert model.sequence_length == 16 and not model.sequence_length_fixed
    texts, labels = sentiment_texts(1)
    model.fine_tune((texts, labels), head_epochs=1, finetune_epochs=0, **FAST)
    # The longest toy sentence is 3 words: 3 tokens + [CLS] + [SEP], at least 8.
    assert model.sequence_length == 8 and model.sequence_length_fixed
    # Longer validation sentences raise it: they are what the model is scored on.
    longer = tiny_text_classifier()
    long_texts = ["the best film it was good nice great fine love"] * 4
    longer.fine_tune((texts, labels), (long_texts, [1] * 4), head_epochs=1, finetune_epochs=0, **FAST)
    assert longer.sequence_length == 12
    backbone, preprocessor = tiny_bert()
    fixed = kt.TextClassifier(backbone, preprocessor=preprocessor, num_classes=2, sequence_length=12)
    fixed.fine_tune((texts, labels), head_epochs=1, finetune_epochs=0, **FAST)
    assert fixed.sequence_length == 12


# --- fine-tuning strategies --------------------------------------------------------


def test_full_fine_tuning_learns_toy_sentiment():
    model = tiny_text_classifier()
    texts, labels = sentiment_texts(4)
    history = model.fine_tune(
        (texts, labels), (texts, labels), head_epochs=0, finetune_epochs=6, finetune_learning_rate=3e-3, **FAST
    )
    assert history.head is None and history.finetune.history["val_accuracy"][-1] == 1.0
    indices, _ = model.predict_classes(["great movie", "awful movie"])
    assert list(indices) == [1, 0]


def test_frozen_backbone_trains_only_the_head():
    model = tiny_text_classifier()
    before = backbone_kernels(model)
    head_before = weights_by_layer(model)["predictions"]
    texts, labels = sentiment_texts(1)
    model.fine_tune((texts, labels), head_epochs=2, finetune_epochs=0, **FAST)
    assert changed(before, backbone_kernels(model)) == []
    assert not np.array_equal(head_before[0], weights_by_layer(model)["predictions"][0])
    trainable, total = model.parameter_counts()
    assert trainable == 32 * 2 + 2 and total > 20_000


def test_lora_trains_adapters_and_head_only():
    model = tiny_text_classifier()
    adapted = model.enable_lora(4)
    assert sorted(adapted) == ["query", "query", "value", "value"]
    summary = model.lora_summary()
    # Per adapted EinsumDense: A (32x2x4) + B (4x16) + the bias (2x16) that keeps training.
    assert summary["trainable_params"] == 4 * (32 * 2 * 4 + 4 * 16 + 2 * 16) + 66
    assert summary["trainable_percent"] < 10 and summary["lora_layers"] == 4
    before = backbone_kernels(model)
    texts, labels = sentiment_texts(2)
    # A head phase first: freezing for it must not lose the adapters' trainability after.
    model.fine_tune((texts, labels), head_epochs=1, finetune_epochs=2, finetune_learning_rate=1e-2, **FAST)
    moved = changed(before, backbone_kernels(model))
    assert moved and all(("lora_kernel" in path or path.endswith("/bias")) for path in moved)
    assert any("lora_kernel_b" in path for path in moved)
    assert model.lora_summary()["trainable_params"] == summary["trainable_params"]


def test_lora_refuses_missing_targets_and_a_second_call():
    model = tiny_text_classifier()
    with pytest.raises(ValueError, match="No backbone layer named \\['attention'\\] can take LoRA. Layers that can:"):
        model.enable_lora(2, target_layers=["attention"])
    model.enable_lora(2)
    with pytest.raises(ValueError, match="already enabled"):
        model.enable_lora(2)


def test_qlora_quantizes_the_backbone_and_trains_adapters():
    model = tiny_text_classifier()
    model.enable_lora(2, quantize="int8")
    query = model.backbone.get_layer("transformer_layer_0")._self_attention_layer._query_dense
    assert query.quantization_mode == "int8" and query.lora_enabled
    texts, labels = sentiment_texts(1)
    history = model.fine_tune((texts, labels), head_epochs=0, finetune_epochs=1, **FAST)
    assert np.isfinite(history.finetune.history["loss"][0])


# --- saving ----------------------------------------------------------------------


def test_save_and_load_keeps_predictions_tokenizer_and_classes(tmp_path):
    model = tiny_text_classifier(class_names=["neg", "pos"], pooling="mean")
    texts, labels = sentiment_texts(1)
    model.fine_tune((texts, labels), head_epochs=1, finetune_epochs=1, **FAST)
    restored = run_serialization_test(model, texts, tmp_path / "model.keras")
    assert restored.class_names == ["neg", "pos"] and restored.pooling == "mean"
    assert restored.head_features is restored.get_layer("token_pooling").output
    assert restored.sequence_length == 8
    assert restored.preprocessor.tokenizer.get_vocabulary() == model.preprocessor.tokenizer.get_vocabulary()


def test_lora_model_saves_loads_and_merges_with_the_same_predictions(tmp_path):
    model = tiny_text_classifier()
    model.enable_lora(4)
    texts, labels = sentiment_texts(2)
    model.fine_tune((texts, labels), head_epochs=0, finetune_epochs=2, finetune_learning_rate=1e-2, **FAST)
    expected = model.predict(texts, verbose=0)
    restored = run_serialization_test(model, texts, tmp_path / "lora.keras", atol=1e-5, check_trainable=False)
    assert restored.lora_layers == []  # saved with the adapters folded in
    merged = model.merge_lora()
    assert merged.lora_layers == [] and model.lora_layers
    np.testing.assert_allclose(merged.predict(texts, verbose=0), expected, atol=1e-5)
    assert merged.count_params() < model.count_params()


def test_loads_a_local_preset_folder_with_its_weights(tmp_path):
    backbone, preprocessor = tiny_bert(seed=3)
    backbone.save_to_preset(tmp_path)
    preprocessor.save_to_preset(tmp_path)
    pretrained = kt.TextClassifier(tmp_path, num_classes=2, sequence_length=10)
    assert pretrained.sequence_length == 10
    np.testing.assert_array_equal(
        pretrained.backbone.get_layer("token_embedding").get_weights()[0],
        backbone.get_layer("token_embedding").get_weights()[0],
    )
    random = kt.TextClassifier(tmp_path, num_classes=2, weights=None)
    assert not np.array_equal(
        random.backbone.get_layer("token_embedding").get_weights()[0],
        backbone.get_layer("token_embedding").get_weights()[0],
    )
    assert pretrained.preprocessor.tokenizer.get_vocabulary() == preprocessor.tokenizer.get_vocabulary()


def test_create_builds_and_trains_under_a_mirrored_strategy(mirrored_strategy):
    texts, labels = sentiment_texts(2)
    train = kt.data.from_texts(texts, labels, class_names=["negative", "positive"], batch_size=8)
    with pytest.raises(ValueError, match="carries no class_names"):
        kt.TextClassifier.create((texts, labels), backbone="unused")
    strategy = mirrored_strategy
    with strategy.scope():
        backbone, preprocessor = tiny_bert()
    model, history = kt.TextClassifier.create(
        train,
        backbone=backbone,
        preprocessor=preprocessor,
        strategy=strategy,
        lora_rank=2,
        head_epochs=0,
        finetune_epochs=1,
        verbose=0,
    )
    assert model.distribute_strategy is strategy and model.class_names == ["negative", "positive"]
    assert model.lora_summary()["lora_layers"] == 4 and np.isfinite(history.finetune.history["loss"][0])


# --- export ----------------------------------------------------------------------


@pytest.mark.parametrize("quantization", ["none", "dynamic"])
def test_tflite_export_takes_token_ids_and_matches_keras_on_sentences(tmp_path, quantization):
    model = tiny_text_classifier(class_names=["neg", "pos"])
    texts, labels = sentiment_texts(1)
    model.fine_tune((texts, labels), head_epochs=1, finetune_epochs=0, **FAST)
    path = tmp_path / "text.tflite"
    atol = 1e-5 if quantization == "none" else 0.05
    run_export_test(model, texts, path, quantization=quantization, labels=labels, atol=atol)
    metadata = kt.export.read_metadata(path)
    assert metadata["class_names"] == ["neg", "pos"] and metadata["sequence_length"] == 8
    assert {spec["name"]: spec["shape"] for spec in metadata["inputs"]}["token_ids"] == [None, 8]
    # The tokenizer beside the model turns sentences into exactly the model's inputs.
    tokenizer_folder = tmp_path / metadata["preprocessor"]
    restored = keras_hub.models.TextClassifierPreprocessor.from_preset(str(tokenizer_folder))
    np.testing.assert_array_equal(restored(tf.constant(texts))["token_ids"], model.tokenize(texts)["token_ids"])


def test_merged_lora_model_exports_to_saved_model(tmp_path):
    model = tiny_text_classifier()
    model.enable_lora(2)
    texts, labels = sentiment_texts(1)
    model.fine_tune((texts, labels), head_epochs=0, finetune_epochs=1, finetune_learning_rate=1e-2, **FAST)
    merged = model.merge_lora()
    run_export_test(merged, texts, tmp_path / "saved", format="saved_model", atol=1e-5)
    assert (tmp_path / "saved" / "preprocessor" / "tokenizer.json").exists()
    np.testing.assert_allclose(merged.predict(texts, verbose=0), model.predict(texts, verbose=0), atol=1e-5)


def test_auto_pooling_follows_a_sentence_transformers_folder(tmp_path):
    backbone, preprocessor = tiny_bert()
    backbone.save_to_preset(tmp_path)
    preprocessor.save_to_preset(tmp_path)
    assert kt.TextClassifier(tmp_path, num_classes=2).pooling == "pooled"
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        '{"pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true}'
    )
    assert kt.TextClassifier(tmp_path, num_classes=2).pooling == "mean"
    assert kt.TextClassifier(tmp_path, num_classes=2, pooling="cls").pooling == "cls"


def test_a_family_without_its_own_classifier_preprocessor_gets_the_generic_packer(tmp_path):
    # keras-hub has no ElectraTextClassifierPreprocessor: the tokenizer and the generic packer serve.
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    keras_hub.models.ElectraBackbone(
        vocab_size=len(vocabulary),
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        embedding_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
    ).save_to_preset(tmp_path)
    keras_hub.models.ElectraTokenizer(vocabulary=vocabulary).save_to_preset(tmp_path)
    model = kt.TextClassifier(tmp_path, num_classes=2, sequence_length=8)
    tokens = model.tokenize("good film")
    assert list(tokens["token_ids"][0][:4]) == [2, 5, 7, 3] and model.pooling == "pooled"
    assert model.predict(["good film", "bad"], verbose=0).shape == (2, 2)


def test_an_unused_pooler_stays_frozen_when_pooling_over_tokens():
    model = tiny_text_classifier(pooling="mean")
    texts, labels = sentiment_texts(1)
    model.fine_tune((texts, labels), head_epochs=0, finetune_epochs=1, **FAST)
    assert not model.backbone.get_layer("pooled_dense").trainable
    assert model.backbone.get_layer("transformer_layer_1").trainable
    pooled = tiny_text_classifier(pooling="pooled")
    pooled.compile()
    pooled.unfreeze_backbone()
    assert pooled.backbone.get_layer("pooled_dense").trainable
