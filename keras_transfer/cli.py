"""The `keras-transfer` command line."""

import argparse
import json
import os
import sys
import time

EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """Bad input found before any long work; printed without a traceback."""


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-transfer",
        description="Transfer learning on Keras 3: pretrained backbones, new heads, "
        "two-phase fine-tuning, evaluation.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    backbones = commands.add_parser("backbones", help="list the backbones in the registry")
    backbones.add_argument("--family", help="only this family, e.g. MobileNet")
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
    train.add_argument("--seed", type=int, default=1337)
    train.add_argument("--output", required=True, metavar="OUT_DIR", help="folder for the model, report and plots")
    train.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty OUT_DIR")
    train.add_argument("--json", action="store_true", help="print the report as JSON at the end")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a saved model on a folder of images")
    evaluate.add_argument("model", metavar="MODEL", help="a model.keras written by train")
    evaluate.add_argument("data_dir", metavar="DATA_DIR", help="images, one sub-folder per class")
    evaluate.add_argument("--batch-size", type=int, default=32, metavar="N")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of text")
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", help="classify image files with a saved model")
    predict.add_argument("model", metavar="MODEL", help="a model.keras written by train")
    predict.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    predict.set_defaults(run=_predict)

    demo = commands.add_parser(
        "demo",
        help="transfer vs. from-scratch on scikit-learn's handwritten digits (offline, ~1 min)",
    )
    demo.add_argument("--json", action="store_true", help="end with one line of JSON")
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except CommandError as error:
        print(f"keras-transfer {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _backbones(args):
    from keras_transfer.backbones import list_backbones

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


def _check_output_dir(path, overwrite):
    if os.path.isfile(path):
        raise CommandError(f"--output {path!r} is a file: give a folder.")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise CommandError(
            f"--output {path!r} is not empty; pass --overwrite to write into it, or choose a new folder."
        )


def _bad_input_errors():
    from keras_transfer.backbones import UnknownBackboneError
    from keras_transfer.data import DataError

    return (DataError, UnknownBackboneError, ValueError, FileNotFoundError)


def _train(args):
    _check_output_dir(args.output, args.overwrite)
    import keras

    from keras_transfer import data, evaluation, files
    from keras_transfer.backbones import default_image_size
    from keras_transfer.image_classifier import ImageClassifier

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
    history = model.fine_tune(
        train, validation,
        head_epochs=args.head_epochs, finetune_epochs=args.finetune_epochs,
        unfreeze=_parse_unfreeze(args.unfreeze), optimizer=args.optimizer,
        finetune_optimizer=args.finetune_optimizer, head_learning_rate=args.head_lr,
        finetune_learning_rate=args.finetune_lr, early_stopping=args.early_stopping,
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
    trainable, total = model.parameter_counts()
    summary = {
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

    return keras.saving.load_model(path)


def _evaluate(args):
    from keras_transfer import data, evaluation

    model = _load_model(args.model)
    try:
        dataset = data.image_folder(args.data_dir, image_size=model.image_size,
                                    batch_size=args.batch_size, shuffle=False)
    except data.DataError as error:
        raise CommandError(error) from error
    if model.class_names and dataset.class_names != model.class_names:
        raise CommandError(
            f"the folder's classes {dataset.class_names} differ from the model's {model.class_names}."
        )
    report = evaluation.evaluate_model(model, dataset, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({**report.to_dict(), "skipped_files": dataset.skipped_files}))
    else:
        print(report.format_text())


def _predict(args):
    import numpy as np
    import keras

    model = _load_model(args.model)
    images = []
    for path in args.images:
        try:
            image = keras.utils.load_img(path, target_size=model.image_size)
        except Exception as error:  # PIL raises several kinds for unreadable files
            raise CommandError(f"cannot read {path!r} as an image ({error}).") from error
        images.append(keras.utils.img_to_array(image))
    indices, probabilities = model.predict_classes(np.stack(images))
    names = model.class_names or [str(i) for i in range(max(indices) + 1)]
    rows = [{"image": path, "class": names[index], "probability": round(float(probability), 4)}
            for path, index, probability in zip(args.images, indices, probabilities)]
    if args.json:
        print(json.dumps(rows))
        return
    width = max(len(path) for path in args.images)
    for row in rows:
        print(f"{row['image']:<{width}}  {row['class']}  ({row['probability']:.3f})")


def _demo(args):
    from keras_transfer.demo import format_demo, run_demo

    result = run_demo(verbose=1)
    print(format_demo(result))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
