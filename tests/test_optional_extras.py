"""The base install (no extras) runs the image workflow; text, TF-MOT and TFDS say which extra they need.

The optional packages are hidden from a fresh Python process by a `sys.meta_path` finder that raises
ModuleNotFoundError for them, as if they were not installed, before keras_transfer is imported.
"""

import configparser
import json
import os
import subprocess
import sys

from keras_transfer.errors import EXTRAS

ROOT = os.path.join(os.path.dirname(__file__), "..")
TEXT_MODEL = os.path.abspath(os.path.join(os.path.dirname(__file__), "fixtures", "text_classifier_v0.1.0.keras"))
# The extras' packages and the packages only they bring (keras-hub's tensorflow-text, keras_nlp).
BLOCKED = (*EXTRAS, "keras_nlp", "tensorflow_text", "safetensors")

_BLOCK = f"""
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, _NotInstalled())
"""

_LIBRARY = """
import contextlib, io, json, os, sys

import keras_transfer as kt
from keras_transfer import cli

blocked = lambda: sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
image_dir, work = sys.argv[1:3]
out = {"loaded_at_import": blocked()}
out["names"] = {name: hasattr(kt, name) for name in (
    "Bridge", "to_tf_keras", "prune", "cluster", "quantization_aware", "OptimizedModel",
    "TextClassifier", "build_text_backbone", "list_text_backbones", "MissingExtraError")}
for name in ("from_tfds", "from_tfds_text", "tfds_image_folder"):
    out["names"][f"data.{name}"] = hasattr(kt.data, name)

train, val = kt.data.image_folder(image_dir, image_size=32, validation_split=0.25, batch_size=4)
model = kt.ImageClassifier("mobilenet_v2", weights=None, image_size=32, class_names=train.class_names)
history = model.fine_tune(train, val, head_epochs=1, finetune_epochs=1, verbose=0)
out["epochs"] = {name: len(phase.history["loss"]) for name, phase in history.phases}
out["evaluated"] = model.evaluate_report(val).num_examples
tflite = os.path.join(work, "model.tflite")
exported = model.export_model(tflite, check_data=val)
out["tflite_bytes"] = os.path.getsize(tflite)
out["max_abs_difference"] = exported.check.max_abs_difference
out["interpreter"] = kt.litert.interpreter_class().__module__
out["litert_predict"] = kt.LiteRTModel(tflite).predict(next(iter(val))[0]).shape[-1]
model.save(os.path.join(work, "model.keras"))

calls = {
    "TextClassifier": lambda: kt.TextClassifier("bert_tiny_en_uncased", num_classes=2),
    "list_text_backbones": lambda: kt.list_text_backbones(),
    "prune": lambda: kt.prune(model, train, epochs=1),
    "quantization_aware": lambda: kt.quantization_aware(model, train, epochs=1),
    "to_tf_keras": lambda: kt.to_tf_keras(model),
    "from_tfds": lambda: kt.data.from_tfds("mnist"),
    "from_tfds_text": lambda: kt.data.from_tfds_text("imdb_reviews"),
    "tfds_image_folder": lambda: kt.data.tfds_image_folder(image_dir),
    "keras-hub image preset": lambda: kt.ImageClassifier(work, num_classes=2),
}
out["errors"] = {}
for name, call in calls.items():
    try:
        call()
        out["errors"][name] = None
    except Exception as error:
        out["errors"][name] = [isinstance(error, kt.MissingExtraError), isinstance(error, ImportError), str(error)]

commands = {
    "backbones --text": ["backbones", "--text"],
    "optimize": ["optimize", os.path.join(work, "model.keras"), image_dir, "--method", "prune",
                 "--output", os.path.join(work, "optimized")],
    "predict text model": ["predict", TEXT_MODEL, "good film"],
}
out["commands"] = {}
for name, argv in commands.items():
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = cli.main(argv)
    out["commands"][name] = [code, stderr.getvalue()]
out["optimize_left"] = sorted(os.listdir(work))
out["loaded_at_end"] = blocked()
print("RESULT " + json.dumps(out))
"""


def _run(code, *args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("KERAS_TRANSFER_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-c", _BLOCK + code, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def _check_missing(error, feature, packages, extra):
    assert error is not None, f"{feature} worked without {packages}"
    is_missing_extra, is_import_error, message = error
    assert is_missing_extra and is_import_error, message
    packages = (packages,) if isinstance(packages, str) else packages
    assert any(message.startswith(f"{feature} needs {package} (No module named ") for package in packages), message
    assert message.endswith(f'pip install "keras-transfer[{extra}]"'), message


def test_image_workflow_without_the_extras_and_a_clear_error_for_each_extra(tmp_path, make_image_folder):
    images = make_image_folder(per_class=8, size=32)
    work = tmp_path / "work"
    work.mkdir()
    code = f"BLOCKED = {BLOCKED!r}\nTEXT_MODEL = {TEXT_MODEL!r}\n" + _LIBRARY
    done = _run(code, images, str(work), cwd=tmp_path)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT ") :])

    # Importing and using the image workflow loads none of the optional packages; every name resolves.
    assert out["loaded_at_import"] == [] and out["loaded_at_end"] == []
    assert all(out["names"].values()), out["names"]
    assert out["epochs"]["head"] == 1 and out["evaluated"] == 4
    assert out["tflite_bytes"] > 10_000 and out["max_abs_difference"] < 1e-4
    assert out["interpreter"].startswith("ai_edge_litert") and out["litert_predict"] == 2

    errors = out["errors"]
    for feature in ("TextClassifier", "keras-hub image preset"):
        name = "A keras-hub image preset or preset folder" if feature == "keras-hub image preset" else feature
        _check_missing(errors[feature], name, "keras-hub", "text")
    _check_missing(errors["list_text_backbones"], "Listing the text backbones", "keras-hub", "text")
    tfmot = "TF-MOT optimization (quantization_aware, prune, cluster, to_tf_keras)"
    for feature in ("prune", "quantization_aware", "to_tf_keras"):  # whichever of the two it imports first
        _check_missing(errors[feature], tfmot, ("tensorflow-model-optimization", "tf-keras"), "tfmot")
    for feature in ("from_tfds", "from_tfds_text", "tfds_image_folder"):
        _check_missing(errors[feature], feature, "tensorflow-datasets", "tfds")

    # The command line: one line, exit 2, and nothing written by a command that cannot run.
    expected = {
        "backbones --text": ("keras-transfer backbones: error: Listing the text backbones needs keras-hub", "text"),
        "optimize": ("keras-transfer optimize: error: optimize needs tensorflow-model-optimization", "tfmot"),
        "predict text model": (f"keras-transfer predict: error: Loading {TEXT_MODEL!r} needs keras-hub", "text"),
    }
    for name, (start, extra) in expected.items():
        code, stderr = out["commands"][name]
        assert code == 2 and stderr.count("\n") == 1, (name, stderr)
        assert stderr.startswith(start) and stderr.rstrip().endswith(f'pip install "keras-transfer[{extra}]"'), stderr
    assert not {"optimized", "optimized.partial"} & set(out["optimize_left"]), out["optimize_left"]


def test_train_text_command_without_keras_hub_is_one_line(tmp_path):
    data = tmp_path / "texts.csv"
    data.write_text("text,label\ngood film,pos\nbad film,neg\ngreat plot,pos\ndull,neg\n")
    code = (
        "import runpy\n"
        "sys.argv = ['keras-transfer', *sys.argv[1:]]\n"  # as the installed command: arguments parsed first
        "runpy.run_module('keras_transfer.cli', run_name='__main__')\n"
    )
    argv = ["train-text", str(data), "--backbone", "bert_tiny_en_uncased", "--output", str(tmp_path / "run")]
    done = _run(code, *argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "keras-transfer train-text: error: train-text needs keras-hub (No module named 'keras_hub'): "
        'pip install "keras-transfer[text]"\n'
    )
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_extras_in_setup_cfg_install_what_the_errors_name():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))

    def names(text):
        return {line.split(";")[0].split("=")[0].split(">")[0].split("<")[0].strip() for line in text.split("\n")} - {
            ""
        }

    base = names(config["options"]["install_requires"])
    extras = {extra: names(text) for extra, text in config["options.extras_require"].items()}
    assert {"tensorflow", "keras", "ai-edge-litert", "numpy", "pillow", "scikit-learn", "matplotlib"} <= base
    for package, extra in EXTRAS.values():
        assert package not in base, f"{package} is an extra's, not the base install's"
        assert package in extras[extra] and package in extras["all"] and package in extras["dev"], package
    assert extras["all"] == extras["text"] | extras["tfmot"] | extras["tfds"] | extras["quantizer"]
    assert extras["all"] <= extras["dev"] and {"pytest", "ruff"} <= extras["dev"]
