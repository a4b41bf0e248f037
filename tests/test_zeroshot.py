"""Zero-shot classification: prompts, the text model (tiny BERT), the image model (tiny CLIP), the command.

The tiny models are randomly initialised, so their predictions say nothing
about accuracy; they check the code path: the class vectors are the prompts'
embeddings, a text equal to a class's prompt goes to that class, and the
models save, load and export like any trained one. One integration test runs
all-MiniLM-L6-v2 on real SST-2 sentences.
"""

import contextlib
import io
import json
import os

import keras
import numpy as np
import pytest
from helpers import run_export_test, run_serialization_test, tiny_bert

import keras_transfer as kt
from keras_transfer.cli import EXIT_BAD_INPUT, main
from keras_transfer.zeroshot import class_prompts, class_vectors

# --- prompts -------------------------------------------------------------------


def test_class_prompts_put_names_or_descriptions_into_every_template():
    assert class_prompts(["ham", "spam"]) == [["This text is about ham."], ["This text is about spam."]]
    prompts = class_prompts(
        ["ham", "spam"],
        ["A {} message.", "{}"],
        descriptions={"spam": ["an advertisement", "a prize offer"]},
    )
    assert prompts == [
        ["A ham message.", "ham"],
        ["A an advertisement message.", "A a prize offer message.", "an advertisement", "a prize offer"],
    ]


@pytest.mark.parametrize(
    "names, template, descriptions, message",
    [
        (["only"], "{}", None, "at least 2 classes"),
        ("spam", "{}", None, "list of at least 2 names"),
        (["ham", "ham"], "{}", None, "distinct"),
        (["ham", " "], "{}", None, "must not be empty"),
        (["ham", "spam"], "This text is about spam", None, "must hold {} exactly once"),
        (["ham", "spam"], "{} or {}", None, "must hold {} exactly once"),
        (["ham", "spam"], [], None, "at least one template"),
        (["ham", "spam"], "{}", {"eggs": "food"}, "not among the classes"),
        (["ham", "spam"], "{}", {"spam": ""}, "non-empty strings"),
    ],
)
def test_bad_classes_templates_and_descriptions_say_what_to_fix(names, template, descriptions, message):
    with pytest.raises(ValueError, match=message.replace("{}", r"\{\}")):
        class_prompts(names, template, descriptions)


def test_class_vectors_average_the_unit_embeddings_of_each_class():
    embeddings = np.array([[2.0, 0.0], [0.0, 3.0], [0.0, -1.0]])
    vectors = class_vectors(embeddings, [["a"], ["b", "c"]])
    np.testing.assert_allclose(vectors, [[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="Expected 3 prompt embeddings"):
        class_vectors(embeddings[:2], [["a"], ["b", "c"]])


def test_bad_prompts_fail_before_any_backbone_loads():
    # A backbone that does not exist would fail later, with another message.
    with pytest.raises(ValueError, match="at least 2 classes"):
        kt.zero_shot_classifier(["spam"], backbone="/no/such/backbone")
    with pytest.raises(ValueError, match="exactly once"):
        kt.zero_shot_image_classifier(["cat", "dog"], backbone="/no/such/backbone", template="a photo")


# --- text: a tiny BERT -------------------------------------------------------------


def tiny_zero_shot(template="it was {}", class_names=("good", "bad"), **options):
    backbone, preprocessor = tiny_bert()
    return kt.zero_shot_classifier(
        list(class_names), backbone=backbone, preprocessor=preprocessor, template=template, verbose=0, **options
    )


def _unit(vectors):
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def zero_shot_model():
    return tiny_zero_shot(scale=7.0)


def test_the_class_vectors_are_the_normalised_prompt_embeddings(zero_shot_model):
    model = zero_shot_model
    assert isinstance(model, kt.TextClassifier) and model.class_names == ["good", "bad"]
    assert model.head.cosine_scale == 7.0 and model.pooling == "mean"
    prompts, _ = kt.extract_features(model, ["it was good", "it was bad"], verbose=0)
    kernel = model.get_layer("predictions").kernel.numpy()
    np.testing.assert_allclose(kernel.T / 7.0, _unit(prompts), atol=1e-5)


def test_a_text_equal_to_a_class_prompt_is_assigned_that_class():
    model = tiny_zero_shot(template="the {} film", class_names=("good", "bad", "dull"))
    classes, confidence = model.predict_classes(["the bad film", "the good film", "the dull film"])
    assert classes.tolist() == [1, 0, 2]
    # Its own prompt is at cosine 1: softmax(10 * cosine) gives it the most.
    assert np.all(confidence > 1 / 3)


def test_descriptions_and_template_ensembles_set_the_class_vectors():
    model = tiny_zero_shot(template=["it was {}", "{} film"], descriptions={"bad": ["awful", "poor"]})
    prompts = ["it was good", "good film", "it was awful", "it was poor", "awful film", "poor film"]
    embeddings, _ = kt.extract_features(model, prompts, verbose=0)
    unit = _unit(embeddings)
    expected = np.stack([unit[:2].mean(axis=0), unit[2:].mean(axis=0)])
    np.testing.assert_allclose(model.get_layer("predictions").kernel.numpy().T, 10.0 * _unit(expected), atol=1e-5)


def test_set_class_prompts_points_the_model_at_another_wording(zero_shot_model):
    model = zero_shot_model
    before = model.get_layer("predictions").kernel.numpy().copy()
    try:
        kt.zeroshot.set_class_prompts(model, "{} film", {"bad": "awful"}, verbose=0)
        embeddings, _ = kt.extract_features(model, ["good film", "awful film"], verbose=0)
        np.testing.assert_allclose(model.get_layer("predictions").kernel.numpy().T / 7.0, _unit(embeddings), atol=1e-5)
        with pytest.raises(ValueError, match="exactly once"):
            kt.zeroshot.set_class_prompts(model, "a film", verbose=0)
    finally:
        model.get_layer("predictions").kernel.assign(before)


def test_the_text_model_saves_loads_and_exports_to_litert(zero_shot_model, tmp_path):
    model = zero_shot_model
    texts = ["it was good", "it was bad", "the plot was dull", "a great movie"]
    restored = run_serialization_test(model, texts, str(tmp_path / "zero_shot.keras"), compile=False)
    assert restored.head.cosine_scale == model.head.cosine_scale
    report = restored.evaluate_report((texts, np.array([0, 1, 1, 0])))
    assert report.num_examples == 4
    run_export_test(model, texts, str(tmp_path / "zero_shot.tflite"), atol=1e-4)


# --- images: a tiny CLIP --------------------------------------------------------------

# A byte-pair vocabulary for "a photo of a cat." and "... dog."; CLIP pools the text at the
# end token, found as the highest id, so it comes last.
CLIP_MERGES = ["c a", "ca t</w>", "d o", "do g</w>", "o f</w>", "p h", "ph o", "t o</w>", "pho to</w>"]
CLIP_TOKENS = [
    "<|startoftext|>", "a</w>", ".</w>", "c", "a", "t</w>", "ca", "cat</w>", "d", "o", "g</w>", "do", "dog</w>",
    "f</w>", "of</w>", "p", "h", "ph", "pho", "t", "o</w>", "to</w>", "photo</w>", "<|endoftext|>",
]  # fmt: skip


def tiny_clip(size=32):
    """A randomly initialised CLIP (one layer per tower, width 16) and its preprocessor."""
    import keras_hub

    tokenizer = keras_hub.models.CLIPTokenizer(
        vocabulary={token: index for index, token in enumerate(CLIP_TOKENS)}, merges=CLIP_MERGES
    )
    converter = keras_hub.layers.CLIPImageConverter(image_size=(size, size), scale=1 / 255)
    preprocessor = keras_hub.models.CLIPPreprocessor(tokenizer, converter, sequence_length=12)
    encoders = dict(num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32)
    vision = keras_hub.models.CLIPVisionEncoder(patch_size=8, image_shape=(size, size, 3), **encoders)
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=len(CLIP_TOKENS), embedding_dim=16, max_sequence_length=12, **encoders
    )
    return keras_hub.models.CLIPBackbone(vision, text, projection_dim=8), preprocessor


def test_the_image_model_uses_the_clip_text_encoder_for_its_class_vectors(tmp_path):
    backbone, preprocessor = tiny_clip()
    model = kt.zero_shot_image_classifier(["cat", "dog"], backbone=backbone, preprocessor=preprocessor, verbose=0)
    assert isinstance(model, kt.ImageClassifier) and model.image_size == (32, 32)
    # CLIP's own temperature, exp(logit_scale): 1 / 0.07 at initialisation.
    np.testing.assert_allclose(model.head.cosine_scale, 1 / 0.07, rtol=1e-4)
    tokens = preprocessor({"prompts": ["a photo of a cat.", "a photo of a dog."], "images": None})["token_ids"]
    expected = _unit(backbone.get_text_embeddings(tokens))
    kernel = model.get_layer("predictions").kernel.numpy().T
    np.testing.assert_allclose(_unit(kernel), expected, atol=1e-5)
    # Each image's probabilities are softmax(scale * cosine to the class vectors).
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    features = _unit(kt.extract_features(model, images, verbose=0)[0])
    logits = model.head.cosine_scale * features @ expected.T
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(images, verbose=0), probabilities, atol=1e-4)
    # keras-hub prefixes the loaded CLIP encoder's weight paths with its name: compare the weights, not their paths.
    restored = run_serialization_test(
        model, images, str(tmp_path / "clip_zero_shot.keras"), compile=False, atol=1e-5, check_trainable=False
    )
    assert [w.shape for w in restored.trainable_weights] == [w.shape for w in model.trainable_weights]
    assert restored.head.cosine_scale == model.head.cosine_scale


def test_an_image_model_needs_an_image_text_backbone():
    backbone, preprocessor = tiny_bert()
    with pytest.raises(ValueError, match="image-text backbone"):
        kt.zero_shot_image_classifier(["cat", "dog"], backbone=backbone, preprocessor=preprocessor, verbose=0)


# --- the command ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny BERT as a keras-hub preset folder, and a labelled and an unlabelled CSV."""
    root = tmp_path_factory.mktemp("zero_shot")
    backbone, preprocessor = tiny_bert()
    backbone.save_to_preset(str(root / "preset"))
    preprocessor.save_to_preset(str(root / "preset"))
    rows = [("the good film", "good"), ("the bad film", "bad"), ("the dull film", "dull"), ("the bad plot", "bad")]
    (root / "labelled.csv").write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    (root / "indexed.csv").write_text("text,label\n" + "the good film,0\nthe bad film,1\nthe dull film,2\n")
    (root / "texts.csv").write_text("text\n" + "".join(f"{text}\n" for text, _ in rows))
    return root


def run_command(*argv):
    """`main(argv)`: `(exit code, stdout, stderr)`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["zero-shot", *argv])
    return code, out.getvalue(), err.getvalue()


def _classes(files):
    return ["--backbone", str(files / "preset"), "--template", "the {} film", "--classes", "good", "bad", "dull"]


def test_the_command_prints_predictions_without_labels_and_saves_the_model(files, tmp_path):
    output = tmp_path / "zero_shot.keras"
    code, out, err = run_command(str(files / "texts.csv"), *_classes(files), "--output", str(output))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Embedding 3 class prompts for 3 classes with ")
    header = lines.index("class  confidence  text")
    assert [line.split()[0] for line in lines[header + 1 : header + 4]] == ["good", "bad", "dull"]
    assert "accuracy" not in out and lines[-1] == f"Wrote {output}"
    restored = keras.saving.load_model(output, compile=False)
    assert restored.class_names == ["good", "bad", "dull"]
    # The saved model is one the other commands take.
    assert main(["predict", str(output), "the bad film"]) == 0


def test_the_command_scores_labels_given_as_names_or_indexes(files):
    code, out, err = run_command(str(files / "labelled.csv"), *_classes(files), "--label-column", "label", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["prompts"] == {"good": ["the good film"], "bad": ["the bad film"], "dull": ["the dull film"]}
    assert [row["class"] for row in result["predictions"][:3]] == ["good", "bad", "dull"]
    assert result["labels"] == "by class name" and result["evaluation"]["num_examples"] == 4
    assert result["accuracy"] >= 0.75 and result["majority_class_accuracy"] == 0.5
    code, out, err = run_command(str(files / "indexed.csv"), *_classes(files), "--label-column", "label")
    assert code == 0, err
    assert "read as 0-based indexes: 0 = good, 1 = bad, 2 = dull." in out
    assert "accuracy 1.000 (majority class 0.333)" in out.splitlines()[-1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--classes", "spam"], "at least 2 classes"),
        (["--classes", "ham", "spam", "--template", "about ham"], "must hold {} exactly once"),
        (["--classes", "ham", "spam=", "--template", "{}"], "empty description"),
        (["--classes", "good", "bad", "--label-column", "label"], "has label 'dull', which is not in class_names"),
        (["--classes", "good", "bad", "--label-column", "nope"], "column(s) ['nope'] not found"),
        (["--classes", "good", "bad", "--output", "model.h5"], "must end in .keras"),
    ],
)
def test_bad_options_and_unknown_labels_fail_before_any_model_loads(files, argv, message):
    # The backbone does not exist: these errors come first.
    code, out, err = run_command(str(files / "labelled.csv"), "--backbone", "/no/such/backbone", *argv)
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.startswith("keras-transfer zero-shot: error: ") and len(err.strip().splitlines()) == 1
    assert message in err


def test_the_command_refuses_to_overwrite_a_file(files, tmp_path):
    existing = tmp_path / "model.keras"
    existing.write_text("mine")
    code, _, err = run_command(str(files / "texts.csv"), *_classes(files), "--output", str(existing))
    assert code == EXIT_BAD_INPUT and "--overwrite" in err and existing.read_text() == "mine"


# --- integration: all-MiniLM-L6-v2 on SST-2 ----------------------------------------------

SST2_EXAMPLES = 96


@pytest.mark.integration
def test_minilm_zero_shot_beats_the_majority_class_on_sst2(assets_dir):
    folder = os.path.join(assets_dir, "keras-hub", "all-MiniLM-L6-v2")
    dev = kt.data.text_file(
        os.path.join(assets_dir, "text", "sst2", "dev.tsv"),
        text_column="content",
        label_column="label",
        class_names=["negative", "positive"],
        max_examples=SST2_EXAMPLES,
        shuffle=False,
        seed=3,
    )
    model = kt.zero_shot_classifier(
        ["negative", "positive"],
        backbone=folder,
        template="A {} movie review.",
        descriptions={"negative": "bad", "positive": "good"},
        verbose=0,
    )
    assert model.pooling == "mean"  # from the folder's 1_Pooling/config.json
    report = model.evaluate_report(dev)
    majority = np.bincount(report.y_true).max() / report.num_examples
    print(f"SST-2 dev, {SST2_EXAMPLES} sentences: zero-shot MiniLM {report.accuracy:.3f}, majority {majority:.3f}")
    assert report.accuracy >= majority + 0.1
