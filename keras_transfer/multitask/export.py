"""All tasks of a multi-task model in one export: one output per task, each checked in the LiteRT interpreter.

`keras_transfer.deploy.export.export` writes the file (quantization,
metadata, atomic files, the tokenizer beside a text model's); its outputs
keep the task names (`serving_default` outputs `sentiment`, `spam`). Its
check compares single-output models, so the check here runs the file's
signature in a LiteRT interpreter and compares every task's output with the
Keras model's, as `check_export` does for one.
"""

import numpy as np

from keras_transfer.deploy import litert
from keras_transfer.deploy.checks import ExportCheck
from keras_transfer.deploy.export import export
from keras_transfer.models.task_io import decode_outputs
from keras_transfer.quiet import native_output_silenced


def export_tasks(model, path, *, check_data=None, max_check_examples=None, **options):
    """Exports every task of `model` into one file; given `check_data`, checks each task's output.

    Args:
        model: a `MultiTaskModel`.
        path: a `.tflite` file or a SavedModel folder (`format="saved_model"`).
        check_data: raw inputs, `(inputs, {task: labels})` or
            `{task: (inputs, labels)}` (labels give each task's accuracy);
            checked for `.tflite` files.
        max_check_examples: compare at most this many examples (per task).
        **options: `keras_transfer.export_model`'s options (`quantization`,
            `format`, `overwrite`, `metadata`, ...).

    Returns:
        An `ExportResult` whose `check` is `{task: ExportCheck}` (or None).
    """
    # One output per task, named after it: the tasks (heads, class names) say what each holds.
    metadata = {
        "tasks": [task.get_config() for task in model.tasks],
        "output": model.task_names,
        **(options.pop("metadata", None) or {}),
    }
    result = export(model, path, metadata=metadata, **options)
    if check_data is not None and result.format == "tflite":
        result.check = check_tasks(result.path, model, check_data, max_examples=max_check_examples)
    return result


def check_tasks(path, model, data, *, max_examples=None, batch_size=32):
    """`{task: ExportCheck}`: the `.tflite` file at `path` against `model`, output by output."""
    checks = {}
    for name, inputs, labels in _task_inputs(model, data):
        graph_inputs = model.model_inputs(inputs)
        rows = (
            litert.num_rows(graph_inputs) if max_examples is None else min(max_examples, litert.num_rows(graph_inputs))
        )
        graph_inputs = litert.take_rows(graph_inputs, slice(0, rows))
        keras_outputs = model.predict(graph_inputs, batch_size=batch_size, verbose=0)
        exported_outputs = _run_file(path, graph_inputs, batch_size)
        for task in model.tasks:
            if name is None or task.name == name:
                task_labels = None if labels is None else np.asarray(labels[task.name] if name is None else labels)
                checks[task.name] = _compare(
                    task.head,
                    np.asarray(keras_outputs[task.name]),
                    exported_outputs[task.name],
                    None if task_labels is None else task_labels[:rows],
                )
    return checks


def _task_inputs(model, data):
    """`(task name or None for all, inputs, labels)` groups of the check data."""
    if isinstance(data, dict):
        return [(name, *data[name]) for name in model.task_names if name in data]
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], dict):
        return [(None, data[0], data[1])]
    return [(None, data, None)]


def _run_file(path, inputs, batch_size):
    """`{output name: array}` of the file's `serving_default` signature over every row of `inputs`."""
    with native_output_silenced():
        interpreter = litert.interpreter_class()(model_path=path)
        interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()
    input_details = runner.get_input_details()
    output_details = runner.get_output_details()
    outputs = {}
    for start in range(0, litert.num_rows(inputs), batch_size):
        batch = litert.named_inputs(litert.take_rows(inputs, slice(start, start + batch_size)), list(input_details))
        quantized = {name: litert._quantize(value, input_details[name]) for name, value in batch.items()}
        for name, value in runner(**quantized).items():
            outputs.setdefault(name, []).append(litert._dequantize(np.asarray(value), output_details[name]))
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def _compare(head, keras_outputs, exported_outputs, labels):
    keras_outputs = keras_outputs.reshape(len(keras_outputs), -1).astype("float32")
    exported_outputs = exported_outputs.reshape(len(exported_outputs), -1).astype("float32")
    check = ExportCheck(
        num_examples=len(keras_outputs),
        max_abs_difference=float(np.max(np.abs(keras_outputs - exported_outputs), initial=0.0)),
    )
    if head.task in ("multiclass", "binary"):
        keras_classes = decode_outputs(keras_outputs, head).classes
        exported_classes = decode_outputs(exported_outputs, head).classes
        check.top1_agreement = float(np.mean(keras_classes == exported_classes))
        if labels is not None:
            labels = labels.reshape(-1)
            check.accuracy_keras = float(np.mean(keras_classes == labels))
            check.accuracy_exported = float(np.mean(exported_classes == labels))
    return check
