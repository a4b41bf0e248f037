"""Tests for keras_transfer.deploy.export (and the modules it is built from): LiteRT and SavedModel exports."""

import doctest
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import image_dataset, tiny_classifier

import keras_transfer as kt
from keras_transfer.deploy import checks, litert, quantization
from keras_transfer.deploy import export as ex

VOCABULARY = 50
LENGTH = 8


def text_model(num_classes=3, mask_dtype="int32"):
    """Embedding + masked mean pooling + Dense, on a dict of int inputs of any length."""
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype=mask_dtype, name="padding_mask")
    embedded = keras.layers.Embedding(VOCABULARY, 16)(token_ids)
    mask = keras.ops.expand_dims(keras.ops.cast(padding_mask, "float32"), -1)
    pooled = keras.ops.sum(embedded * mask, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(pooled)
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask}, outputs)


def text_inputs(n=5, length=LENGTH, seed=0):
    rng = np.random.default_rng(seed)
    padding_mask = (np.arange(length)[None] < rng.integers(2, length + 1, (n, 1))).astype("int32")
    token_ids = rng.integers(1, VOCABULARY, (n, length)).astype("int32") * padding_mask
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def dense_model():
    """Mostly Dense kernels, so that quantizing the weights shows in the file size."""
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )


def signature_inputs(path):
    runner = litert.interpreter_class()(model_path=str(path)).get_signature_runner()
    return {name: detail["shape_signature"].tolist() for name, detail in runner.get_input_details().items()}


# --- quantization configs ------------------------------------------------------------------


def test_quantization_configs_and_names():
    assert ex.Quantization.get("dynamic") == ex.Quantization.dynamic()
    assert ex.Quantization.get(None) == ex.Quantization.get("none") == ex.Quantization.none()
    assert ex.Quantization.float16().get_config() == {"mode": "float16"}
    config = ex.Quantization.int8(np.zeros((4, 2)), num_samples=3).get_config()
    assert config == {"mode": "int8", "num_samples": 3, "seed": 0, "io_dtype": "float32"}
    assert ex.Quantization.from_config(config, np.zeros((4, 2))).num_samples == 3
    with pytest.raises(ValueError, match="none, dynamic, float16, int8"):
        ex.Quantization.get("int4")
    with pytest.raises(ValueError, match="representative"):
        ex.Quantization.get("int8")
    with pytest.raises(ValueError, match="representative_data"):
        ex.Quantization("int8")
    with pytest.raises(TypeError):
        ex.Quantization.get(8)


def test_representative_samples_are_drawn_across_classes_and_shuffled():
    # Sorted by class: the first batches hold class 0 only.
    labels = np.repeat([0, 1, 2], [80, 15, 5])
    images = np.arange(len(labels), dtype="float32")[:, None]
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(10)
    samples = ex.representative_samples(dataset, 12, seed=1)
    assert len(samples) == 12 and all(sample.shape == (1, 1) for sample in samples)
    drawn = [int(sample[0, 0]) for sample in samples]
    counts = np.bincount(labels[drawn], minlength=3)
    assert counts.tolist() == [4, 4, 4]
    assert drawn != sorted(drawn) and len(set(drawn)) == 12
    # A class with fewer examples than its share gives all it has; the others fill in.
    counts = np.bincount(labels[[int(s[0, 0]) for s in ex.representative_samples(dataset, 30)]])
    assert counts.tolist()[2] == 5 and counts.sum() == 30
    # Dict inputs, one-hot labels.
    inputs = {"token_ids": np.arange(6)[:, None], "padding_mask": np.ones((6, 1))}
    samples = ex.representative_samples((inputs, np.eye(2)[[0, 0, 0, 0, 1, 1]]), 4)
    assert sorted(int(s["token_ids"][0, 0]) >= 4 for s in samples) == [False, False, True, True]


# --- LiteRT ------------------------------------------------------------------------------


@pytest.mark.parametrize("quantization, atol", [("none", 1e-5), ("dynamic", 1e-2), ("float16", 1e-2)])
def test_image_classifier_exports_and_matches_keras(tmp_path, quantization, atol):
    model = tiny_classifier(3, class_names=["cat", "dog", "fox"])
    dataset, _, labels = image_dataset(12, num_classes=3, batch_size=8)  # batches of 8 and 4
    path = tmp_path / "model.tflite"
    result = ex.export(model, path, quantization=quantization, check_data=dataset, metadata={"task": "pets"})

    assert result.path == str(path) and result.format == "tflite"
    assert result.quantization == {"mode": quantization}
    assert result.size_bytes == os.path.getsize(path) > 0
    assert signature_inputs(path) == {"image": [-1, 32, 32, 3]}
    check = result.check
    assert check.num_examples == 12 and check.top1_agreement == 1.0
    assert check.max_abs_difference < atol
    assert check.accuracy_keras == check.accuracy_exported is not None
    assert result.metadata_path == str(path) + ".json"
    assert ex.read_metadata(path) == {
        "format": "tflite",
        "model": "model.tflite",
        "quantization": {"mode": quantization},
        "inputs": [{"name": "image", "shape": [None, 32, 32, 3], "dtype": "float32"}],
        "output": "output_0",
        "class_names": ["cat", "dog", "fox"],
        "head": model.head.get_config(),
        "task": "pets",
    }
    assert sorted(os.listdir(tmp_path)) == ["model.tflite", "model.tflite.json"]  # no temporaries


def test_quantized_files_are_smaller(tmp_path):
    model = dense_model()
    inputs = np.random.default_rng(0).normal(size=(16, 64)).astype("float32")
    sizes, checks = {}, {}
    for mode in ("none", "dynamic", "float16"):
        result = ex.export(model, tmp_path / f"{mode}.tflite", quantization=mode, check_data=inputs)
        sizes[mode], checks[mode] = result.size_bytes, result.check
    assert sizes["dynamic"] < 0.4 * sizes["none"]
    assert sizes["float16"] < 0.6 * sizes["none"]
    assert checks["none"].max_abs_difference < 1e-5
    assert checks["float16"].max_abs_difference < 1e-3 and checks["float16"].top1_agreement == 1.0
    assert checks["dynamic"].max_abs_difference < 2e-2 and checks["dynamic"].top1_agreement >= 0.9


def test_int8_export_is_full_integer_and_close(tmp_path):
    model = tiny_classifier(3)
    dataset, images, labels = image_dataset(24, num_classes=3, batch_size=8)
    quantization = ex.Quantization.int8(dataset, num_samples=12)
    result = ex.export(model, tmp_path / "int8.tflite", quantization=quantization, check_data=(images, labels))
    # 12 of the 24 examples drawn, as asked; the metadata says how many really calibrated.
    expected = {"mode": "int8", "num_samples": 12, "seed": 0, "io_dtype": "float32", "calibration_examples": 12}
    assert result.quantization == expected
    assert ex.read_metadata(tmp_path / "int8.tflite")["quantization"] == expected
    assert result.check.max_abs_difference < 0.05 and result.check.top1_agreement >= 0.9
    interpreter = litert.interpreter_class()(model_path=str(tmp_path / "int8.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32  # float in, float out
    weights = [d for d in interpreter.get_tensor_details() if "conv" in d["name"].lower()]
    assert weights and {d["dtype"] for d in weights} <= {np.int8, np.int32}


@pytest.mark.parametrize("io_dtype", ["int8", "uint8"])
def test_int8_export_with_integer_inputs_and_outputs(tmp_path, io_dtype):
    model = tiny_classifier(3)
    dataset, images, labels = image_dataset(24, num_classes=3, batch_size=8)
    path = tmp_path / f"{io_dtype}.tflite"
    result = ex.export(
        model, path, quantization=ex.Quantization.int8(dataset, 12, io_dtype=io_dtype), check_data=(images, labels)
    )
    exported = litert.LiteRTModel(path)
    (detail,) = exported.input_details.values()
    assert detail["dtype"] == np.dtype(io_dtype) and exported.quantized_io
    # LiteRTModel quantizes the float pixels and dequantizes the scores, so the check compares floats.
    assert result.check.top1_agreement >= 0.9 and result.check.max_abs_difference < 0.05
    assert ex.read_metadata(path)["quantization"]["io_dtype"] == io_dtype
    with pytest.raises(ValueError, match="io_dtype"):
        ex.Quantization.int8(dataset, io_dtype="int16")
    with pytest.raises(ValueError, match="num_samples"):
        ex.Quantization.int8(dataset, num_samples=0)


def test_litert_model_predicts_evaluates_and_times_like_keras(tmp_path):
    model = tiny_classifier(3)
    dataset, images, labels = image_dataset(12, num_classes=3, batch_size=4)
    path = tmp_path / "model.tflite"
    ex.export(model, path)
    exported = litert.LiteRTModel(path)
    assert exported.class_names == model.class_names and exported.head == model.head
    assert exported.image_size == model.image_size and not exported.quantized_io
    np.testing.assert_allclose(exported.predict(images, batch_size=5), model.predict(images, verbose=0), atol=1e-5)
    report = kt.evaluation.evaluate_model(exported, dataset)
    assert report.accuracy == kt.evaluation.evaluate_model(model, dataset).accuracy
    latency = exported.measure_latency(images[:1], num_threads=1, repeats=5, warmup=1)
    assert latency.num_threads == 1 and latency.repeats == 5 and 0 < latency.min_ms <= latency.median_ms
    with pytest.raises(FileNotFoundError, match="No LiteRT model"):
        litert.LiteRTModel(tmp_path / "missing.tflite")
    ex.export(model, tmp_path / "fp16.tflite", quantization="float16")
    both = litert.compare_latency([path, tmp_path / "fp16.tflite"], repeats=4, warmup=1)
    assert list(both) == [str(path), str(tmp_path / "fp16.tflite")]
    assert all(latency.repeats == 4 and latency.median_ms > 0 for latency in both.values())


@pytest.mark.parametrize("mask_dtype", ["int32", "bool"])
def test_text_model_with_dict_inputs(tmp_path, mask_dtype):
    model = text_model(mask_dtype=mask_dtype)
    path = tmp_path / "text.tflite"
    if mask_dtype == "int32":
        ex.export(model, path, sequence_length=LENGTH)
    else:  # the same through an explicit signature of keras.InputSpecs
        ex.export(
            model,
            path,
            input_signature={
                "token_ids": keras.InputSpec(shape=(None, LENGTH), dtype="int32"),
                "padding_mask": keras.InputSpec(shape=(None, LENGTH), dtype="bool"),
            },
        )
    assert signature_inputs(path) == {"token_ids": [-1, LENGTH], "padding_mask": [-1, LENGTH]}
    inputs = text_inputs(5)  # int32 masks are cast to the exported dtype
    check = ex.check_export(path, model, inputs, batch_size=2)  # batches of 2, 2 and 1
    assert check.num_examples == 5 and check.top1_agreement == 1.0
    assert check.max_abs_difference < 1e-5
    # A batched dataset of (inputs, labels); labels give accuracies.
    labels = np.array([0, 1, 2, 0, 1])
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(3)
    check = ex.check_export(str(path), model, dataset, max_examples=4)
    assert check.num_examples == 4 and check.accuracy_keras == check.accuracy_exported
    interpreter = litert.interpreter_class()(model_path=str(path))
    assert ex.check_export(interpreter, model, inputs).max_abs_difference < 1e-5
    with pytest.raises(ValueError, match="padding_mask"):
        ex.check_export(path, model, {"token_ids": inputs["token_ids"]})


def test_text_model_needs_a_sequence_length(tmp_path):
    with pytest.raises(ValueError, match="sequence_length"):
        ex.export(text_model(), tmp_path / "text.tflite")
    assert os.listdir(tmp_path) == []


def test_keras_hub_bert_matches_keras(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=32,
    )
    inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in backbone.input}
    model = keras.Model(inputs, keras.layers.Dense(2)(backbone(inputs)["pooled_output"]))
    data = {**text_inputs(6, length=16), "segment_ids": np.zeros((6, 16), "int32")}
    for mode, atol in (("none", 1e-5), ("dynamic", 2e-2)):
        result = ex.export(
            model, tmp_path / f"bert_{mode}.tflite", quantization=mode, sequence_length=16, check_data=data
        )
        assert result.check.max_abs_difference < atol, mode
        if mode == "none":
            assert result.check.top1_agreement == 1.0
            float_size = result.size_bytes
    assert result.size_bytes < 0.7 * float_size


# --- overwriting -------------------------------------------------------------------------


class WithoutSignatures:
    """A real interpreter that hides its signatures, as files from older converters have none."""

    def __init__(self, interpreter):
        self._interpreter = interpreter

    def get_signature_list(self):
        return {}

    def __getattr__(self, name):
        return getattr(self._interpreter, name)


def test_refuses_to_overwrite_without_overwrite(tmp_path):
    model = dense_model()
    path = tmp_path / "model.tflite"
    path.write_bytes(b"the user's file")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ex.export(model, path)
    assert path.read_bytes() == b"the user's file"
    assert sorted(os.listdir(tmp_path)) == ["model.tflite"]

    ex.export(model, path, overwrite=True)
    assert path.read_bytes() != b"the user's file"
    assert ex.check_export(path, model, np.ones((2, 64), "float32")).max_abs_difference < 1e-5
    # Files made elsewhere may have no signatures: their one input is then fed by index.
    run = litert.LiteRTModel(WithoutSignatures(litert.interpreter_class()(model_path=str(path)))).predict_on_batch
    np.testing.assert_allclose(run(np.ones((3, 64), "float32")), model.predict(np.ones((3, 64)), verbose=0), atol=1e-5)

    # The metadata file counts too.
    other = tmp_path / "other.tflite"
    (tmp_path / "other.tflite.json").write_text("{}")
    with pytest.raises(FileExistsError, match="other.tflite.json"):
        ex.export(model, other)
    assert not other.exists()


def test_atomic_folder_replaces_whole_and_restores_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with kt.files.atomic_folder(target) as temporary:
        open(os.path.join(temporary, "new.txt"), "w").write("new")
    assert os.listdir(target) == ["new.txt"]
    with kt.files.atomic_folder(target, skip_empty=True):
        pass  # nothing written: the folder stays as it was
    assert os.listdir(target) == ["new.txt"]

    real_replace, calls = os.replace, []

    def failing_second_move(source, destination):
        calls.append(destination)
        if len(calls) == 2:  # moving the new folder in
            raise OSError("disk full")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", failing_second_move)
    with pytest.raises(OSError, match="disk full"), kt.files.atomic_folder(target) as temporary:
        open(os.path.join(temporary, "newer.txt"), "w").write("newer")
    assert os.listdir(target) == ["new.txt"] and sorted(os.listdir(tmp_path)) == ["folder"]


def test_bad_arguments(tmp_path):
    model = dense_model()
    with pytest.raises(ValueError, match="tflite, saved_model"):
        ex.export(model, tmp_path / "m", format="onnx")
    with pytest.raises(ValueError, match=r"\.tflite"):
        ex.export(model, tmp_path / "model.lite")
    with pytest.raises(ValueError, match="TFLite"):
        ex.export(model, tmp_path / "m", format="saved_model", quantization="dynamic")
    with pytest.raises(ValueError, match="valid ones are none, dynamic, float16, int8"):
        ex.export(model, tmp_path / "m.tflite", quantization="int4")
    with pytest.raises(TypeError, match="JSON"):
        ex.export(model, tmp_path / "m.tflite", metadata={"bad": object()})
    with pytest.raises(ValueError, match="valid ones are keras, tf_keras"):
        ex.export(model, tmp_path / "m.tflite", engine="onnx")
    with pytest.raises(ValueError, match="'tf_keras' engine writes tflite"):
        ex.export(model, tmp_path / "m", format="saved_model", engine="tf_keras")
    assert os.listdir(tmp_path) == []


class Doubler(keras.Model):
    """A subclassed model: it has no symbolic inputs to read a signature from."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2, activation="softmax")

    def call(self, inputs):
        return self.dense(inputs * 2.0)


def test_subclassed_model_needs_an_input_signature(tmp_path):
    model = Doubler()
    with pytest.raises(ValueError, match="input_signature"):
        ex.export(model, tmp_path / "model.tflite")
    inputs = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    model(inputs)
    result = ex.export(
        model,
        tmp_path / "model.tflite",
        check_data=inputs,
        input_signature=[tf.TensorSpec((None, 5), tf.float32, name="features")],
    )
    assert signature_inputs(tmp_path / "model.tflite") == {"features": [-1, 5]}
    assert result.check.max_abs_difference < 1e-5


# --- SavedModel --------------------------------------------------------------------------


def test_saved_model_round_trip(tmp_path):
    model = tiny_classifier(2, class_names=["ok", "defect"])
    dataset, images, labels = image_dataset(8, batch_size=4)
    path = tmp_path / "saved"
    result = ex.export(model, path, format="saved_model", check_data=dataset)
    assert result.check.max_abs_difference < 1e-5 and result.check.top1_agreement == 1.0
    assert result.size_bytes > 0 and os.path.isfile(path / "saved_model.pb")
    assert ex.read_metadata(path)["class_names"] == ["ok", "defect"]
    assert result.metadata_path == str(path / "metadata.json")

    serve = tf.saved_model.load(str(path)).signatures["serve"]
    (outputs,) = serve(image=tf.constant(images)).values()
    np.testing.assert_allclose(outputs.numpy(), model.predict(images, verbose=0), atol=1e-5)

    # An existing folder is kept unless overwrite=True, and then replaced whole, but only
    # when it holds nothing but what an export wrote (test_run_folders has the rest).
    (path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ex.export(model, path, format="saved_model")
    with pytest.raises(FileExistsError, match="did not write: mine.txt"):
        ex.export(model, path, format="saved_model", overwrite=True)
    assert (path / "mine.txt").read_text() == "keep me"
    (path / "mine.txt").unlink()
    (path / "variables" / "stale").write_text("")  # inside an export's own folder: replaced with it
    ex.export(model, path, format="saved_model", overwrite=True)
    assert not (path / "variables" / "stale").exists() and (path / "saved_model.pb").exists()
    assert sorted(os.listdir(tmp_path)) == ["saved"]  # no temporaries


def test_saved_model_keeps_text_lengths_dynamic(tmp_path):
    model = text_model()
    ex.export(model, tmp_path / "text", format="saved_model")
    serve = tf.saved_model.load(str(tmp_path / "text")).signatures["serve"]
    for length in (LENGTH, 12):
        inputs = text_inputs(3, length=length)
        (outputs,) = serve(**{name: tf.constant(value) for name, value in inputs.items()}).values()
        np.testing.assert_allclose(outputs.numpy(), model.predict(inputs, verbose=0), atol=1e-5)


# --- what agreement means per head -------------------------------------------------------


@pytest.mark.parametrize(
    "head, agreement",
    [
        (kt.Head.binary(dropout=0.0), "thresholded"),
        (kt.Head.binary(logits=True, dropout=0.0), "thresholded"),
        (kt.Head.regression(dropout=0.0), None),
    ],
)
def test_agreement_for_single_output_heads(tmp_path, head, agreement):
    model = tiny_classifier(head=head)
    _, images, labels = image_dataset(8)
    ex.export(model, tmp_path / "saved", format="saved_model")
    check = ex.check_export(tmp_path / "saved", model, images, labels=labels)
    assert check.max_abs_difference < 1e-5
    if agreement is None:
        assert check.top1_agreement is check.accuracy_keras is None
    else:
        assert check.top1_agreement == 1.0
        assert check.accuracy_keras == check.accuracy_exported
        threshold = 0.0 if head.from_logits else 0.5
        expected = (model.predict(images, verbose=0)[:, 0] >= threshold) == labels
        assert check.accuracy_keras == pytest.approx(expected.mean())


def test_docstring_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    images = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
    labels = model.predict(images, verbose=0).argmax(-1)
    extraglobs = {"model": model, "images": images, "labels": labels, "export": ex.export}
    attempted = 0
    for module in (ex, checks, quantization):
        results = doctest.testmod(module, extraglobs=extraglobs, verbose=False)
        assert results.failed == 0, module.__name__
        attempted += results.attempted
    assert attempted > 5


# --- choosing within an accuracy budget ---------------------------------------------------


@pytest.mark.parametrize(
    "candidates, smallest",
    [
        (("float16", "int8", "none"), "int8"),
        # The LiteRT Quantizer's recipes compete too.
        (("dynamic", "dynamic_wi4_afp32", "static_wi8_ai8"), "dynamic_wi4_afp32"),
    ],
)
def test_budget_picks_the_smallest_export_within_the_drop(tmp_path, candidates, smallest):
    model = tiny_classifier(3)
    dataset, images, labels = image_dataset(24, num_classes=3, batch_size=8)
    path = tmp_path / "chosen.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a candidate's check never warns: the explanation reports it
        choice = ex.export_within_budget(
            model,
            path,
            (images, labels),
            max_accuracy_drop=0.5,
            representative_data=dataset,
            num_samples=12,
            candidates=candidates,
        )
    sizes = {candidate.quantization: candidate.size_bytes for candidate in choice.candidates}
    assert choice.chosen == min(sizes, key=sizes.get) == smallest
    assert choice.result.path == str(path) and os.path.getsize(path) == sizes[smallest]
    assert ex.read_metadata(path)["quantization"]["mode"] == smallest
    assert sorted(os.listdir(tmp_path)) == ["chosen.tflite", "chosen.tflite.json"]  # no leftovers
    assert f"chose {smallest}" in choice.explanation() and candidates[0] in choice.explanation()
    with pytest.raises(FileExistsError):
        ex.export_within_budget(model, path, (images, labels))


def test_budget_refuses_bad_settings_and_float32_always_fits(tmp_path):
    model = tiny_classifier(3)
    _, images, labels = image_dataset(12, num_classes=3)
    with pytest.raises(ValueError, match="max_accuracy_drop"):
        ex.export_within_budget(model, tmp_path / "m.tflite", (images, labels), max_accuracy_drop=-0.1)
    with pytest.raises(ValueError, match="Unknown candidates"):
        ex.export_within_budget(model, tmp_path / "m.tflite", (images, labels), candidates=("int4",))
    choice = ex.export_within_budget(
        model, tmp_path / "m.tflite", (images, labels), max_accuracy_drop=0.0, candidates=("none",)
    )
    assert choice.chosen == "none" and choice.candidates[0].accuracy_drop == 0.0


# --- Keras' own quantization ----------------------------------------------------------------


def test_keras_quantize_copies_and_reports_coverage(tmp_path):
    model = dense_model()
    inputs = np.random.default_rng(0).normal(size=(8, 64)).astype("float32")
    before = [np.array(w) for w in model.get_weights()]
    quantized, info = ex.keras_quantize(model, "int8")
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(before, model.get_weights()))  # untouched
    assert len(info.quantized_layers) == 3 and info.quantized_parameter_fraction > 0.99
    np.testing.assert_allclose(quantized.predict(inputs, verbose=0), model.predict(inputs, verbose=0), atol=0.02)
    with pytest.raises(ValueError, match="quantized by Keras"):
        ex.export(quantized, tmp_path / "q.tflite")
    result = ex.export(quantized, tmp_path / "saved", format="saved_model", check_data=inputs)
    assert result.check.max_abs_difference < 1e-5
    # A CNN: Keras leaves convolutions in float, and says how little it covered.
    cnn, info = ex.keras_quantize(tiny_classifier(3), "int8")
    assert info.skipped_layers and info.quantized_parameter_fraction < 0.5 and "left in float" in str(info)
    with pytest.raises(ValueError, match="int8, float8, int4"):
        ex.keras_quantize(model, "int2")
