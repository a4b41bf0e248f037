"""`keras-transfer train`: an image classifier on a folder of images, with `IMAGE_RECIPE`.

The options change `keras_transfer.finetune.recipes.IMAGE_RECIPE`: each one
left out (None) keeps the recipe's value, which `--help` shows.
"""

import argparse
import json
import os
import sys
import time

from keras_transfer.cli import common, domain_adaptation, few_shot, multi_worker
from keras_transfer.cli.common import CommandError
from keras_transfer.cli.library_source import constant
from keras_transfer.finetune.recipes import IMAGE_RECIPE, OPTIMIZERS

AUGMENTATION_PRESETS = constant("keras_transfer.data.image_augmentation", "AUGMENTATION_PRESETS")

# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer train photos/ --val-split 0.2 --backbone mobilenet_v2 --output runs/photos",
    "keras-transfer train train/ --val-dir validation/ --backbone efficientnet_v2_b0 --output runs/b0",
    "keras-transfer train photos/ --val-split 0.2 --backbone mobilenet_v2 --no-cache-features --augment strong "
    "--head-epochs 5 --output runs/classic",
    "keras-transfer train photos/ --val-split 0.2 --backbone mobilenet_v2 --output runs/photos --resume",
    "keras-transfer train --config runs/photos/report.json --seed 2 --output runs/photos_seed2",
    "keras-transfer train train/ --val-dir validation/ --backbone mobilenet_v2 --shots 5 --method finetune "
    "--output runs/five_shot",
    "keras-transfer train source/ --val-split 0.2 --backbone mobilenet_v2 --target-dir target/ --adapt adabn "
    "--output runs/adapted",
    "keras-transfer train /shared/photos --val-split 0.2 --backbone mobilenet_v2 --output /shared/runs/photos "
    "--worker-hosts 10.0.0.1:23456,10.0.0.2:23456 --task-index 0",
)


# How the summary names `FineTuneHistory.phases`.
PHASE_NAMES = {"head": "head phase", "finetune": "fine-tuning"}


def add_parser(subparsers):
    recipe = IMAGE_RECIPE
    parser = subparsers.add_parser(
        "train",
        help="train an image classifier on a folder of images (one sub-folder per class)",
        description="Trains the head on a frozen pretrained backbone, then fine-tunes the "
        "top of the backbone. Writes OUT_DIR/model.keras, report.json, "
        "training_curves.png and confusion_matrix.png.",
    )
    parser.add_argument("data_dir", metavar="DATA_DIR", help="training images, one sub-folder per class")
    validation = parser.add_mutually_exclusive_group()
    validation.add_argument("--val-dir", metavar="DIR", help="validation images, same sub-folders")
    validation.add_argument("--val-split", type=float, metavar="F", help="hold out this fraction of DATA_DIR")
    parser.add_argument(
        "--backbone",
        required=True,
        metavar="NAME",
        help="registry name (see `keras-transfer backbones`), keras-hub preset or folder",
    )
    parser.add_argument(
        "--weights", default="imagenet", metavar="imagenet|none|PATH", help="backbone weights (default: imagenet)"
    )
    parser.add_argument(
        "--image-size", type=common.positive_int, metavar="N", help="square input size (default: the backbone's)"
    )
    parser.add_argument(
        "--head-epochs",
        type=int,
        metavar="N",
        help=f"epochs with the backbone frozen (default: {recipe.head_epochs}, cheap on cached features; "
        "give fewer with --no-cache-features)",
    )
    parser.add_argument(
        "--finetune-epochs", type=int, metavar="N", help=f"epochs fine-tuning (default: {recipe.finetune_epochs})"
    )
    parser.add_argument(
        "--unfreeze",
        metavar="N|F|LAYER|all",
        help="backbone part to fine-tune: layers from the top, a fraction, "
        f"a layer name and all above it, or all (default: {recipe.unfreeze})",
    )
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help=f"head-phase optimizer (default: {recipe.optimizer})")
    parser.add_argument(
        "--finetune-optimizer", choices=OPTIMIZERS, help=f"fine-tuning optimizer (default: {recipe.finetune_optimizer})"
    )
    parser.add_argument("--head-lr", type=float, metavar="LR", help=f"default: {recipe.head_learning_rate:g}")
    parser.add_argument("--finetune-lr", type=float, metavar="LR", help=f"default: {recipe.finetune_learning_rate:g}")
    common.add_batch_size_option(parser)
    parser.add_argument(
        "--augment",
        metavar="PRESET",
        choices=AUGMENTATION_PRESETS,
        help=f"{', '.join(AUGMENTATION_PRESETS[:-1])} or {AUGMENTATION_PRESETS[-1]} (default: none with "
        "--cache-features, which trains on one pass over the images; standard with --no-cache-features)",
    )
    parser.add_argument(
        "--early-stopping", type=int, metavar="PATIENCE", help="stop a phase after PATIENCE epochs without improvement"
    )
    parser.add_argument(
        "--finetune-patience",
        type=common.non_negative_int,
        metavar="N",
        help="with validation data, stop fine-tuning after N epochs in a row that beat no earlier epoch; "
        f"0 runs every fine-tuning epoch (default: {recipe.finetune_patience or 0})",
    )
    parser.add_argument(
        "--cache-features",
        action=argparse.BooleanOptionalAction,
        help="run the frozen layers once: the head trains on the backbone's cached features and fine-tuning "
        "on the cached output of the layers below the unfrozen top; --no-cache-features runs every image "
        f"through the whole network every epoch (default: {'on' if recipe.cache_features else 'off'})",
    )
    common.add_schedule_option(parser, recipe.schedule)
    parser.add_argument(
        "--layer-decay",
        type=common.positive_float,
        metavar="F",
        help="fine-tune each backbone block at F times the rate of the block above it",
    )
    parser.add_argument(
        "--progressive",
        type=common.positive_int,
        metavar="N",
        help="unfreeze the backbone N blocks per fine-tuning epoch from the top, instead of --unfreeze",
    )
    parser.add_argument(
        "--lr-find",
        action="store_true",
        help="run an LR range test on the head first, use its suggestion as --head-lr and write lr_finder.png",
    )
    few_shot.add_options(parser, few_shot.IMAGE_METHODS)
    domain_adaptation.add_options(parser, domain_adaptation.METHODS, "--target-dir")
    common.add_run_options(parser, "training")
    multi_worker.add_options(parser)
    parser.set_defaults(run=run)
    return parser


def parse_unfreeze(text):
    """`--unfreeze`: `all`, a count of layers, a fraction, or a layer name."""
    if text is None or text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # a layer name


def image_recipe(args, base=IMAGE_RECIPE):
    """`base` (`IMAGE_RECIPE`) with the options given; a CommandError for values it refuses."""
    unfreeze = parse_unfreeze(args.unfreeze)
    if args.progressive:
        from keras_transfer.finetune.progressive import ProgressiveUnfreezing

        unfreeze = ProgressiveUnfreezing(blocks_per_epoch=args.progressive)
    recipe = common.recipe(
        base.replace,
        head_epochs=args.head_epochs,
        finetune_epochs=args.finetune_epochs,
        unfreeze=unfreeze,
        optimizer=args.optimizer,
        finetune_optimizer=args.finetune_optimizer,
        head_learning_rate=args.head_lr,
        finetune_learning_rate=args.finetune_lr,
        early_stopping=args.early_stopping,
        cache_features=args.cache_features,
        layer_decay=args.layer_decay,
        finetune_patience=args.finetune_patience,
    )
    return common.with_schedule(recipe, args)


def augmentation(args, recipe):
    """The --augment preset, or None: the recipe's default when --augment is not given."""
    preset = args.augment or recipe.default_augmentation
    return None if preset in (None, "none") else preset


def run(args):
    cluster = multi_worker.cluster(args)
    if args.shots is not None or args.method is not None:
        return few_shot.run_images(args, image_recipe)
    if domain_adaptation.wants_adaptation(args):
        return domain_adaptation.run_images(args, image_recipe, augmentation)
    recipe = image_recipe(args)
    folder, strategy = multi_worker.run_folder_and_strategy(args, cluster)
    import keras

    from keras_transfer.finetune.two_phase import check_recipe_fits
    from keras_transfer.models import ImageClassifier
    from keras_transfer.models.image_backbones import default_image_size

    keras.utils.set_random_seed(args.seed)
    try:
        image_size = args.image_size or default_image_size(args.backbone)
        train, validation = common.image_training_data(args, image_size, augmentation(args, recipe))
        with multi_worker.scope(strategy):
            model = ImageClassifier(
                args.backbone,
                class_names=train.class_names,
                weights=args.weights,
                image_size=image_size,
            )
        model.check_data(train, validation)
        check_recipe_fits(model, recipe)
    except common.bad_input_errors() as error:
        raise CommandError(error) from error

    if cluster is not None and not cluster.is_chief:
        return multi_worker.train_as_worker(cluster, folder, model, train, validation, recipe)
    summary, report, seconds = train_in_folder(
        folder, recipe, lambda: _train_and_write(args, folder, model, train, validation, recipe)
    )

    print()
    print(report.format_text())
    scored = "validation" if validation is not None else "training (no validation data given)"
    from keras_transfer.finetune.progress import counted

    phases = ", ".join(
        f"{PHASE_NAMES[name]} {counted(phase['epochs'], 'epoch')}" for name, phase in summary["phases"].items()
    )
    print(
        f"\n{model.backbone_name} on {len(train.class_names)} classes, "
        f"{counted(train.num_examples, 'training image')}: "
        f"{scored} accuracy {report.accuracy:.3f} after {seconds:.0f} s{multi_worker.on_workers(summary)} "
        f"({phases})."
    )
    if summary["finetune_stopped"]:
        print(summary["finetune_stopped"][0].upper() + summary["finetune_stopped"][1:] + ".")
    if summary["best_epoch"]:
        print(common.best_epoch_line(summary["best_epoch"]))
    if summary["skipped_files"]:
        print(f"Skipped {counted(len(summary['skipped_files']), 'unreadable file')} (listed in report.json).")
    print(f"Wrote {', '.join(sorted(folder.files))} to {args.output}")
    if args.json:
        print(json.dumps({key: summary[key] for key in summary if key not in ("history", "evaluation")}))


def _train_and_write(args, folder, model, train, validation, recipe):
    """Trains (resuming from `folder`'s backup) and writes every output into OUT_DIR.partial."""
    from keras_transfer import atomic_files as files
    from keras_transfer import evaluation
    from keras_transfer.distribute import worker_count

    start = time.perf_counter()
    if args.lr_find and "head_learning_rate" in folder.state:  # found before the interruption
        recipe = recipe.replace(head_learning_rate=folder.state["head_learning_rate"])
    elif args.lr_find:
        from keras_transfer.finetune.lr_finder import find_head_learning_rate

        recipe, finder = find_head_learning_rate(model, train, recipe)
        print(f"LR finder suggests a head learning rate of {recipe.head_learning_rate:.2e}.")
        finder.plot(folder.file("lr_finder.png"))
        folder.state["head_learning_rate"] = recipe.head_learning_rate
        folder.save_state()
    history = model.fine_tune(
        train, validation, recipe=recipe, backup_dir=folder.backup_dir, checkpoint_dir=folder.checkpoint_dir
    )
    seconds = time.perf_counter() - start

    evaluated = validation if validation is not None else train
    # From the cached features where they hold: the validation images need not run through the model again.
    predictions = history.validation_outputs if validation is not None else None
    report = evaluation.evaluate_model(model, evaluated, predictions=predictions)
    files.save_model(model, folder.file("model.keras"))
    evaluation.plot_training_curves(history, folder.file("training_curves.png"))
    evaluation.plot_confusion_matrix(report.confusion_matrix, report.class_names, folder.file("confusion_matrix.png"))
    trainable, total = model.parameter_counts()
    summary = {
        "head_learning_rate": recipe.head_learning_rate,
        "backbone": model.backbone_name,
        "weights": args.weights,
        "image_size": list(model.image_size),
        "classes": train.class_names,
        "train_examples": train.num_examples,
        "val_examples": validation.num_examples if validation is not None else 0,
        "val_accuracy": report.accuracy if validation is not None else None,
        "train_accuracy": report.accuracy if validation is None else None,
        "train_accuracy_last_epoch": _last(history.merged().get("accuracy")),
        "skipped_files": train.skipped_files + (validation.skipped_files if validation is not None else []),
        "diverged": history.diverged,
        "best_epoch": history.best,
        "finetune_stopped": history.finetune_stopped,
        "recipe": recipe.to_dict(),
        "augment": augmentation(args, recipe),
        "phases": {
            name: {"epochs": len(phase.history.get("loss", [])), "seconds": round(history.seconds[name], 2)}
            for name, phase in history.phases
        },
        "seconds": round(seconds, 2),
        "workers": worker_count(model.distribute_strategy),
        "seconds_by_part": {name: round(value, 2) for name, value in history.seconds.items()},
        "trainable_params": trainable,
        "total_params": total,
        "history": history.merged(),
        "evaluation": report.to_dict(),
        **common.run_record(args, train, validation),
    }
    files.write_json(summary, folder.file("report.json"))
    return summary, report, seconds


def _last(values):
    return values[-1] if values else None


def train_in_folder(folder, recipe, train_and_write):
    """Runs `train_and_write()` in OUT_DIR.partial and moves it into place; after Ctrl-C, says how to go on."""
    start_training(folder, recipe)
    try:
        result = train_and_write()
    except KeyboardInterrupt:
        print(flush=True)  # end the progress bar's line
        print(interrupted_message(folder, recipe), file=sys.stderr)
        raise
    folder.finish()
    return result


def start_training(folder, recipe):
    """Creates (or reopens, with --resume) OUT_DIR.partial and says so."""
    from keras_transfer.finetune.two_phase import backup_progress

    folder.begin()
    if folder.discarded:
        print(f"Discarded the interrupted run in {folder.partial} (--overwrite).")
    if folder.resume:
        done, _ = backup_progress(folder.backup_dir)
        total = recipe.head_epochs + recipe.finetune_epochs
        print(f"Resuming the interrupted run in {folder.partial}: {done} of {total} epochs had finished.")


def interrupted_message(folder, recipe):
    """After Ctrl-C: how far training got, what is kept, and how to go on."""
    from keras_transfer.finetune.two_phase import backup_progress

    done, _ = backup_progress(folder.backup_dir)
    total = recipe.head_epochs + recipe.finetune_epochs
    when = f"after epoch {done} of {total}" if done else f"before the first of {total} epochs finished"
    best = [
        os.path.join(folder.checkpoint_dir, name)
        for name in ("best_finetune.keras", "best_head.keras")
        if os.path.isfile(os.path.join(folder.checkpoint_dir, name))
    ]
    kept = f" (the best model so far: {best[0]})" if best else ""
    return (
        f"Interrupted {when}; what finished is kept in {folder.partial}{kept}. "
        "Run the same command with --resume to go on, or with --overwrite to start again."
    )
