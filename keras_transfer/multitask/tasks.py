"""`Task` (a name, a `Head`, a loss weight) and `TaskHeads` (every task's head on the shared features).

A multi-task model is a single-task model whose `head` is a `TaskHeads`: it
builds one small Keras model per task (named after the task) on the
features the backbone gives, so the model's outputs are a dict keyed by task
name, and Keras's own dict `loss`, `loss_weights` and `weighted_metrics`
follow from the tasks.
"""

import dataclasses
import re

import keras

from keras_transfer.models.heads import POOLINGS, Head
from keras_transfer.models.layers import canonical_pooling, global_pooling

# Task names become output names, metric prefixes (`sentiment_accuracy`) and file names.
TASK_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
TASK_NAME = re.compile(TASK_NAME_PATTERN)
# Each task's loss is the mean over the examples of that task in the batch:
# the examples of the other tasks have sample weight 0 and are left out of
# both the sum and the count, so a task's loss (and its loss weight) means
# the same whatever share of the batch its examples are.
TASK_LOSS_REDUCTION = "mean_with_sample_weight"


@dataclasses.dataclass
class Task:
    """One task of a multi-task model: its name, its head and how much its loss counts.

    Args:
        name: the task's name: letters, digits and `_`, starting with a
            letter. It names the task's output, its metrics
            (`val_<name>_accuracy`) and its head's layers.
        head: the task's `Head` (`Head.multiclass(3)`, `Head.binary()`,
            `Head.multilabel(5)`, `Head.regression()`); its `pooling` is not
            used, the model pools once for all tasks.
        loss_weight: the weight of this task's loss in the total loss.
        class_names: names of the classes (or labels), kept with the model.

    Example:
    >>> Task("sentiment", Head.binary(), class_names=["negative", "positive"]).loss_weight
    1.0
    """

    name: str
    head: Head
    loss_weight: float = 1.0
    class_names: list | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not TASK_NAME.match(self.name):
            raise ValueError(
                f"Task name {self.name!r} is not usable: use letters, digits and '_', starting with a letter "
                "(it names the task's output and metrics)."
            )
        if isinstance(self.head, dict):
            self.head = Head.from_config(self.head)
        if not isinstance(self.head, Head):
            raise ValueError(f"Task {self.name!r}: head must be a Head (e.g. Head.binary()), got {self.head!r}.")
        if isinstance(self.loss_weight, bool) or not isinstance(self.loss_weight, (int, float)):
            raise ValueError(f"Task {self.name!r}: loss_weight must be a number, got {self.loss_weight!r}.")
        if not self.loss_weight >= 0:
            raise ValueError(f"Task {self.name!r}: loss_weight must be >= 0, got {self.loss_weight}.")
        self.loss_weight = float(self.loss_weight)
        if self.class_names is not None:
            self.class_names = [str(name) for name in self.class_names]
            expected = 2 if self.head.task == "binary" else self.head.num_outputs
            if self.head.task != "regression" and len(self.class_names) != expected:
                raise ValueError(
                    f"Task {self.name!r} has {len(self.class_names)} class_names for a {self.head.task} head "
                    f"of {expected} classes: give one name per class."
                )

    def get_config(self):
        return {
            "name": self.name,
            "head": self.head.get_config(),
            "loss_weight": self.loss_weight,
            "class_names": self.class_names,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def as_tasks(tasks):
    """A list of `Task`s from a list (or a dict `{name: Head}`), checked: at least one, names unique."""
    if isinstance(tasks, dict):
        tasks = [value if isinstance(value, Task) else Task(name, value) for name, value in tasks.items()]
    tasks = list(tasks or ())
    if not tasks:
        raise ValueError("A multi-task model needs at least one Task, e.g. [Task('sentiment', Head.binary())].")
    for task in tasks:
        if not isinstance(task, Task):
            raise ValueError(f"Expected Task objects, got {task!r}: write Task('name', Head.binary()).")
    names = [task.name for task in tasks]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Task names must be unique; repeated: {', '.join(repeated)}.")
    return tasks


class TaskHeads:
    """The heads of all tasks on one feature vector, in the place of a multi-task model's `Head`.

    It answers what `TransferModel` asks of a head: `pool` (once, for every
    task), `build` (a dict of outputs, one small Keras model per task named
    after it), `loss` and `metrics` (dicts keyed by task name; Keras applies
    them to the output of the same name) and `get_config`.

    Args:
        tasks: the `Task`s.
        pooling: how image features are pooled for all tasks: `"mean"`,
            `"max"` or `"flatten"` (text models pool tokens themselves).
    """

    task = "multitask"
    from_logits = None

    def __init__(self, tasks, pooling="mean"):
        self.tasks = as_tasks(tasks)
        self.pooling = canonical_pooling(pooling)
        if self.pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}.")

    @property
    def names(self):
        return [task.name for task in self.tasks]

    def __getitem__(self, name):
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"No task named {name!r}: the tasks are {', '.join(self.names)}.")

    def pool(self, features):
        """One vector per example for all tasks (a feature map is pooled once)."""
        rank = len(features.shape)
        return features if rank == 2 else global_pooling(self.pooling, rank, name="head_pooling")(features)

    def build(self, features):
        """`{task name: output}`: each task's head, as a Keras model named after the task, on `features`."""
        outputs = {}
        for task in self.tasks:
            inputs = keras.Input(shape=tuple(features.shape[1:]), name=f"{task.name}_features")
            head = keras.Model(inputs, task.head.build(inputs), name=task.name)
            outputs[task.name] = head(features)
        return outputs

    def loss(self):
        """Each task's loss, averaged over that task's examples only (`TASK_LOSS_REDUCTION`)."""
        losses = {}
        for task in self.tasks:
            loss = task.head.loss()
            losses[task.name] = type(loss).from_config({**loss.get_config(), "reduction": TASK_LOSS_REDUCTION})
        return losses

    def loss_weights(self):
        return {task.name: task.loss_weight for task in self.tasks}

    def metrics(self):
        """Each task's metrics; compiled as `weighted_metrics`, so the other tasks' examples (weight 0) do not count."""
        return {task.name: task.head.metrics() for task in self.tasks}

    def __eq__(self, other):
        return isinstance(other, TaskHeads) and other.get_config() == self.get_config()

    def get_config(self):
        return {"tasks": [task.get_config() for task in self.tasks], "pooling": self.pooling}

    @classmethod
    def from_config(cls, config):
        return cls([Task.from_config(task) for task in config["tasks"]], pooling=config.get("pooling", "mean"))
