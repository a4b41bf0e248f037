"""`keras-transfer train-multitask`: several text tasks, each from its own file, on one keras-hub backbone.

Each `--task NAME=FILE[,TEXT_COLUMN,LABEL_COLUMN]` is one classification
task with its own head (classes from its file); the examples of all tasks
are mixed into shared batches, each example's loss on its own task
(`keras_transfer.multitask`). The recipe's defaults come from
`keras_transfer.multitask.recipes`.
"""

import json
import re
import time

from keras_transfer.cli import common
from keras_transfer.cli.common import CommandError
from keras_transfer.cli.library_source import constant
from keras_transfer.errors import require_extra
from keras_transfer.multitask.recipes import MULTITASK_TEXT_RECIPE

POOLINGS = constant("keras_transfer.models.text_classifier", "POOLINGS")
TASK_NAME = re.compile(constant("keras_transfer.multitask.tasks", "TASK_NAME_PATTERN"))

# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer train-multitask --task sentiment=sst2/train.tsv,sentence,label "
    "--task spam=SMSSpamCollection,SMS,Label --backbone ./all-MiniLM-L6-v2 --val-split 0.1 --output runs/two_tasks",
    "keras-transfer train-multitask --task topic=news.csv --task urgent=tickets.csv --task-weight urgent=2 "
    "--backbone bert_tiny_en_uncased --max-examples 2000 --output runs/support",
)


def add_parser(subparsers):
    recipe = MULTITASK_TEXT_RECIPE
    parser = subparsers.add_parser(
        "train-multitask",
        help="train several text classification tasks, one file each, on one shared keras-hub backbone",
        description="Puts one classification head per task on a pretrained keras-hub text backbone and trains "
        "them together: first the heads on the frozen backbone, then the whole network. Each task's examples "
        "come from its own file; batches mix the tasks and each example's loss counts for its own task only. "
        "Writes OUT_DIR/model.keras (all heads), report.json, training_curves.png and, with validation data, "
        "one evaluation and confusion_matrix_TASK.png per task.",
    )
    parser.add_argument(
        "--task",
        dest="tasks",
        action="append",
        required=True,
        metavar="NAME=FILE[,TEXT_COLUMN,LABEL_COLUMN]",
        help="a task and its CSV/TSV file (UTF-8), one example per row; the columns default to "
        "--text-column and --label-column. Give --task once per task",
    )
    parser.add_argument(
        "--task-weight",
        action="append",
        default=[],
        metavar="NAME=W",
        help="weight of a task's loss in the total (default: 1 for every task)",
    )
    parser.add_argument(
        "--val-split", type=float, metavar="F", help="hold out this fraction of each task's file (seeded)"
    )
    common.add_text_file_options(parser)
    common.add_text_backbone_options(parser)
    parser.add_argument(
        "--sequence-length",
        type=int,
        metavar="N",
        help="tokens per text (default: the 95th percentile of the texts' token counts, capped by the backbone)",
    )
    parser.add_argument(
        "--head-epochs",
        type=common.non_negative_int,
        default=recipe.head_epochs,
        metavar="N",
        help=f"epochs of the heads on the frozen backbone, at {recipe.head_learning_rate:g} "
        f"(default: {recipe.head_epochs})",
    )
    parser.add_argument(
        "--epochs",
        type=common.non_negative_int,
        default=recipe.finetune_epochs,
        metavar="N",
        help=f"epochs of the whole network afterwards (default: {recipe.finetune_epochs})",
    )
    parser.add_argument(
        "--lr",
        type=common.positive_float,
        default=recipe.finetune_learning_rate,
        metavar="LR",
        help=f"peak learning rate of the whole network's epochs (Adam; default: {recipe.finetune_learning_rate:g})",
    )
    common.add_schedule_option(parser, recipe.schedule or common.CONSTANT)
    common.add_batch_size_option(parser)
    common.add_max_examples_option(parser)
    parser.add_argument(
        "--pooling",
        default="auto",
        choices=POOLINGS,
        help="how the token sequence becomes one vector for every head: the backbone's pooler, the [CLS] "
        "token, or the masked mean or max over tokens; auto takes what a sentence-transformers folder names, "
        "else the pooler where the backbone has one, else the mean (default: auto)",
    )
    common.add_run_options(parser, "training")
    parser.set_defaults(run=run)
    return parser


def parse_tasks(args):
    """`([(name, file, text column, label column)], {name: loss weight})` of the options, or a CommandError."""
    tasks, names = [], []
    for given in args.tasks:
        name, separator, rest = given.partition("=")
        parts = rest.split(",")
        if not separator or not parts[0] or len(parts) not in (1, 3) or not TASK_NAME.match(name):
            raise CommandError(
                f"--task {given!r}: write NAME=FILE or NAME=FILE,TEXT_COLUMN,LABEL_COLUMN, with a NAME of "
                "letters, digits and '_' starting with a letter (e.g. --task spam=sms.tsv,SMS,Label)."
            )
        if name in names:
            raise CommandError(f"--task {name} is given twice: give each task once.")
        text_column, label_column = parts[1:] if len(parts) == 3 else (args.text_column, args.label_column)
        tasks.append((name, parts[0], common.column(text_column), common.column(label_column)))
        names.append(name)
    weights = {}
    for given in args.task_weight:
        name, _, value = given.partition("=")
        if name not in names:
            raise CommandError(f"--task-weight {given!r}: no --task named {name!r} (the tasks: {', '.join(names)}).")
        try:
            weights[name] = float(value)
        except ValueError:
            raise CommandError(f"--task-weight {given!r}: the weight must be a number, e.g. {name}=0.5.") from None
        if not weights[name] >= 0:
            raise CommandError(f"--task-weight {given!r}: a weight must be >= 0.")
    return tasks, weights


def multitask_recipe(args):
    recipe = MULTITASK_TEXT_RECIPE.replace(
        head_epochs=args.head_epochs, finetune_epochs=args.epochs, finetune_learning_rate=args.lr
    )
    return common.with_schedule(recipe, args)


def run(args):
    require_extra("keras_hub", "train-multitask")  # the optional `text` extra, checked before any work
    tasks, weights = parse_tasks(args)
    try:
        recipe = multitask_recipe(args)
    except ValueError as error:
        raise CommandError(error) from error
    folder = common.check_output_dir(args.output, args.overwrite, resume=args.resume, args=args)
    import keras

    from keras_transfer import data
    from keras_transfer.models import Head
    from keras_transfer.multitask.model import MultiTaskTextModel
    from keras_transfer.multitask.tasks import Task

    keras.utils.set_random_seed(args.seed)
    options = common.text_file_options(args)
    train, validation = {}, {}
    try:
        for name, path, text_column, label_column in tasks:
            loaded = data.text_file(
                path,
                validation_split=args.val_split,
                max_examples=args.max_examples,
                seed=args.seed,
                **{**options, "text_column": text_column, "label_column": label_column},
            )
            train[name], validation[name] = loaded if isinstance(loaded, tuple) else (loaded, None)
        model = MultiTaskTextModel(
            args.backbone,
            [
                Task(
                    name, Head.multiclass(len(train[name].class_names)), weights.get(name, 1.0), train[name].class_names
                )
                for name in train
            ],
            weights=common.text_backbone_weights(args),
            sequence_length=args.sequence_length,
            pooling=args.pooling,
        )
        validation = {name: dataset for name, dataset in validation.items() if dataset is not None} or None
    except common.bad_input_errors() as error:
        raise CommandError(error) from error

    from keras_transfer.cli.train import train_in_folder

    counts = ", ".join(
        f"{name} {train[name].num_examples:,} ({len(train[name].class_names)} classes)" for name in train
    )
    print(f"Training {model.backbone_name} with {len(train)} task heads: {counts}.")
    summary, reports, seconds, trainable, total = train_in_folder(
        folder, recipe, lambda: _train_and_write(args, folder, model, train, validation, recipe)
    )
    print()
    for name, report in reports.items():
        print(f"Task {name}:")
        print(report.format_text())
        print()
    scored = (
        "validation accuracy " + ", ".join(f"{name} {report.accuracy:.3f}" for name, report in reports.items())
        if reports
        else "no validation data given"
    )
    print(
        f"{model.backbone_name} with {len(train)} tasks, {sum(d.num_examples for d in train.values()):,} training "
        f"texts, sequence length {model.sequence_length}: {scored} after {seconds:.0f} s, training "
        f"{trainable:,} of {total:,} parameters."
    )
    print(f"Wrote {', '.join(folder.files)} to {args.output}")
    if args.json:
        print(json.dumps({key: summary[key] for key in summary if key not in ("history", "evaluation")}))


def _train_and_write(args, folder, model, train, validation, recipe):
    """Trains (resuming from `folder`'s backup) and writes every output into OUT_DIR.partial."""
    from keras_transfer import atomic_files as files
    from keras_transfer import evaluation
    from keras_transfer.version import environment

    start = time.perf_counter()
    try:
        history = model.fine_tune(
            train,
            validation,
            recipe=recipe,
            batch_size=args.batch_size,
            seed=args.seed,
            backup_dir=folder.backup_dir,
            checkpoint_dir=folder.checkpoint_dir,
        )
    except common.bad_input_errors() as error:
        raise CommandError(error) from error
    seconds = time.perf_counter() - start

    reports = model.evaluate_report(validation) if validation is not None else {}
    files.save_model(model, folder.file("model.keras"))
    evaluation.plot_training_curves(history, folder.file("training_curves.png"))
    for name, report in reports.items():
        evaluation.plot_confusion_matrix(
            report.confusion_matrix, report.class_names, folder.file(f"confusion_matrix_{name}.png")
        )
    trainable, total = model.parameter_counts()
    command_line, defaults_used = common.run_settings(args.command_parser, args)
    summary = {
        "backbone": model.backbone_name,
        "weights": args.weights,
        "tasks": [task.get_config() for task in model.tasks],
        "pooling": model.pooling,
        "sequence_length": model.sequence_length,
        "val_accuracy": {name: report.accuracy for name, report in reports.items()} or None,
        "recipe_options": recipe.to_dict(),
        "diverged": history.diverged,
        "best_epoch": history.best,
        "seconds": round(seconds, 2),
        "trainable_params": trainable,
        "total_params": total,
        "history": history.merged(),
        "evaluation": {name: report.to_dict() for name, report in reports.items()},
        "command_line": command_line,
        "defaults_used": defaults_used,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "data": {name: common.data_summary(train[name], (validation or {}).get(name)) for name in train},
        "environment": environment(),
    }
    files.write_json(summary, folder.file("report.json"))
    return summary, reports, seconds, trainable, total
