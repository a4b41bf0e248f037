"""`--shots K --method ...` of `train` and `train-text`: few-shot training on K examples per class.

The commands add the options with `add_options` and hand a run with
`--shots` to `run_images` or `run_texts`. K examples of each class are drawn
(seeded by --seed) from the training data (`fewshot.shots.dataset_shots`);
the validation data stays whole. Methods: `prototypes` (class means in a
cosine head, no training) for both, `finetune` (fine-tuning that starts from
the prototypes) for images, `setfit` for text.
"""

import json
import time

from keras_transfer.cli import common
from keras_transfer.cli.common import CommandError
from keras_transfer.fewshot.recipes import IMAGE_METHODS, PROTOTYPE_FINETUNE_RECIPE, TEXT_METHODS

METHOD_HELP = {
    "prototypes": "prototypes (class means of the frozen backbone's features in a cosine head: no training)",
    "finetune": f"finetune (fine-tuning that starts from the prototypes: {PROTOTYPE_FINETUNE_RECIPE.finetune_epochs} "
    "epochs of the top of the backbone and the head; --finetune-epochs, --finetune-lr, --unfreeze change it)",
    "setfit": "setfit (contrastive fine-tuning of the sentence-embedding backbone on pairs of the examples, "
    "then a head; --epochs, --lr and --head-epochs change it)",
}
# How the summary names each method.
METHOD_WORDS = {
    "prototypes": "prototypes (no training)",
    "finetune": "fine-tuned from prototypes",
    "setfit": "SetFit",
}
# Domain adaptation's options (cli/domain_adaptation.py): few-shot runs do not adapt.
ADAPTATION = ("target_dir", "target_file", "target_text_column", "target_label_column", "adapt", "adapt_weight")
# Options of the commands that each method does not use (their `dest`s), refused with --shots.
NOT_USED = {
    ("train", "prototypes"): (
        "head_epochs", "finetune_epochs", "unfreeze", "optimizer", "finetune_optimizer", "head_lr", "finetune_lr",
        "early_stopping", "finetune_patience", "cache_features", "schedule", "layer_decay", "progressive", "lr_find",
        "augment", "resume", *ADAPTATION,
    ),
    ("train", "finetune"): (
        "head_epochs", "optimizer", "head_lr", "lr_find", "progressive", "augment", "resume", *ADAPTATION,
    ),
    ("train-text", "prototypes"): (
        "recipe", "lora_rank", "epochs", "head_epochs", "lr", "schedule", "early_stopping", "resume", *ADAPTATION,
    ),
    ("train-text", "setfit"): (
        "recipe", "lora_rank", "schedule", "early_stopping", "resume", *ADAPTATION,
    ),
}  # fmt: skip


def add_options(parser, methods):
    """`--shots K` and `--method` (one of `methods`, default prototypes)."""
    parser.add_argument(
        "--shots",
        type=common.positive_int,
        metavar="K",
        help="few-shot: train on K examples of each class, drawn from the training data (seeded by --seed); "
        "the validation data stays whole",
    )
    parser.add_argument(
        "--method",
        choices=methods,
        help="with --shots: " + ", or ".join(METHOD_HELP[method] for method in methods) + f" (default: {methods[0]})",
    )


def method_of(args, methods):
    """The --method of a --shots run (default: the first), or a CommandError for options it does not use."""
    if args.shots is None:
        if args.method is not None:
            raise CommandError(f"--method {args.method} is a few-shot method: give --shots K (examples per class).")
        return None
    method = args.method or methods[0]
    command = args.command_parser.prog.split()[-1]
    given = [
        name
        for name in NOT_USED[(command, method)]
        if getattr(args, name, None) not in (None, False) and not (name == "augment" and args.augment == "none")
    ]
    if given:
        flags = ", ".join(common.option_names(args.command_parser).get(name, name) for name in given)
        raise CommandError(
            f"--shots with --method {method} does not use {flags}: drop {'it' if len(given) == 1 else 'them'}"
            + (", or choose another --method." if len(methods) > 1 else ".")
        )
    return method


def draw(train, args, noun):
    """The K-per-class dataset of `train`, announced; DataErrors (a class with fewer than K) as CommandErrors."""
    from keras_transfer.fewshot.shots import dataset_shots
    from keras_transfer.finetune.progress import counted

    try:
        shots = dataset_shots(train, args.shots, seed=args.seed, batch_size=args.batch_size)
    except common.bad_input_errors() as error:
        raise CommandError(common.cli_words(error, args.command_parser)) from error
    print(
        f"Few-shot: {counted(args.shots, noun)} of each of {counted(len(train.class_names), 'class', 'classes')}, "
        f"drawn with seed {args.seed} from {counted(train.num_examples, noun)}."
    )
    return shots


def run_images(args, recipe_of):
    """`train DIR --shots K`: prototypes, or fine-tuning from them. `recipe_of(args, base)` reads the recipe options."""
    method = method_of(args, IMAGE_METHODS)
    recipe = recipe_of(args, PROTOTYPE_FINETUNE_RECIPE) if method == "finetune" else None
    folder = common.check_output_dir(args.output, args.overwrite, args=args)
    import keras

    from keras_transfer.fewshot.prototypes import prototype_classifier
    from keras_transfer.finetune.two_phase import check_recipe_fits
    from keras_transfer.models.image_backbones import default_image_size

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    try:
        image_size = args.image_size or default_image_size(args.backbone)
        train, validation = common.image_training_data(args, image_size)
    except common.bad_input_errors() as error:
        raise CommandError(error) from error
    shots = draw(train, args, "image")
    try:
        model = prototype_classifier(
            shots, validation, backbone=args.backbone, weights=args.weights, image_size=image_size
        )
        if recipe is not None:
            check_recipe_fits(model, recipe)
    except common.bad_input_errors() as error:
        raise CommandError(error) from error
    history = None
    folder.begin()
    if recipe is not None:
        history = model.fine_tune(shots, validation, recipe)
    _finish(args, folder, model, train, shots, validation, method, history, recipe, start, "image")


def run_texts(args):
    """`train-text FILE --shots K`: prototypes, or SetFit."""
    method = method_of(args, TEXT_METHODS)
    folder = common.check_output_dir(args.output, args.overwrite, args=args)
    import keras

    from keras_transfer.errors import DataError, ModelFileError, UnknownBackboneError, WeightsUnavailableError
    from keras_transfer.fewshot.prototypes import prototype_classifier
    from keras_transfer.fewshot.setfit import setfit_classifier
    from keras_transfer.fewshot.shots import examples_of

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    weights = common.text_backbone_weights(args)
    try:
        train, validation = common.text_training_data(args)
    except common.bad_input_errors() as error:
        raise CommandError(error) from error
    shots = draw(train, args, "text")
    history = None
    if method == "prototypes":
        try:
            model = prototype_classifier(
                shots,
                validation,
                backbone=args.backbone,
                task="text",
                weights=weights,
                sequence_length=args.sequence_length,
                pooling=args.pooling,
                bucket_by_length=args.bucket_by_length,
            )
        except common.bad_input_errors() as error:
            raise CommandError(error) from error
        folder.begin()
    else:
        texts, labels = examples_of(shots)
        options = dict(contrastive_epochs=args.epochs, head_epochs=args.head_epochs, learning_rate=args.lr)
        folder.begin()
        try:
            # SetFit checks its texts, labels and options before it builds a model.
            model, history = setfit_classifier(
                args.backbone,
                texts,
                labels,
                class_names=train.class_names,
                pooling="mean" if args.pooling == "auto" else args.pooling,
                sequence_length=args.sequence_length,
                seed=args.seed,
                **{name: value for name, value in options.items() if value is not None},
            )
        except (DataError, UnknownBackboneError, ModelFileError, WeightsUnavailableError, FileNotFoundError) as error:
            raise CommandError(error) from error
    _finish(args, folder, model, train, shots, validation, method, history, None, start, "text")


def _finish(args, folder, model, train, shots, validation, method, history, recipe, start, noun):
    """Evaluates, writes OUT_DIR (model.keras, report.json, plots) and prints the summary."""
    from keras_transfer import atomic_files as files
    from keras_transfer import evaluation
    from keras_transfer.finetune.progress import counted

    evaluated = validation if validation is not None else shots
    report = evaluation.evaluate_model(model, evaluated)
    seconds = time.perf_counter() - start
    files.save_model(model, folder.file("model.keras"))
    evaluation.plot_confusion_matrix(report.confusion_matrix, report.class_names, folder.file("confusion_matrix.png"))
    if history is not None and hasattr(history, "phases"):
        evaluation.plot_training_curves(history, folder.file("training_curves.png"))
    trainable, total = model.parameter_counts()
    summary = {
        "method": method,
        "shots": args.shots,
        "backbone": model.backbone_name,
        "weights": args.weights,
        "classes": train.class_names,
        "train_examples": shots.num_examples,
        "train_pool_examples": train.num_examples,
        "val_examples": validation.num_examples if validation is not None else 0,
        "val_accuracy": report.accuracy if validation is not None else None,
        "train_accuracy": report.accuracy if validation is None else None,
        "recipe": recipe.to_dict() if recipe is not None else None,
        "best_epoch": getattr(history, "best", None),
        "seconds": round(seconds, 2),
        "trainable_params": trainable,
        "total_params": total,
        "evaluation": report.to_dict(),
        **common.run_record(args, shots, validation),
    }
    if noun == "text":
        summary["sequence_length"] = model.sequence_length
        summary["pooling"] = model.pooling
    files.write_json(summary, folder.file("report.json"))
    folder.finish()

    print()
    print(report.format_text())
    scored = "validation"
    if validation is None:
        scored = f"training (the {shots.num_examples} drawn; no validation data)"
    print(
        f"\n{model.backbone_name}, {METHOD_WORDS[method]}, on {counted(len(train.class_names), 'class', 'classes')} "
        f"from {args.shots} {noun}{'s' if args.shots != 1 else ''} each ({shots.num_examples} of "
        f"{train.num_examples:,}, seed {args.seed}): {scored} accuracy {report.accuracy:.3f} after {seconds:.0f} s."
    )
    if summary["best_epoch"]:
        print(common.best_epoch_line(summary["best_epoch"]))
    print(f"Wrote {', '.join(sorted(folder.files))} to {args.output}")
    if args.json:
        print(json.dumps({key: value for key, value in summary.items() if key != "evaluation"}))
