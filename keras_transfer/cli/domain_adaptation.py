"""`--target-dir DIR` / `--target-file FILE` with `--adapt METHOD` of `train` and `train-text`: domain adaptation.

The commands add the options with `add_options` and hand a run with a target
to `run_images` or `run_texts`. The training data is the labelled source;
the target is read with the same options (class sub-folders, or the same
columns) and its labels, when it has them, only score the model
(`keras_transfer.adaptation.adapt`). The summary and report.json give the
target accuracy before adaptation (source only) and after.
"""

import json
import os
import time

from keras_transfer.cli import common
from keras_transfer.cli.common import CommandError
from keras_transfer.cli.library_source import constant

METHODS = constant("keras_transfer.adaptation.methods", "METHODS")
TEXT_METHODS = constant("keras_transfer.adaptation.methods", "TEXT_METHODS")
DEFAULT_WEIGHTS = constant("keras_transfer.adaptation.methods", "DEFAULT_WEIGHTS")
# Options of the commands an adaptation run does not use (their `dest`s), refused with a target.
NOT_USED = ("resume", "lr_find", "progressive", "shots", "method")
METHOD_HELP = {
    "dann": "dann (a domain classifier trained through gradient reversal)",
    "coral": "coral (the two domains' feature covariances pulled together)",
    "mmd": "mmd (the maximum mean discrepancy between their features pulled down)",
    "adabn": "adabn (BatchNormalization statistics re-estimated on the target after training)",
}


def add_options(parser, methods, target_option):
    """`--target-dir` or `--target-file` (`target_option`), `--adapt` (one of `methods`) and `--adapt-weight`."""
    if target_option == "--target-dir":
        target_help = (
            "domain adaptation: images of the target domain, with or without class sub-folders (the same "
            "classes); they train unlabelled, and their labels, if any, only score the model"
        )
    else:
        target_help = (
            "domain adaptation: texts of the target domain (columns as --text-column and --label-column, or "
            "--target-text-column and --target-label-column); they train unlabelled, and their labels, if the "
            "file has them, only score the model"
        )
    parser.add_argument(target_option, metavar=target_option.split("-")[-1].upper(), help=target_help)
    if target_option == "--target-file":
        parser.add_argument(
            "--target-text-column",
            metavar="C",
            help="the target file's text column, a header name or a 0-based index (default: --text-column's)",
        )
        parser.add_argument(
            "--target-label-column",
            metavar="C",
            help="the target file's label column, used only to score (default: --label-column's)",
        )
    parser.add_argument(
        "--adapt",
        choices=methods,
        help=f"with {target_option}: " + ", ".join(METHOD_HELP[method] for method in methods) + " (default: dann)",
    )
    weights = ", ".join(f"{DEFAULT_WEIGHTS[method]:g} {method}" for method in methods if method in DEFAULT_WEIGHTS)
    parser.add_argument(
        "--adapt-weight",
        type=common.positive_float,
        metavar="W",
        help=f"weight of the adaptation loss (dann: the gradient-reversal weight's maximum) (default: {weights})",
    )


def wants_adaptation(args):
    """True for a run with a target; a CommandError for --adapt without one or options it does not use."""
    target = getattr(args, "target_dir", None) or getattr(args, "target_file", None)
    if target is None:
        if args.adapt is not None or args.adapt_weight is not None:
            flag = "--target-dir DIR" if hasattr(args, "target_dir") else "--target-file FILE"
            raise CommandError(f"--adapt and --adapt-weight adapt to a target domain: give {flag}.")
        return False
    given = [name for name in NOT_USED if getattr(args, name, None) not in (None, False)]
    if given:
        flags = ", ".join(common.option_names(args.command_parser).get(name, name) for name in given)
        raise CommandError(f"Domain adaptation does not use {flags}: drop {'it' if len(given) == 1 else 'them'}.")
    if args.adapt_weight is not None and (args.adapt or "dann") == "adabn":
        raise CommandError("--adapt adabn has no loss to weigh: drop --adapt-weight.")
    return True


def _image_target(args, image_size, class_names):
    """The target images: a labelled dataset for class sub-folders, else an array of the folder's images."""
    import numpy as np

    from keras_transfer import data

    folder = args.target_dir
    if not os.path.isdir(folder):
        raise CommandError(f"--target-dir {folder}: no such folder.")
    entries = sorted(os.listdir(folder))
    if any(os.path.isdir(os.path.join(folder, entry)) for entry in entries):
        return data.image_folder(
            folder, image_size=image_size, batch_size=args.batch_size, class_names=class_names, seed=args.seed
        )
    images, skipped = data.read_image_files([os.path.join(folder, entry) for entry in entries], image_size)
    if not len(images):
        raise CommandError(f"--target-dir {folder} holds no readable images ({len(skipped)} files skipped).")
    return np.asarray(images)


def run_images(args, recipe_of, augmentation_of):
    """`train DIR --target-dir DIR`: the image recipe with adaptation. `recipe_of(args)` reads the recipe options."""
    recipe = recipe_of(args)
    method = args.adapt or "dann"
    folder = common.check_output_dir(args.output, args.overwrite, args=args)
    import keras

    from keras_transfer.finetune.two_phase import check_recipe_fits
    from keras_transfer.models import ImageClassifier
    from keras_transfer.models.image_backbones import default_image_size

    keras.utils.set_random_seed(args.seed)
    try:
        image_size = args.image_size or default_image_size(args.backbone)
        train, validation = common.image_training_data(args, image_size, augmentation_of(args, recipe))
        target = _image_target(args, image_size, train.class_names)
        model = ImageClassifier(
            args.backbone, class_names=train.class_names, weights=args.weights, image_size=image_size
        )
        check_recipe_fits(model, recipe)
    except common.bad_input_errors() as error:
        raise CommandError(error) from error
    _adapt_and_write(args, folder, model, train, validation, target, recipe, method, "image")


def run_texts(args, recipe_of, describe):
    """`train-text FILE --target-file FILE`: the text recipe with adaptation."""
    method = args.adapt or "dann"
    if method not in TEXT_METHODS:
        raise CommandError(f"--adapt {method} is for images: text backbones take {', '.join(TEXT_METHODS)}.")
    recipe = recipe_of(args)
    folder = common.check_output_dir(args.output, args.overwrite, args=args)
    import keras

    from keras_transfer import data
    from keras_transfer.errors import DataError

    keras.utils.set_random_seed(args.seed)
    options = common.text_file_options(args)
    target_options = dict(options)
    for option, given in (("text_column", args.target_text_column), ("label_column", args.target_label_column)):
        if given is not None:
            target_options[option] = common.column(given)
    try:
        train, validation = common.text_training_data(args, **options)
        try:
            target = data.text_file(
                args.target_file,
                max_examples=args.max_examples,
                seed=args.seed,
                class_names=train.class_names,
                **target_options,
            )
        except DataError:
            # No label column (or labels the source lacks): the texts alone, nothing to score.
            target = data.read_texts(
                args.target_file,
                text_column=target_options["text_column"],
                header=target_options["header"],
                delimiter=target_options["delimiter"],
            )
            print("The target file has no usable label column: its texts train unlabelled, unscored.")
        model = common.text_classifier(args, train.class_names)
    except common.bad_input_errors() as error:
        raise CommandError(error) from error
    recipe = recipe_of(args, train.num_examples)
    print(
        f"Training {model.backbone_name} ({describe(recipe)}) on {train.num_examples} texts, "
        f"adapting to {args.target_file}."
    )
    _adapt_and_write(args, folder, model, train, validation, target, recipe, method, "text")


def _adapt_and_write(args, folder, model, train, validation, target, recipe, method, noun):
    """Runs `adapt`, writes OUT_DIR (model.keras, report.json, plots) and prints the summary."""
    from keras_transfer import atomic_files as files
    from keras_transfer import evaluation
    from keras_transfer.adaptation import adapt
    from keras_transfer.finetune.progress import counted

    start = time.perf_counter()
    folder.begin()
    try:
        result = adapt(
            model,
            train,
            target,
            validation,
            method=method,
            recipe=recipe,
            weight=args.adapt_weight,
            batch_size=args.batch_size,
        )
    except common.bad_input_errors() as error:
        raise CommandError(common.cli_words(error, args.command_parser)) from error
    seconds = time.perf_counter() - start
    report = evaluation.evaluate_model(model, validation) if validation is not None else None
    files.save_model(model, folder.file("model.keras"))
    if result.history.phases:
        evaluation.plot_training_curves(result.history, folder.file("training_curves.png"))
    if report is not None:
        evaluation.plot_confusion_matrix(
            report.confusion_matrix, report.class_names, folder.file("confusion_matrix.png")
        )
    trainable, total = model.parameter_counts()
    target_examples = getattr(target, "num_examples", None)
    summary = {
        "backbone": model.backbone_name,
        "weights": args.weights,
        "classes": train.class_names,
        "train_examples": train.num_examples,
        "val_examples": validation.num_examples if validation is not None else 0,
        "val_accuracy": report.accuracy if report is not None else None,
        "adaptation": {
            "method": method,
            "weight": args.adapt_weight if args.adapt_weight is not None else DEFAULT_WEIGHTS.get(method),
            "target": args.target_dir if noun == "image" else args.target_file,
            "target_examples": target_examples if target_examples is not None else len(target),
            "target_labelled": result.target_accuracy is not None,
            **result.to_dict(),
        },
        "recipe": recipe.to_dict(),
        "phases": {
            name: {
                "epochs": len(phase.history.get("loss", [])),
                "seconds": round(result.history.seconds.get(name, 0), 2),
            }
            for name, phase in result.history.phases
        },
        "seconds": round(seconds, 2),
        "trainable_params": trainable,
        "total_params": total,
        "history": result.history.merged(),
        "evaluation": report.to_dict() if report is not None else None,
        **common.run_record(args, train, validation),
    }
    files.write_json(summary, folder.file("report.json"))
    folder.finish()

    print()
    if report is not None:
        print(report.format_text())
    adapted = summary["adaptation"]
    scored = f"validation accuracy {report.accuracy:.3f}, " if report is not None else ""
    print(
        f"\n{model.backbone_name} on {counted(len(train.class_names), 'class', 'classes')}, "
        f"{counted(train.num_examples, f'source {noun}')} and {counted(adapted['target_examples'], f'target {noun}')} "
        f"({method}): {scored}{seconds:.0f} s."
    )
    print(result.summary_line() or "The target has no labels: no target accuracy to report.")
    print(f"Wrote {', '.join(sorted(folder.files))} to {args.output}")
    if args.json:
        print(json.dumps({key: summary[key] for key in summary if key not in ("history", "evaluation")}))
