"""`keras-transfer train-text`: a keras-hub text backbone with a new head, trained by a text recipe.

`--recipe full|frozen|lora` (`--strategy`, its old name, still works) picks
one of `keras_transfer.finetune.recipes.TEXT_RECIPES`; `--epochs`, `--lr`,
`--head-epochs` and `--lora-rank` change it through `recipes.text_recipe`,
and `--help` shows the recipes' own values.
"""

import json
import time

from keras_transfer.cli import common, domain_adaptation, few_shot, multi_worker
from keras_transfer.cli.common import CommandError
from keras_transfer.cli.library_source import constant
from keras_transfer.errors import require_extra
from keras_transfer.finetune import recipes

POOLINGS = constant("keras_transfer.models.text_classifier", "POOLINGS")


def _main_phase(recipe):
    """`"head"` or `"finetune"`: the phase that `--epochs` and `--lr` set in a named text recipe."""
    return "finetune" if recipe.finetune_epochs else "head"


def _recipe_defaults(option):
    """`{recipe name: its value of --epochs or --lr}`."""
    return {name: getattr(recipe, f"{_main_phase(recipe)}_{option}") for name, recipe in recipes.TEXT_RECIPES.items()}


def _default_text(values, style="{}"):
    """`3` when every recipe has that value, else `5e-05 full, 0.001 frozen, 0.002 lora`."""
    if len(set(values.values())) == 1:
        return style.format(next(iter(values.values())))
    return ", ".join(f"{style.format(value)} {name}" for name, value in values.items())


# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer train-text reviews.csv --val-split 0.1 --backbone bert_tiny_en_uncased --output runs/reviews",
    "keras-transfer train-text train.tsv --val-file dev.tsv --text-column sentence --label-column label "
    "--backbone ./all-MiniLM-L6-v2 --recipe lora --output runs/lora",
    "keras-transfer train-text --config runs/reviews/report.json --lr 3e-5 --output runs/reviews_lr3e-5",
    "keras-transfer train-text train.tsv --val-file dev.tsv --text-column sentence --label-column label "
    "--backbone ./all-MiniLM-L6-v2 --shots 8 --method setfit --output runs/eight_shot",
    "keras-transfer train-text sst2.tsv --text-column sentence --label-column label --backbone ./all-MiniLM-L6-v2 "
    "--target-file yelp.txt --target-text-column 0 --target-label-column 1 --adapt mmd --output runs/sst2_to_yelp",
)


def add_parser(subparsers):
    names = tuple(recipes.TEXT_RECIPES)
    parser = subparsers.add_parser(
        "train-text",
        help="fine-tune a keras-hub text backbone on a CSV/TSV file of labelled texts",
        description="Puts a new classification head on a pretrained keras-hub text backbone "
        "and trains it: the whole network (--recipe full, the default), the head alone on "
        "the frozen backbone (frozen), or LoRA adapters and the head (lora; --lora-rank alone "
        "implies it). Writes OUT_DIR/model.keras, report.json and training_curves.png, plus "
        "confusion_matrix.png when there is validation data.",
    )
    parser.add_argument("train_file", metavar="TRAIN_FILE", help="CSV or TSV file (UTF-8), one example per row")
    validation = parser.add_mutually_exclusive_group()
    validation.add_argument("--val-file", metavar="FILE", help="validation examples, same columns")
    validation.add_argument(
        "--val-split", type=float, metavar="F", help="hold out this fraction of TRAIN_FILE (seeded)"
    )
    common.add_text_file_options(parser)
    common.add_text_backbone_options(parser)
    parser.add_argument(
        "--recipe",
        "--strategy",
        dest="recipe",
        choices=names,
        help="what trains: full (everything), frozen (the head only) or lora "
        "(LoRA adapters + head). Default: lora with --lora-rank, else full "
        "(--strategy is the old name of --recipe)",
    )
    parser.add_argument(
        "--lora-rank",
        type=common.positive_int,
        metavar="R",
        help=f"rank of the LoRA adapters (implies --recipe lora; "
        f"default with lora: {recipes.TEXT_RECIPES['lora'].lora_rank})",
    )
    parser.add_argument(
        "--sequence-length",
        type=int,
        metavar="N",
        help="tokens per text (default: the 95th percentile of the training "
        "texts' token counts, capped by the backbone)",
    )
    parser.add_argument(
        "--epochs",
        type=common.positive_int,
        metavar="N",
        help=f"epochs of the recipe's training (default: {_default_text(_recipe_defaults('epochs'))}, fewer "
        f"for more than {recipes.EXAMPLES_PER_RUN // 3:,} texts: about {recipes.EXAMPLES_PER_RUN:,} texts per run)",
    )
    warm_up = {name: recipe for name, recipe in recipes.TEXT_RECIPES.items() if _main_phase(recipe) == "finetune"}
    parser.add_argument(
        "--head-epochs",
        type=common.non_negative_int,
        metavar="N",
        help=f"{' and '.join(warm_up)} only: first train the head alone on the frozen "
        f"backbone for N epochs at {recipes.TEXT_RECIPE.head_learning_rate:g} (default: "
        f"{_default_text({name: recipe.head_epochs for name, recipe in warm_up.items()})})",
    )
    parser.add_argument(
        "--lr",
        type=common.positive_float,
        metavar="LR",
        help="learning rate of the --epochs phase (Adam; default: "
        + _default_text(_recipe_defaults("learning_rate"), "{:g}")
        + ")",
    )
    schedules = {name: recipe.schedule or common.CONSTANT for name, recipe in recipes.TEXT_RECIPES.items()}
    common.add_schedule_option(parser, _default_text(schedules))
    common.add_batch_size_option(parser)
    common.add_max_examples_option(parser)
    parser.add_argument(
        "--pooling",
        default="auto",
        choices=POOLINGS,
        help="how the token sequence becomes one vector: the backbone's pooler, "
        "the [CLS] token, or the masked mean or max over tokens; auto takes what a "
        "sentence-transformers folder's 1_Pooling/config.json names, else the "
        "pooler where the backbone has one, else the mean (default: auto)",
    )
    parser.add_argument(
        "--no-bucket-by-length",
        dest="bucket_by_length",
        action="store_false",
        help="pad every batch to the sequence length (default: each batch is padded only to its longest "
        "text, and training batches group texts of similar length)",
    )
    parser.add_argument(
        "--early-stopping",
        type=common.positive_int,
        metavar="PATIENCE",
        help="stop a phase after PATIENCE epochs without improvement",
    )
    few_shot.add_options(parser, few_shot.TEXT_METHODS)
    domain_adaptation.add_options(parser, domain_adaptation.TEXT_METHODS, "--target-file")
    common.add_run_options(parser, "training")
    multi_worker.add_options(parser)
    parser.set_defaults(run=run)
    return parser


def text_recipe(args, num_examples=None):
    """The `Recipe` the options name, from `recipes.text_recipe`, or a CommandError.

    With `num_examples` (the training texts, once read) the default epochs follow the data's size.
    """
    name = args.recipe or ("lora" if args.lora_rank else "full")
    if args.lora_rank and name != "lora":
        raise CommandError(
            f"--lora-rank trains LoRA adapters, which --recipe {name} does not: drop --lora-rank, or use --recipe lora."
        )
    if args.head_epochs is not None and name == "frozen":
        raise CommandError(
            "--head-epochs is a first phase before full or lora training; with --recipe "
            "frozen only the head trains, for --epochs epochs: drop --head-epochs."
        )
    if args.sequence_length is not None and args.sequence_length < 2:
        raise CommandError(
            f"--sequence-length {args.sequence_length} is too short: a text needs at least "
            "2 tokens ([CLS] and [SEP]) plus its words."
        )
    recipe = common.recipe(
        recipes.text_recipe,
        name=name,
        epochs=args.epochs,
        learning_rate=args.lr,
        head_epochs=args.head_epochs,
        lora_rank=args.lora_rank,
        early_stopping=args.early_stopping,
        num_examples=num_examples,
    )
    return common.with_schedule(recipe, args)


def describe(recipe):
    """What trains, in words: `full fine-tuning`, `head only, frozen backbone` or `LoRA rank 8`."""
    return {
        "full": "full fine-tuning",
        "frozen": "head only, frozen backbone",
        "lora": f"LoRA rank {recipe.lora_rank}",
    }[recipes.text_recipe_name(recipe)]


def run(args):
    require_extra("keras_hub", "train-text")  # the optional `text` extra, checked before any work
    cluster = multi_worker.cluster(args)
    if args.shots is not None or args.method is not None:
        return few_shot.run_texts(args)
    if domain_adaptation.wants_adaptation(args):
        return domain_adaptation.run_texts(args, text_recipe, describe)
    recipe = text_recipe(args)
    name = recipes.text_recipe_name(recipe)
    folder, strategy = multi_worker.run_folder_and_strategy(args, cluster)
    import keras

    from keras_transfer.cli.train import train_in_folder

    keras.utils.set_random_seed(args.seed)
    try:
        train, validation = common.text_training_data(args)
        with multi_worker.scope(strategy):
            model = common.text_classifier(args, train.class_names)
            if recipe.lora_rank:
                # fine_tune would enable it too; here a backbone without adaptable layers fails before training.
                model.enable_lora(recipe.lora_rank)
        model.check_data(train, validation)  # also picks the sequence length
    except common.bad_input_errors() as error:
        raise CommandError(error) from error
    recipe = text_recipe(args, train.num_examples)

    print(
        f"Training {model.backbone_name} ({describe(recipe)}) on "
        f"{train.num_examples} texts, {len(train.class_names)} classes, "
        f"sequence length {model.sequence_length}."
    )
    if cluster is not None and not cluster.is_chief:
        return multi_worker.train_as_worker(cluster, folder, model, train, validation, recipe)
    summary, report, seconds, trainable, total = train_in_folder(
        folder, recipe, lambda: _train_and_write(args, folder, model, train, validation, recipe, name)
    )

    print()
    if report is not None:
        print(report.format_text())
        scored = f"validation accuracy {report.accuracy:.3f}"
    else:
        last = summary["train_accuracy_last_epoch"]
        scored = "no validation data given" + (
            f", last epoch's training accuracy {last:.3f}" if last is not None else ""
        )
    print(
        f"\n{model.backbone_name} ({describe(recipe)}) on "
        f"{len(train.class_names)} classes, {train.num_examples} training texts, sequence length "
        f"{model.sequence_length}: {scored} after {seconds:.0f} s{multi_worker.on_workers(summary)}, training "
        f"{trainable:,} of {total:,} parameters ({summary['trainable_percent']:.2f}%)."
    )
    if summary["best_epoch"]:
        print(common.best_epoch_line(summary["best_epoch"]))
    if args.clean:
        print(f"The texts were cleaned with {' '.join(args.clean)}: pass the same --clean to evaluate and predict.")
    print(f"Wrote {', '.join(folder.files)} to {args.output}")
    if args.json:
        print(json.dumps({key: summary[key] for key in summary if key not in ("history", "evaluation")}))


def _train_and_write(args, folder, model, train, validation, recipe, name):
    """Trains (resuming from `folder`'s backup) and writes every output into OUT_DIR.partial."""
    from keras_transfer import atomic_files as files
    from keras_transfer import evaluation
    from keras_transfer.distribute import worker_count

    start = time.perf_counter()
    history = model.fine_tune(
        train, validation, recipe=recipe, backup_dir=folder.backup_dir, checkpoint_dir=folder.checkpoint_dir
    )
    seconds = time.perf_counter() - start

    report = evaluation.evaluate_model(model, validation) if validation is not None else None
    files.save_model(model, folder.file("model.keras"))
    evaluation.plot_training_curves(history, folder.file("training_curves.png"))
    if report is not None:
        evaluation.plot_confusion_matrix(
            report.confusion_matrix, report.class_names, folder.file("confusion_matrix.png")
        )
    trainable, total = model.parameter_counts()
    merged = history.merged()
    summary = {
        "backbone": model.backbone_name,
        "weights": args.weights,
        "recipe": name,
        "strategy": name,  # the old name of "recipe", for readers of earlier reports
        "lora_rank": recipe.lora_rank,
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
        "learning_rate": getattr(recipe, f"{_main_phase(recipe)}_learning_rate"),
        "recipe_options": recipe.to_dict(),
        "diverged": history.diverged,
        "best_epoch": history.best,
        "phases": {
            phase: {"epochs": len(result.history.get("loss", [])), "seconds": round(history.seconds[phase], 2)}
            for phase, result in history.phases
        },
        "seconds": round(seconds, 2),
        "workers": worker_count(model.distribute_strategy),
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100.0 * trainable / total, 4),
        "history": merged,
        "evaluation": report.to_dict() if report is not None else None,
        **common.run_record(args, train, validation),
    }
    files.write_json(summary, folder.file("report.json"))
    return summary, report, seconds, trainable, total
