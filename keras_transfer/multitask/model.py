"""`MultiTaskTextModel` and `MultiTaskImageModel`: one backbone, several named heads, trained together.

Each is the single-task model of its kind (`TextClassifier`,
`ImageClassifier`) with a `TaskHeads` in the place of its `Head`, so
everything those do (raw sentences in `fit`, freezing, LoRA, two-phase
`fine_tune`, saving) works the same; `MultiTaskModel`, the base they share,
adds what several tasks change: the loss, weight and metric dicts, the two
forms of data (`keras_transfer.multitask.data`), one evaluation report per
task, and export of one task (a single-task model sharing the backbone) or of
all of them (one multi-output LiteRT file).
"""

import dataclasses
import inspect

import keras
import tensorflow as tf

from keras_transfer.finetune.progress import announce, counted
from keras_transfer.finetune.recipes import Recipe
from keras_transfer.models.image_classifier import ImageClassifier
from keras_transfer.models.task_io import CLASSIFICATION_TASKS, decode_outputs
from keras_transfer.models.text_backbones import PRETRAINED
from keras_transfer.models.text_classifier import TextClassifier
from keras_transfer.models.transfer_model import TransferModel
from keras_transfer.multitask.data import is_task_dict, task_batches, task_labels
from keras_transfer.multitask.recipes import MULTITASK_IMAGE_RECIPE, MULTITASK_TEXT_RECIPE
from keras_transfer.multitask.tasks import TaskHeads

# Examples per batch of data given as arrays (datasets keep their own batches).
DEFAULT_BATCH_SIZE = 32


class MultiTaskModel:
    """What multi-task models share, on top of the single-task model they extend.

    Not built directly: use `MultiTaskTextModel` or `MultiTaskImageModel`.
    The model's outputs are a dict `{task name: output}`; `predict` returns
    one; `fit`, `evaluate` and `fine_tune` take data in either form of
    `keras_transfer.multitask.data`: `(inputs, {task: labels})`, or
    `{task: (inputs, labels)}` for tasks labelled on different examples
    (mixed into shared batches, each example's loss only on its own task).
    Logs and metrics carry the task's name: `sentiment_accuracy`,
    `val_spam_auc`, `sentiment_loss`.
    """

    single_task_class = TransferModel  # the single-task model of the same kind: `task_model` builds one

    @property
    def tasks(self):
        """The `Task`s, in the order of the outputs."""
        return self.head.tasks

    @property
    def task_names(self):
        return self.head.names

    @classmethod
    def head_from_config(cls, config):
        return TaskHeads.from_config(config)

    @classmethod
    def create(cls, train, validation_data=None, *, recipe=None, strategy=None, **options):
        """Builds a model and fine-tunes it on `train`, inside `strategy`'s scope.

        Options the constructor takes (`backbone`, `tasks`, `weights`, ...)
        build the model; the others go to `fine_tune`.

        Returns:
            `(model, FineTuneHistory)`.
        """
        build_names = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
        build_options = {name: options.pop(name) for name in list(options) if name in build_names}
        recipe = _recipe(recipe or cls.RECIPE, options)
        with (strategy or tf.distribute.get_strategy()).scope():
            model = cls(**build_options)
            if recipe.lora_rank:
                model.enable_lora(recipe.lora_rank)
        return model, model.fine_tune(train, validation_data, recipe, **options)

    # --- training --------------------------------------------------------

    def compile(self, optimizer="adam", loss="auto", metrics="auto", *, learning_rate=None, **kwargs):
        """`TransferModel.compile` with every task's loss, loss weight and metrics by default.

        The metrics are compiled as Keras `weighted_metrics`, so examples of
        another task (sample weight 0) count for none of this task's metrics.
        """
        if loss == "auto":
            loss = self.head.loss()
            kwargs.setdefault("loss_weights", self.head.loss_weights())
        if metrics == "auto":
            metrics = None
            kwargs.setdefault("weighted_metrics", self.head.metrics())
        super().compile(optimizer, loss=loss, metrics=metrics, learning_rate=learning_rate, **kwargs)

    def task_data(self, data, *, batch_size=None, shuffle=False, seed=0, training=False):
        """`(dataset of batches, examples per task)` for data in either form (`multitask.data.task_batches`)."""
        return task_batches(
            self.tasks,
            data,
            batch_size=batch_size or DEFAULT_BATCH_SIZE,
            shuffle=shuffle,
            seed=seed,
            require_all=training,
        )

    def fine_tune(
        self, train, validation_data=None, recipe=None, *, batch_size=None, seed=0, verbose="auto", **options
    ):
        """`TransferModel.fine_tune` for all tasks at once: the heads on the frozen backbone, then fine-tuning.

        Args:
            train: `(inputs, {task: labels})`, a dataset of such batches, or
                `{task: (inputs, labels) or dataset}` (each task its own
                examples: mixed batches, each example's loss on its own task).
            validation_data: the same forms, or None; a task may be left out.
            recipe: a `Recipe`; the class's `RECIPE` when None. Recipes that
                train on cached features are refused (see `multitask.recipes`).
            batch_size: examples per batch for data given as arrays.
            seed: the seed of shuffling and of mixing the tasks.
            verbose: Keras's `verbose`.
            **options: `fine_tune`'s other options (`checkpoint_dir`,
                `callbacks`, `backup_dir`) and `Recipe` options.

        Returns:
            A `FineTuneHistory`; its logs name each task (`val_spam_accuracy`).
        """
        recipe = _recipe(recipe or self.RECIPE, options)
        batches, counts = self.task_data(train, batch_size=batch_size, shuffle=True, seed=seed, training=True)
        validation = None
        if validation_data is not None:
            validation = self.task_data(validation_data, batch_size=batch_size)[0]
        announce(verbose, "Tasks: " + "; ".join(_task_line(task, counts.get(task.name)) for task in self.tasks) + ".")
        return super().fine_tune(batches, validation, recipe, verbose=verbose, **options)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, **kwargs):
        """`keras.Model.fit` that also takes either form of multi-task data (and raw sentences)."""
        if isinstance(y, dict) or is_task_dict(x, self.tasks):
            shuffle = kwargs.pop("shuffle", True)
            x, _ = self.task_data(x if y is None else (x, y), batch_size=batch_size, shuffle=shuffle, training=True)
            y, batch_size = None, None
            kwargs["shuffle"] = False  # the dataset shuffles itself
        validation = kwargs.get("validation_data")
        if _is_labelled_by_task(validation, self.tasks):
            kwargs["validation_data"] = self.task_data(validation, batch_size=batch_size)[0]
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
        """`keras.Model.evaluate` that also takes either form of multi-task data: every task's metrics."""
        if isinstance(y, dict) or is_task_dict(x, self.tasks):
            x, _ = self.task_data(x if y is None else (x, y), batch_size=batch_size)
            y, batch_size = None, None
        return super().evaluate(x, y, batch_size, *args, **kwargs)

    # --- each task -----------------------------------------------------------

    def task_model(self, name):
        """Task `name` alone: a single-task model of the same kind, on the same backbone.

        The backbone (and preprocessing) is this model's own, shared: training
        either trains both. The head's weights are copied at the call: make
        the task model again after training this one further. It is a plain
        `TextClassifier` or `ImageClassifier`: it saves, evaluates and
        exports as they do.
        """
        task = self.head[name]
        base_keys = set(TransferModel.get_config(self))
        options = {key: value for key, value in self.get_config().items() if key not in base_keys}
        model = self.single_task_class(
            self.backbone,
            preprocessor=self.preprocessor,
            head=task.head,
            class_names=task.class_names,
            name=name,
            **options,
        )
        model.backbone_name = self.backbone_name
        model.head_model().set_weights(self.get_layer(name).get_weights())
        return model

    def predict_classes(self, inputs, *, batch_size=32):
        """`{task: (class indices, probabilities)}` for the classification tasks, on a batch of raw inputs."""
        outputs = self.predict(inputs, batch_size=batch_size, verbose=0)
        predictions = {}
        for task in self.tasks:
            if task.head.task in CLASSIFICATION_TASKS:
                decoded = decode_outputs(outputs[task.name], task.head)
                predictions[task.name] = (decoded.classes, decoded.confidence)
        return predictions

    def set_class_vectors(self, class_vectors, *, task):
        """Writes one vector per class into task `task`'s cosine head (`Head.cosine`)."""
        kernel = self.head[task].head.class_vector_kernel(class_vectors)
        layer = self.get_layer(task).get_layer("predictions")
        if tuple(layer.kernel.shape) != kernel.shape:
            raise ValueError(
                f"The class vectors have {kernel.shape[0]} features, the head takes {layer.kernel.shape[0]}: "
                "compute them with this model's feature_extractor()."
            )
        layer.kernel.assign(kernel)

    def evaluate_report(self, data, **options):
        """`{task: EvaluationReport}`: accuracy, per-class scores and confusion matrix of every task.

        Args:
            data: `(inputs, {task: labels})`, a dataset of such batches, or
                `{task: (inputs, labels)}` (only the tasks it names).
            **options: `keras_transfer.evaluation.evaluate_model`'s options.
        """
        names = [name for name in self.task_names if not isinstance(data, dict) or name in data]
        return {name: self.task_model(name).evaluate_report(task_labels(data, name), **options) for name in names}

    def export_model(self, path, *, task=None, **options):
        """Exports one task (`task=`, a single-task model) or all of them (one file, one output per task).

        With `task`, this is `task_model(task).export_model(path, ...)`:
        class names, head and check as for any single-task model. Without,
        `keras_transfer.multitask.export.export_tasks`: one LiteRT file (or
        SavedModel) whose outputs are named after the tasks, each checked
        against this model in the LiteRT interpreter given `check_data`.
        """
        if task is not None:
            return self.task_model(task).export_model(path, **options)
        from keras_transfer.multitask.export import export_tasks

        return export_tasks(self, path, **options)


def _recipe(recipe, options):
    """`recipe` with the `Recipe` options taken out of `options`; cached features refused."""
    names = {field.name for field in dataclasses.fields(Recipe)}
    recipe = recipe.replace(**{name: options.pop(name) for name in list(options) if name in names})
    if recipe.cache_features:
        raise ValueError(
            "A multi-task model trains on the whole network each epoch: cache_features (and probe_start) "
            "are for single-task heads. Use cache_features=False, or train each task alone."
        )
    return recipe


def _task_line(task, count):
    head = task.head
    kind = head.task if head.task in ("binary", "regression") else f"{head.task}, {head.num_outputs}"
    examples = "" if count is None else f", {counted(count, 'training example')}"
    weight = "" if task.loss_weight == 1.0 else f", loss weight {task.loss_weight:g}"
    return f"{task.name} ({kind}{examples}{weight})"


def _is_labelled_by_task(data, tasks):
    return is_task_dict(data, tasks) or (
        isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], dict)
    )


def _task_heads(tasks, head, pooling="mean"):
    """The `TaskHeads` of the tasks given (or of a loaded model's `head`)."""
    if head is not None:
        if tasks is not None:
            raise ValueError("Give tasks (a list of Task), not both tasks and head.")
        return head
    return TaskHeads(tasks, pooling=pooling)


@keras.saving.register_keras_serializable(package="keras_transfer")
class MultiTaskTextModel(MultiTaskModel, TextClassifier):
    """A keras-hub text backbone with one head per task; takes raw sentences.

    Args:
        backbone: as for `TextClassifier`: a preset, folder or keras-hub
            backbone (then pass `preprocessor`).
        tasks: the `Task`s, e.g. `[Task("sentiment", Head.binary()),
            Task("topic", Head.multiclass(4), loss_weight=0.5)]`.
        weights, preprocessor, sequence_length, pooling, bucket_by_length:
            as for `TextClassifier`.
        head: a `TaskHeads`, in the place of `tasks` (how a saved model loads).

    Example:
    >>> tasks = [Task("sentiment", Head.binary()), Task("spam", Head.binary())]
    >>> model = MultiTaskTextModel(folder, tasks)  # doctest: +SKIP
    >>> model.fine_tune({"sentiment": (reviews, stars), "spam": (messages, is_spam)})  # doctest: +SKIP
    >>> model.predict(["great film"])["sentiment"]  # doctest: +SKIP
    """

    RECIPE = MULTITASK_TEXT_RECIPE
    single_task_class = TextClassifier

    def __init__(
        self,
        backbone,
        tasks=None,
        *,
        weights=PRETRAINED,
        preprocessor=None,
        sequence_length=None,
        pooling="auto",
        bucket_by_length=True,
        head=None,
        class_names=None,
        **kwargs,
    ):
        if class_names is not None:
            raise ValueError("A multi-task model keeps class names per task: Task(name, head, class_names=[...]).")
        TextClassifier.__init__(
            self,
            backbone,
            weights=weights,
            preprocessor=preprocessor,
            sequence_length=sequence_length,
            head=_task_heads(tasks, head),
            pooling=pooling,
            bucket_by_length=bucket_by_length,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="keras_transfer")
class MultiTaskImageModel(MultiTaskModel, ImageClassifier):
    """A pretrained image backbone with one head per task; takes raw pixels in [0, 255].

    Args:
        backbone: as for `ImageClassifier`: a registry name, a keras-hub
            preset or a headless `keras.Model`.
        tasks: the `Task`s.
        pooling: how the backbone's feature map is pooled, once for all
            tasks: `"mean"`, `"max"` or `"flatten"`.
        weights, image_size, preprocessor, train_batch_norm: as for `ImageClassifier`.
        head: a `TaskHeads`, in the place of `tasks` (how a saved model loads).
    """

    RECIPE = MULTITASK_IMAGE_RECIPE
    single_task_class = ImageClassifier

    def __init__(
        self,
        backbone="mobilenet_v2",
        tasks=None,
        *,
        pooling="mean",
        weights="imagenet",
        image_size=None,
        preprocessor=None,
        train_batch_norm=False,
        head=None,
        class_names=None,
        **kwargs,
    ):
        if class_names is not None:
            raise ValueError("A multi-task model keeps class names per task: Task(name, head, class_names=[...]).")
        ImageClassifier.__init__(
            self,
            backbone,
            weights=weights,
            image_size=image_size,
            head=_task_heads(tasks, head, pooling),
            preprocessor=preprocessor,
            train_batch_norm=train_batch_norm,
            **kwargs,
        )
