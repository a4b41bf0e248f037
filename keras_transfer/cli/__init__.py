"""The `keras-transfer` command line."""

import argparse
import dataclasses
import json
import os
import sys
import time

EXIT_BAD_INPUT = 2

# Kept here (and checked against the library by the tests) so that `--help`
# does not have to import TensorFlow.
TEXT_STRATEGIES = ("full", "frozen", "lora")
POOLINGS = ("auto", "pooled", "cls", "mean", "max")
CLEANING_STEPS = ("lower", "strip_html", "remove_urls", "remove_punctuation", "remove_numbers",
                  "remove_stopwords", "collapse_whitespace")
DEFAULT_LORA_RANK = 8
# Learning rate (Adam) of the phase that `--epochs` counts, per strategy: the
# top of BERT's fine-tuning range for the whole network, the head rate of
# `TextClassifier.FINE_TUNE_DEFAULTS` for a head alone, and a higher rate for
# LoRA adapters, which start at zero and need it to move in a few epochs.
TEXT_LEARNING_RATES = {"full": 5e-5, "frozen": 1e-3, "lora": 2e-3}
TEXT_HEAD_LEARNING_RATE = 1e-3
EXPORT_FORMATS = ("tflite", "saved_model")
OPTIMIZE_METHODS = {"qat": "quantization_aware", "prune": "prune", "cluster": "cluster"}
QUANTIZE_CHOICES = ("none", "dynamic", "float16", "int8")


class CommandError(Exception):
    """Bad input found before any long work; printed without a traceback."""


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-transfer",
        description="Transfer learning on Keras 3: pretrained backbones, new heads, "
        "two-phase fine-tuning, evaluation.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    backbones = commands.add_parser(
        "backbones", help="list the backbones in the registry (--text: the keras-hub text presets)"
    )
    backbones.add_argument("--family", help="only this family, e.g. MobileNet (with --text: BERT)")
    backbones.add_argument("--text", action="store_true",
                           help="list the keras-hub text backbone presets by family (for train-text)")
    backbones.add_argument("--json", action="store_true", help="print JSON instead of a table")
    backbones.set_defaults(run=_backbones)

    train = commands.add_parser(
        "train",
        help="train an image classifier on a folder of images (one sub-folder per class)",
        description="Trains the head on a frozen pretrained backbone, then fine-tunes the "
        "top of the backbone. Writes OUT_DIR/model.keras, report.json, "
        "training_curves.png and confusion_matrix.png.",
    )
    train.add_argument("data_dir", metavar="DATA_DIR", help="training images, one sub-folder per class")
    validation = train.add_mutually_exclusive_group()
    validation.add_argument("--val-dir", metavar="DIR", help="validation images, same sub-folders")
    validation.add_argument("--val-split", type=float, metavar="F", help="hold out this fraction of DATA_DIR")
    train.add_argument("--backbone", required=True, metavar="NAME",
                       help="registry name (see `keras-transfer backbones`), keras-hub preset or folder")
    train.add_argument("--weights", default="imagenet", metavar="imagenet|none|PATH",
                       help="backbone weights (default: imagenet)")
    train.add_argument("--image-size", type=int, metavar="N", help="square input size (default: the backbone's)")
    train.add_argument("--head-epochs", type=int, default=5, metavar="N", help="epochs with the backbone frozen (default: 5)")
    train.add_argument("--finetune-epochs", type=int, default=5, metavar="N", help="epochs fine-tuning (default: 5)")
    train.add_argument("--unfreeze", default="0.3", metavar="N|F|LAYER|all",
                       help="backbone part to fine-tune: layers from the top, a fraction, "
                       "a layer name and all above it, or all (default: 0.3)")
    train.add_argument("--optimizer", default="adam", choices=["adam", "rmsprop", "sgd"], help="head-phase optimizer")
    train.add_argument("--finetune-optimizer", default="rmsprop", choices=["adam", "rmsprop", "sgd"],
                       help="fine-tuning optimizer")
    train.add_argument("--head-lr", type=float, default=1e-3, metavar="LR", help="default: 1e-3")
    train.add_argument("--finetune-lr", type=float, default=1e-5, metavar="LR", help="default: 1e-5")
    train.add_argument("--batch-size", type=int, default=32, metavar="N")
    train.add_argument("--augment", default="standard", metavar="PRESET",
                       help="none, flip, standard, strong or randaugment (default: standard)")
    train.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop a phase after PATIENCE epochs without improvement")
    train.add_argument("--cache-features", action="store_true",
                       help="run the frozen backbone once and train the head on its cached features "
                       "(the head phase then sees no augmentation)")
    train.add_argument("--schedule", default="constant", choices=["constant", "one_cycle", "warmup_cosine"],
                       help="learning-rate schedule of each phase, peaking at its LR (default: constant)")
    train.add_argument("--layer-decay", type=_positive_float, metavar="F",
                       help="fine-tune each backbone block at F times the rate of the block above it")
    train.add_argument("--progressive", type=_positive_int, metavar="N",
                       help="unfreeze the backbone N blocks per fine-tuning epoch from the top, "
                       "instead of --unfreeze")
    train.add_argument("--lr-find", action="store_true",
                       help="run an LR range test on the head first, use its suggestion as --head-lr "
                       "and write lr_finder.png")
    train.add_argument("--seed", type=int, default=1337)
    train.add_argument("--output", required=True, metavar="OUT_DIR", help="folder for the model, report and plots")
    train.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty OUT_DIR")
    train.add_argument("--json", action="store_true", help="print the report as JSON at the end")
    train.set_defaults(run=_train)

    train_text = commands.add_parser(
        "train-text",
        help="fine-tune a keras-hub text backbone on a CSV/TSV file of labelled texts",
        description="Puts a new classification head on a pretrained keras-hub text backbone "
        "and trains it: the whole network (--strategy full, the default), the head alone on "
        "the frozen backbone (frozen), or LoRA adapters and the head (lora; --lora-rank alone "
        "implies it). Writes OUT_DIR/model.keras, report.json and training_curves.png, plus "
        "confusion_matrix.png when there is validation data.",
    )
    train_text.add_argument("train_file", metavar="TRAIN_FILE",
                            help="CSV or TSV file (UTF-8), one example per row")
    validation = train_text.add_mutually_exclusive_group()
    validation.add_argument("--val-file", metavar="FILE", help="validation examples, same columns")
    validation.add_argument("--val-split", type=float, metavar="F",
                            help="hold out this fraction of TRAIN_FILE (seeded)")
    _add_text_file_options(train_text)
    train_text.add_argument("--backbone", required=True, metavar="PRESET_OR_DIR",
                            help="keras-hub preset (see `keras-transfer backbones --text`), hub handle, "
                            "or a local keras-hub preset / Hugging Face folder")
    train_text.add_argument("--weights", default="pretrained", metavar="pretrained|none|PATH",
                            help="backbone weights (default: pretrained)")
    train_text.add_argument("--strategy", choices=TEXT_STRATEGIES,
                            help="what trains: full (everything), frozen (the head only) or lora "
                            "(LoRA adapters + head). Default: lora with --lora-rank, else full")
    train_text.add_argument("--lora-rank", type=_positive_int, metavar="R",
                            help=f"rank of the LoRA adapters (implies --strategy lora; "
                            f"default with lora: {DEFAULT_LORA_RANK})")
    train_text.add_argument("--sequence-length", type=int, metavar="N",
                            help="tokens per text (default: the 95th percentile of the training "
                            "texts' token counts, capped by the backbone)")
    train_text.add_argument("--epochs", type=_positive_int, default=3, metavar="N",
                            help="epochs of the strategy's training (default: 3)")
    train_text.add_argument("--head-epochs", type=_non_negative_int, metavar="N",
                            help=f"full and lora only: first train the head alone on the frozen "
                            f"backbone for N epochs at {TEXT_HEAD_LEARNING_RATE:g} (default: 0)")
    train_text.add_argument("--lr", type=_positive_float, metavar="LR",
                            help="learning rate of the --epochs phase (Adam; default: "
                            + ", ".join(f"{rate:g} {name}" for name, rate in TEXT_LEARNING_RATES.items())
                            + ")")
    train_text.add_argument("--batch-size", type=_positive_int, default=32, metavar="N")
    train_text.add_argument("--max-examples", type=_positive_int, metavar="N",
                            help="use a seeded random subset of N rows of each file")
    train_text.add_argument("--pooling", default="auto", choices=POOLINGS,
                            help="how the token sequence becomes one vector: the backbone's pooler, "
                            "the [CLS] token, or the masked mean or max over tokens; auto takes what a "
                            "sentence-transformers folder's 1_Pooling/config.json names, else the "
                            "pooler where the backbone has one, else the mean (default: auto)")
    train_text.add_argument("--early-stopping", type=_positive_int, metavar="PATIENCE",
                            help="stop a phase after PATIENCE epochs without improvement")
    train_text.add_argument("--seed", type=int, default=1337)
    train_text.add_argument("--output", required=True, metavar="OUT_DIR", help="folder for the model, report and plots")
    train_text.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty OUT_DIR")
    train_text.add_argument("--json", action="store_true", help="print the report as JSON at the end")
    train_text.set_defaults(run=_train_text)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a saved model on a folder of images, or a text model on a CSV/TSV file",
        description="Scores a model.keras written by train (on an image folder, one sub-folder "
        "per class) or by train-text (on a CSV/TSV file read with --text-column and "
        "--label-column).",
    )
    evaluate.add_argument("model", metavar="MODEL",
                          help="a model.keras written by train or train-text, or an image model's "
                          ".tflite written by export or optimize (run in the LiteRT interpreter)")
    evaluate.add_argument("data", metavar="DATA",
                          help="images, one sub-folder per class; for a text model, a CSV/TSV file")
    evaluate.add_argument("--batch-size", type=_positive_int, default=32, metavar="N")
    _add_text_file_options(evaluate, for_model=True)
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of text")
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser(
        "predict",
        help="classify image files, or sentences with a text model",
        description="Prints the predicted class and its probability for each input: image "
        "files for a model written by train, sentences for one written by train-text.",
    )
    predict.add_argument("model", metavar="MODEL", help="a model.keras written by train or train-text")
    predict.add_argument("inputs", metavar="INPUT", nargs="*",
                         help="image files; for a text model, sentences (quote each one)")
    predict.add_argument("--file", metavar="FILE",
                         help="read more inputs from FILE, one per line (blank lines are skipped)")
    predict.add_argument("--clean", nargs="+", metavar="STEP", choices=CLEANING_STEPS,
                         help="text models: the cleaning steps the model was trained with")
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    predict.set_defaults(run=_predict)

    export = commands.add_parser(
        "export",
        help="export a saved model to TFLite/LiteRT or SavedModel, checked against Keras",
        description="Exports MODEL (a model.keras written by train or train-text) and runs the "
        "export in a real LiteRT interpreter (or loads the SavedModel) to compare it with Keras: "
        "top-1 agreement, max abs difference, and accuracy on --eval-data. With "
        "--max-accuracy-drop it tries int8, dynamic, float16 and float32 and keeps the smallest "
        "file within that drop. Class names are written beside the model (OUTPUT.json).",
    )
    export.add_argument("model", metavar="MODEL", help="a model.keras written by train or train-text")
    export.add_argument("--format", default="tflite", choices=EXPORT_FORMATS)
    export.add_argument("--quantize", default="none", choices=QUANTIZE_CHOICES,
                        help="tflite only: none (float32), dynamic (int8 weights), float16, or int8 "
                        "(full integer, calibrated on --representative-data)")
    export.add_argument("--representative-data", metavar="DIR",
                        help="calibration data for int8: training images (one sub-folder per "
                        "class), or a CSV/TSV file for a text model; drawn across all classes "
                        "(with --max-accuracy-drop and no DIR, int8 calibrates on --eval-data)")
    export.add_argument("--num-samples", type=_positive_int, default=100, metavar="N",
                        help="int8 calibration examples (default 100)")
    export.add_argument("--io-dtype", default="float32", choices=("float32", "int8", "uint8"),
                        help="int8 only: type of the model's inputs and outputs (default float32)")
    export.add_argument("--eval-data", metavar="DIR",
                        help="labelled data to check the export's accuracy on (images or CSV/TSV)")
    export.add_argument("--max-accuracy-drop", type=_fraction, metavar="F",
                        help="with --eval-data: keep the smallest TFLite export whose accuracy "
                        "drops at most F (e.g. 0.005) below Keras's; overrides --quantize")
    export.add_argument("--batch-size", type=_positive_int, default=32, metavar="N")
    _add_text_file_options(export, for_model=True)
    export.add_argument("--output", required=True, metavar="FILE",
                        help="the .tflite file, or the SavedModel folder")
    export.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    export.add_argument("--json", action="store_true", help="end with one line of JSON")
    export.set_defaults(run=_export)

    optimize = commands.add_parser(
        "optimize",
        help="quantization-aware training, pruning or clustering (TF-MOT), exported to TFLite",
        description="Fine-tunes MODEL (an image model.keras written by train) on TRAIN_DIR with "
        "TF-MOT (through a Keras 3 -> tf_keras bridge that is checked for equal outputs), exports "
        "OUT_DIR/model.tflite (int8 for qat, float32 for prune and cluster) with its metadata, "
        "and writes OUT_DIR/report.json: accuracy (Keras, optimized model), tflite_accuracy, "
        "original_accuracy, size_bytes, sparsity and latency_ms (LiteRT, batch 1).",
    )
    optimize.add_argument("model", metavar="MODEL", help="an image model.keras written by train")
    optimize.add_argument("train_dir", metavar="TRAIN_DIR", help="training images, one sub-folder per class")
    optimize.add_argument("--method", required=True, choices=tuple(OPTIMIZE_METHODS),
                          help="qat: quantization-aware training to int8; prune: magnitude pruning "
                          "to --sparsity; cluster: weight clustering to --clusters values per kernel")
    optimize.add_argument("--val-dir", metavar="DIR",
                          help="validation images for the accuracies (default: TRAIN_DIR, said in the report)")
    optimize.add_argument("--epochs", type=_positive_int, metavar="N",
                          help="fine-tuning epochs (default: qat 1, prune 2, cluster 1)")
    optimize.add_argument("--lr", type=_positive_float, metavar="RATE",
                          help="Adam learning rate (default: qat 1e-5, prune 1e-4, cluster 1e-5)")
    optimize.add_argument("--sparsity", type=_open_fraction, default=0.5, metavar="F",
                          help="prune: fraction of zero weights per kernel (default 0.5)")
    optimize.add_argument("--clusters", type=_at_least_two, default=16, metavar="N",
                          help="cluster: distinct values per kernel (default 16)")
    optimize.add_argument("--batch-size", type=_positive_int, default=32, metavar="N")
    optimize.add_argument("--threads", type=_positive_int, default=1, metavar="N",
                          help="LiteRT threads for the latency (default 1)")
    optimize.add_argument("--seed", type=int, default=1337)
    optimize.add_argument("--output", required=True, metavar="OUT_DIR", help="folder for model.tflite and report.json")
    optimize.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty OUT_DIR")
    optimize.add_argument("--json", action="store_true", help="end with one line of JSON")
    optimize.set_defaults(run=_optimize)

    demo = commands.add_parser(
        "demo",
        help="transfer vs. from-scratch on scikit-learn's handwritten digits (offline, ~1 min)",
    )
    demo.add_argument("--json", action="store_true", help="end with one line of JSON")
    demo.set_defaults(run=_demo)
    return parser


def _add_text_file_options(parser, for_model=False):
    where = "text models: " if for_model else ""
    parser.add_argument("--text-column", default="text", metavar="C",
                        help=f"{where}column with the texts: a header name or a 0-based index (default: text)")
    parser.add_argument("--label-column", default="label", metavar="C",
                        help=f"{where}column with the labels: a header name or a 0-based index (default: label)")
    parser.add_argument("--header", default="auto", choices=["auto", "yes", "no"],
                        help=f"{where}whether the first row names the columns; auto: yes when the "
                        "named columns are in it (with index columns, auto means no)")
    parser.add_argument("--delimiter", default="auto", metavar="CHAR",
                        help=f"{where}field separator, e.g. ';' or tab (default: tab for .tsv, comma "
                        "for .csv, else sniffed from the file)")
    parser.add_argument("--clean", nargs="+", metavar="STEP", choices=CLEANING_STEPS,
                        help=f"{where}cleaning steps applied to every text, in order: "
                        + ", ".join(CLEANING_STEPS)
                        + (" (give the ones the model was trained with)" if for_model else ""))


def _positive_int(text):
    return _number(text, int, lambda value: value > 0, "a positive integer")


def _non_negative_int(text):
    return _number(text, int, lambda value: value >= 0, "an integer >= 0")


def _positive_float(text):
    return _number(text, float, lambda value: value > 0, "a positive number")


def _open_fraction(text):
    return _number(text, float, lambda value: 0 < value < 1, "a number between 0 and 1")


def _at_least_two(text):
    return _number(text, int, lambda value: value >= 2, "an integer >= 2")


def _fraction(text):
    return _number(text, float, lambda value: 0 <= value < 1, "a number in [0, 1)")


def _number(text, kind, valid, what):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except CommandError as error:
        print(f"keras-transfer {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _backbones(args):
    if args.text:
        return _text_backbones(args)
    from keras_transfer.models.backbones import list_backbones

    specs = list_backbones(args.family)
    if not specs:
        raise CommandError(f"no backbone family {args.family!r}; run `keras-transfer backbones` for all.")
    if args.json:
        print(json.dumps([spec.__dict__ for spec in specs], indent=2))
        return
    print(f"{'name':<22} {'family':<15} {'default':>7} {'min':>4}  keras.applications")
    for spec in specs:
        print(f"{spec.name:<22} {spec.family:<15} {spec.default_size:>7} {spec.min_size:>4}  {spec.constructor}")
    print(f"{len(specs)} backbones. keras-hub image presets and local preset folders also work as --backbone.")


def _text_backbones(args):
    import textwrap

    from keras_transfer.models.backbones import TEXT_BACKBONES, list_text_backbones

    families = list_text_backbones(args.family)
    if not families:
        raise CommandError(
            f"no text backbone family {args.family!r}; families: {', '.join(TEXT_BACKBONES)}."
        )
    if args.json:
        print(json.dumps(families, indent=2))
        return
    for family, presets in families.items():
        spec = TEXT_BACKBONES[family]
        pooler = ", with a pooler" if spec.has_pooler else ""
        print(f"{family} (keras_hub.models.{spec.backbone_class}{pooler}): {len(presets)} presets")
        print(textwrap.fill("  ".join(presets), width=100, initial_indent="  ",
                            subsequent_indent="  ", break_on_hyphens=False))
    count = sum(len(presets) for presets in families.values())
    print(f"{count} presets in {len(families)} families. Local keras-hub preset folders and Hugging Face "
          "folders (e.g. all-MiniLM-L6-v2) also work as --backbone of train-text.")


def _check_output_dir(path, overwrite):
    if os.path.isfile(path):
        raise CommandError(f"--output {path!r} is a file: give a folder.")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise CommandError(
            f"--output {path!r} is not empty; pass --overwrite to write into it, or choose a new folder."
        )


def _bad_input_errors():
    from keras_transfer.models.backbones import UnknownBackboneError
    from keras_transfer.data import DataError

    return (DataError, UnknownBackboneError, ValueError, FileNotFoundError)


def _train(args):
    _check_output_dir(args.output, args.overwrite)
    import keras

    from keras_transfer import data
    from keras_transfer import evaluation
    from keras_transfer import atomic_files as files
    from keras_transfer.models.backbones import default_image_size
    from keras_transfer.models.image_classifier import ImageClassifier

    keras.utils.set_random_seed(args.seed)
    try:
        image_size = args.image_size or default_image_size(args.backbone)
        loaded = data.image_folder(
            args.data_dir, image_size=image_size, batch_size=args.batch_size,
            validation_split=args.val_split, validation_dir=args.val_dir,
            augment=None if args.augment == "none" else args.augment, seed=args.seed,
        )
        train, validation = loaded if isinstance(loaded, tuple) else (loaded, None)
        model = ImageClassifier(
            args.backbone, class_names=train.class_names,
            weights=args.weights, image_size=image_size,
        )
        model.check_data(train, validation)
    except _bad_input_errors() as error:
        raise CommandError(error) from error

    start = time.perf_counter()
    head_lr, finder = args.head_lr, None
    if args.lr_find:
        from keras_transfer.finetune.schedules import find_learning_rate

        model.freeze_backbone()
        model.compile(args.optimizer, learning_rate=args.head_lr)
        finder = find_learning_rate(model, train, num_steps=min(100, 10 * len(train)), verbose=1)
        head_lr = finder.suggestion
        print(f"LR finder suggests a head learning rate of {head_lr:.2e}.")
    if args.progressive:
        from keras_transfer.finetune.progressive import ProgressiveUnfreezing

        unfreeze = ProgressiveUnfreezing(blocks_per_epoch=args.progressive)
    else:
        unfreeze = _parse_unfreeze(args.unfreeze)
    history = model.fine_tune(
        train, validation,
        head_epochs=args.head_epochs, finetune_epochs=args.finetune_epochs,
        unfreeze=unfreeze, optimizer=args.optimizer,
        finetune_optimizer=args.finetune_optimizer, head_learning_rate=head_lr,
        finetune_learning_rate=args.finetune_lr, early_stopping=args.early_stopping,
        cache_features=args.cache_features, layer_decay=args.layer_decay,
        schedule=None if args.schedule == "constant" else args.schedule,
    )
    seconds = time.perf_counter() - start

    evaluated = validation if validation is not None else train
    report = evaluation.evaluate_model(model, evaluated)
    os.makedirs(args.output, exist_ok=True)
    files.save_model(model, os.path.join(args.output, "model.keras"))
    evaluation.plot_training_curves(history, os.path.join(args.output, "training_curves.png"))
    evaluation.plot_confusion_matrix(
        report.confusion_matrix, report.class_names, os.path.join(args.output, "confusion_matrix.png")
    )
    if finder is not None:
        finder.plot(os.path.join(args.output, "lr_finder.png"))
    trainable, total = model.parameter_counts()
    summary = {
        "head_learning_rate": head_lr,
        "backbone": model.backbone_name,
        "weights": args.weights,
        "image_size": list(model.image_size),
        "classes": train.class_names,
        "train_examples": train.num_examples,
        "val_examples": validation.num_examples if validation is not None else 0,
        "val_accuracy": report.accuracy if validation is not None else None,
        "train_accuracy": report.accuracy if validation is None else None,
        "skipped_files": train.skipped_files + (validation.skipped_files if validation is not None else []),
        "phases": {
            name: {"epochs": len(phase.history.get("loss", [])), "seconds": round(history.seconds[name], 2)}
            for name, phase in history.phases
        },
        "seconds": round(seconds, 2),
        "trainable_params": trainable,
        "total_params": total,
        "history": history.merged(),
        "evaluation": report.to_dict(),
    }
    files.write_json(summary, os.path.join(args.output, "report.json"))

    print()
    print(report.format_text())
    scored = "validation" if validation is not None else "training (no validation data given)"
    phases = ", ".join(f"{name} {phase['epochs']} epochs" for name, phase in summary["phases"].items())
    print(f"\n{model.backbone_name} on {len(train.class_names)} classes, {train.num_examples} training images: "
          f"{scored} accuracy {report.accuracy:.3f} after {seconds:.0f} s "
          f"({phases}).")
    if summary["skipped_files"]:
        print(f"Skipped {len(summary['skipped_files'])} unreadable files (listed in report.json).")
    print(f"Wrote model.keras, report.json, training_curves.png, confusion_matrix.png to {args.output}")
    if args.json:
        print(json.dumps({key: summary[key] for key in summary if key not in ("history", "evaluation")}))


def _column(text):
    """A column option: a 0-based index when it is all digits, else a header name."""
    return int(text) if text.isdigit() else text


def _text_file_options(args):
    """The `text_file` keyword arguments shared by train-text and evaluate."""
    return dict(
        text_column=_column(args.text_column),
        label_column=_column(args.label_column),
        header={"auto": "auto", "yes": True, "no": False}[args.header],
        delimiter={"tab": "\t", "\\t": "\t"}.get(args.delimiter, args.delimiter),
        clean=args.clean,
        batch_size=args.batch_size,
    )


def _text_strategy(args):
    """`(strategy, lora_rank, head_epochs)` from the options, or a CommandError."""
    strategy = args.strategy or ("lora" if args.lora_rank else "full")
    if args.lora_rank and strategy != "lora":
        raise CommandError(
            f"--lora-rank trains LoRA adapters, which --strategy {strategy} does not: "
            "drop --lora-rank, or use --strategy lora."
        )
    if args.head_epochs is not None and strategy == "frozen":
        raise CommandError(
            "--head-epochs is a first phase before full or lora training; with --strategy "
            "frozen only the head trains, for --epochs epochs: drop --head-epochs."
        )
    if args.sequence_length is not None and args.sequence_length < 2:
        raise CommandError(
            f"--sequence-length {args.sequence_length} is too short: a text needs at least "
            "2 tokens ([CLS] and [SEP]) plus its words."
        )
    lora_rank = (args.lora_rank or DEFAULT_LORA_RANK) if strategy == "lora" else None
    return strategy, lora_rank, args.head_epochs or 0


def _train_text(args):
    strategy, lora_rank, head_epochs = _text_strategy(args)
    _check_output_dir(args.output, args.overwrite)
    import keras

    from keras_transfer import evaluation
    from keras_transfer import atomic_files as files
    from keras_transfer.data import text as text_data
    from keras_transfer.models.backbones import PRETRAINED
    from keras_transfer.models.text_classifier import TextClassifier

    keras.utils.set_random_seed(args.seed)
    learning_rate = args.lr or TEXT_LEARNING_RATES[strategy]
    weights = {"pretrained": PRETRAINED, "none": None}.get(args.weights, args.weights)
    try:
        loaded = text_data.text_file(
            args.train_file, validation_file=args.val_file, validation_split=args.val_split,
            max_examples=args.max_examples, seed=args.seed, **_text_file_options(args),
        )
        train, validation = loaded if isinstance(loaded, tuple) else (loaded, None)
        model = TextClassifier(
            args.backbone, weights=weights, class_names=train.class_names,
            sequence_length=args.sequence_length, pooling=args.pooling,
        )
        if lora_rank:
            model.enable_lora(lora_rank)
        model.check_data(train, validation)  # also picks the sequence length
    except _bad_input_errors() as error:
        raise CommandError(error) from error

    if strategy == "frozen":
        phases = dict(head_epochs=args.epochs, finetune_epochs=0, head_learning_rate=learning_rate)
    else:
        phases = dict(head_epochs=head_epochs, finetune_epochs=args.epochs,
                      head_learning_rate=TEXT_HEAD_LEARNING_RATE, finetune_learning_rate=learning_rate)
    print(f"Training {model.backbone_name} ({_strategy_text(strategy, lora_rank)}) on "
          f"{train.num_examples} texts, {len(train.class_names)} classes, "
          f"sequence length {model.sequence_length}.")
    start = time.perf_counter()
    history = model.fine_tune(
        train, validation, **phases, unfreeze="all", optimizer="adam", finetune_optimizer="adam",
        early_stopping=args.early_stopping,
    )
    seconds = time.perf_counter() - start

    report = evaluation.evaluate_model(model, validation) if validation is not None else None
    os.makedirs(args.output, exist_ok=True)
    files.save_model(model, os.path.join(args.output, "model.keras"))
    written = ["model.keras", "report.json", "training_curves.png"]
    evaluation.plot_training_curves(history, os.path.join(args.output, "training_curves.png"))
    if report is not None:
        evaluation.plot_confusion_matrix(
            report.confusion_matrix, report.class_names, os.path.join(args.output, "confusion_matrix.png")
        )
        written.append("confusion_matrix.png")
    trainable, total = model.parameter_counts()
    merged = history.merged()
    summary = {
        "backbone": model.backbone_name,
        "weights": args.weights,
        "strategy": strategy,
        "lora_rank": lora_rank,
        "lora_layers": len(model.lora_layers),
        "pooling": model.pooling,
        "sequence_length": model.sequence_length,
        "classes": train.class_names,
        "num_train": train.num_examples,
        "num_val": validation.num_examples if validation is not None else 0,
        "val_accuracy": report.accuracy if report is not None else None,
        "train_accuracy_last_epoch": merged["accuracy"][-1] if merged.get("accuracy") else None,
        "text_column": args.text_column,
        "label_column": args.label_column,
        "clean": args.clean,
        "learning_rate": learning_rate,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "phases": {
            name: {"epochs": len(phase.history.get("loss", [])), "seconds": round(history.seconds[name], 2)}
            for name, phase in history.phases
        },
        "seconds": round(seconds, 2),
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100.0 * trainable / total, 4),
        "history": merged,
        "evaluation": report.to_dict() if report is not None else None,
    }
    files.write_json(summary, os.path.join(args.output, "report.json"))

    print()
    if report is not None:
        print(report.format_text())
        scored = f"validation accuracy {report.accuracy:.3f}"
    else:
        last = summary["train_accuracy_last_epoch"]
        scored = "no validation data given" + (f", last epoch's training accuracy {last:.3f}" if last is not None else "")
    print(f"\n{model.backbone_name} ({_strategy_text(strategy, lora_rank)}) on "
          f"{len(train.class_names)} classes, {train.num_examples} training texts, sequence length "
          f"{model.sequence_length}: {scored} after {seconds:.0f} s, training "
          f"{trainable:,} of {total:,} parameters ({summary['trainable_percent']:.2f}%).")
    if args.clean:
        print(f"The texts were cleaned with {' '.join(args.clean)}: pass the same --clean to evaluate and predict.")
    print(f"Wrote {', '.join(written)} to {args.output}")
    if args.json:
        print(json.dumps({key: summary[key] for key in summary if key not in ("history", "evaluation")}))


def _strategy_text(strategy, lora_rank):
    return {
        "full": "full fine-tuning",
        "frozen": "head only, frozen backbone",
        "lora": f"LoRA rank {lora_rank}",
    }[strategy]


def _parse_unfreeze(text):
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # a layer name


def _load_model(path):
    if not os.path.isfile(path):
        raise CommandError(f"no model file at {path!r}: give the model.keras that `train` wrote.")
    import keras

    import keras_transfer  # noqa: F401  (registers the classes the file names)

    # Only predictions are needed: skipping the optimizer state also skips Keras's
    # warning about it for models saved after a LoRA or frozen-backbone phase.
    return keras.saving.load_model(path, compile=False)


def _load_tflite(path):
    from keras_transfer.deploy import litert
    if not os.path.isfile(path):
        raise CommandError(f"no model file at {path!r}.")
    model = litert.LiteRTModel(path)
    if model.head is None:
        raise CommandError(
            f"{path!r} has no metadata beside it ({path}.json with the head and class names): "
            "export it with `keras-transfer export` or keras_transfer.export_model."
        )
    if model.image_size is None:
        raise CommandError(
            f"{path!r} is not an image model (inputs {sorted(model.input_details)}): evaluate text "
            "models from their model.keras."
        )
    return model


def _is_text_model(model):
    from keras_transfer.models.text_classifier import TextClassifier

    return isinstance(model, TextClassifier)


def _evaluate(args):
    from keras_transfer import evaluation
    model = _load_tflite(args.model) if args.model.endswith(".tflite") else _load_model(args.model)
    # The model's classes fix the label order; labels it does not know fail here.
    dataset = _labelled_data(model, args.data, args, "DATA")
    report = evaluation.evaluate_model(model, dataset, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({**report.to_dict(), "skipped_files": getattr(dataset, "skipped_files", [])}))
    else:
        print(report.format_text())


def _labelled_data(model, path, args, option, shuffle=False, seed=1337):
    """Images (one sub-folder per class) or, for a text model, a CSV/TSV file, in the model's classes.

    `option` names the argument in error messages."""
    from keras_transfer import data
    from keras_transfer.data import text as text_data
    try:
        if _is_text_model(model):
            return text_data.text_file(path, class_names=model.class_names, shuffle=False,
                                       **_text_file_options(args))
        dataset = data.image_folder(path, image_size=model.image_size, batch_size=args.batch_size,
                                    shuffle=shuffle, seed=seed)
    except (data.DataError, text_data.DataError) as error:
        raise CommandError(error if option == "DATA" else f"{option}: {error}") from error
    if model.class_names and dataset.class_names != model.class_names:
        raise CommandError(
            f"{'' if option == 'DATA' else option + ': '}the folder's classes {dataset.class_names} differ from the model's {model.class_names}."
        )
    return dataset


def _export(args):
    if args.format == "tflite" and not args.output.endswith(".tflite"):
        raise CommandError(f"--output {args.output!r}: a TFLite file name must end with .tflite.")
    if args.format == "saved_model" and (args.quantize != "none" or args.max_accuracy_drop is not None):
        raise CommandError("--quantize and --max-accuracy-drop apply to --format tflite.")
    if args.quantize == "int8" and args.representative_data is None and args.max_accuracy_drop is None:
        raise CommandError("--quantize int8 needs --representative-data (training images, across all classes).")
    if args.io_dtype != "float32" and args.quantize != "int8":
        raise CommandError("--io-dtype int8/uint8 needs --quantize int8.")
    if args.max_accuracy_drop is not None and args.eval_data is None:
        raise CommandError("--max-accuracy-drop needs --eval-data (labelled data to measure the drop on).")
    if os.path.lexists(args.output) and not args.overwrite:
        raise CommandError(f"--output {args.output!r} exists; pass --overwrite to replace it.")
    from keras_transfer.deploy import export as export_lib
    model = _load_model(args.model)
    eval_data = args.eval_data and _labelled_data(model, args.eval_data, args, "--eval-data")
    representative = args.representative_data and _labelled_data(
        model, args.representative_data, args, "--representative-data")
    start = time.perf_counter()
    candidates = None
    try:
        if args.max_accuracy_drop is not None:
            choice = export_lib.export_within_budget(
                model, args.output, eval_data, max_accuracy_drop=args.max_accuracy_drop,
                representative_data=representative, num_samples=args.num_samples, overwrite=args.overwrite,
            )
            result = choice.result
            candidates = [dataclasses.asdict(candidate) for candidate in choice.candidates]
            print(choice.explanation())
        else:
            quantization = args.quantize
            if quantization == "int8":
                quantization = export_lib.Quantization.int8(representative, args.num_samples,
                                                             io_dtype=args.io_dtype)
            check_data = eval_data if eval_data is not None else representative
            result = export_lib.export(model, args.output, format=args.format, quantization=quantization,
                                       check_data=check_data if check_data is not None else _random_inputs(model),
                                       overwrite=args.overwrite)
    except ValueError as error:
        raise CommandError(error) from error
    seconds = time.perf_counter() - start
    check = result.check
    summary = {
        "output": result.path, "format": result.format, "quantization": result.quantization,
        "size_bytes": result.size_bytes, "classes": model.class_names,
        "checked_on": "eval-data" if eval_data is not None else (
            "representative-data" if representative is not None else "random inputs"),
        "num_examples": check.num_examples, "top1_agreement": check.top1_agreement,
        "max_abs_difference": check.max_abs_difference, "accuracy": check.accuracy_keras,
        "exported_accuracy": check.accuracy_exported, "seconds": round(seconds, 2),
    }
    if candidates is not None:
        summary["candidates"] = candidates
    agreement = "-" if check.top1_agreement is None else f"{check.top1_agreement:.4f}"
    accuracy = "" if check.accuracy_exported is None else (
        f"; accuracy {check.accuracy_exported:.4f} (Keras {check.accuracy_keras:.4f})")
    print(f"Wrote {result.path} ({result.format}, {result.quantization['mode']}, "
          f"{result.size_bytes / 1e6:.2f} MB) in {seconds:.0f} s. Checked on {check.num_examples} "
          f"{summary['checked_on'].replace('-data', ' examples')}: top-1 agreement {agreement}, max abs difference "
          f"{check.max_abs_difference:.2g}{accuracy}.")
    if args.json:
        print(json.dumps(summary))


def _optimize(args):
    _check_output_dir(args.output, args.overwrite)
    import keras

    from keras_transfer import evaluation
    from keras_transfer import atomic_files as files
    from keras_transfer.deploy.tfmot import optimize
    from keras_transfer.deploy import reports as report_lib
    keras.utils.set_random_seed(args.seed)
    model = _load_model(args.model)
    if _is_text_model(model):
        raise CommandError("optimize takes image models; for a text model use `export --quantize`.")
    method = OPTIMIZE_METHODS[args.method]
    train = _labelled_data(model, args.train_dir, args, "TRAIN_DIR", shuffle=True, seed=args.seed)
    evaluated = _labelled_data(model, args.val_dir or args.train_dir, args,
                               "--val-dir" if args.val_dir else "TRAIN_DIR")
    options = {"epochs": args.epochs, "learning_rate": args.lr}
    if method == "prune":
        options["sparsity"] = args.sparsity
    if method == "cluster":
        options["clusters"] = args.clusters
    options = {name: value for name, value in options.items() if value is not None}
    start = time.perf_counter()
    try:
        optimized = optimize.optimize(model, train, method, **options)
    except ValueError as error:  # the bridge names layers it cannot carry, before training
        raise CommandError(error) from error
    seconds = time.perf_counter() - start
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "model.tflite")
    optimized.to_tflite(path, overwrite=args.overwrite)
    measured = report_lib.measure_export(path, optimized.model, evaluated, name=args.method,
                                         head=optimized.head, num_threads=args.threads)
    original = evaluation.evaluate_model(model, evaluated, batch_size=args.batch_size)
    summary = {
        "method": args.method, "settings": optimized.settings, "classes": model.class_names,
        "evaluated_on": "val-dir" if args.val_dir else "train-dir (no --val-dir given)",
        "num_examples": measured.num_examples,
        "original_accuracy": original.accuracy,
        "accuracy": measured.accuracy,
        "tflite_accuracy": measured.tflite_accuracy,
        "accuracy_drop": original.accuracy - measured.tflite_accuracy,
        "top1_agreement": measured.top1_agreement,
        "size_bytes": measured.size_bytes,
        "compressed_size_bytes": measured.compressed_size_bytes,
        "parameters": measured.parameters,
        "sparsity": measured.sparsity,
        "latency_ms": measured.latency_ms,
        "latency_threads": measured.latency_threads,
        "unique_values": optimized.unique_values,
        "history": optimized.history,
        "seconds": round(seconds, 2),
    }
    files.write_json(summary, os.path.join(args.output, "report.json"))
    print(report_lib.format_table([measured]))
    print(f"\n{args.method}: TFLite accuracy {measured.tflite_accuracy:.4f} vs the original model's "
          f"{original.accuracy:.4f} on {measured.num_examples} {summary['evaluated_on']} images; "
          f"{measured.size_bytes / 1e6:.2f} MB, {measured.latency_ms:.2f} ms/image "
          f"({measured.latency_threads} thread); trained {seconds:.0f} s.")
    print(f"Wrote model.tflite, model.tflite.json, report.json to {args.output}")
    if args.json:
        print(json.dumps({key: value for key, value in summary.items() if key != "history"}))


def _random_inputs(model):
    """Inputs in the model's range, for checking an export when no data was given."""
    import numpy as np

    if _is_text_model(model):
        return model.tokenize(["a short example sentence", "another one"] * 4)
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(8, *model.image_size, 3)).astype("float32")


def _predict_inputs(args):
    inputs = list(args.inputs)
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8") as file:
                inputs += [line.rstrip("\r\n") for line in file if line.strip()]
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"cannot read --file {args.file!r} ({error}).") from error
    if not inputs:
        raise CommandError("nothing to predict: give inputs after MODEL, or --file with one per line.")
    return inputs


def _predict(args):
    inputs = _predict_inputs(args)
    model = _load_model(args.model)
    if _is_text_model(model):
        return _predict_text(model, inputs, args)
    if args.clean:
        raise CommandError("--clean applies to text models; this is an image model.")
    import numpy as np
    import keras

    images = []
    for path in inputs:
        try:
            image = keras.utils.load_img(path, target_size=model.image_size)
        except Exception as error:  # PIL raises several kinds for unreadable files
            raise CommandError(f"cannot read {path!r} as an image ({error}).") from error
        images.append(keras.utils.img_to_array(image))
    indices, probabilities = model.predict_classes(np.stack(images))
    names = model.class_names or [str(i) for i in range(max(indices) + 1)]
    rows = [{"image": path, "class": names[index], "probability": round(float(probability), 4)}
            for path, index, probability in zip(inputs, indices, probabilities)]
    if args.json:
        print(json.dumps(rows))
        return
    width = max(len(path) for path in inputs)
    for row in rows:
        print(f"{row['image']:<{width}}  {row['class']}  ({row['probability']:.3f})")


def _predict_text(model, sentences, args):
    from keras_transfer.data.text import TextCleaner

    texts = TextCleaner(args.clean)(sentences) if args.clean else sentences
    indices, probabilities = model.predict_classes(texts)
    names = model.class_names or [str(i) for i in range(max(indices) + 1)]
    rows = [{"text": sentence, "class": names[index], "probability": round(float(probability), 4)}
            for sentence, index, probability in zip(sentences, indices, probabilities)]
    if args.json:
        print(json.dumps(rows))
        return
    width = max(len(row["class"]) for row in rows)
    for row in rows:
        text = " ".join(row["text"].split())
        text = text if len(text) <= 70 else text[:67] + "..."
        print(f"{row['class']:<{width}}  ({row['probability']:.3f})  {text}")


def _demo(args):
    from keras_transfer.demo import format_demo, run_demo

    result = run_demo(verbose=1)
    print(format_demo(result))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
