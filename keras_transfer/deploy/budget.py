"""Choosing the smallest `.tflite` export whose accuracy stays within a budget."""

import dataclasses
import os
import tempfile
import warnings
from typing import TYPE_CHECKING

from keras_transfer import atomic_files as files
from keras_transfer.deploy.metadata import assets_path, metadata_path
from keras_transfer.deploy.quantization import QUANTIZATION_MODES, Quantization

if TYPE_CHECKING:
    from keras_transfer.deploy.export import ExportResult


BUDGET_CANDIDATES = ("int8", "dynamic", "float16", "none")
# Weight-only int8 with as many layers at int4 as the budget allows (`mixed_precision`): a search of its own,
# among the layers holding the most weights only (one quantization per layer considered).
MIXED_CANDIDATE = "mixed"
MIXED_SEARCH_LAYERS = 12


@dataclasses.dataclass
class BudgetCandidate:
    """One quantization tried by `export_within_budget`, and how it did."""

    quantization: str
    size_bytes: int | None = None
    accuracy_keras: float | None = None
    accuracy_exported: float | None = None
    accuracy_drop: float | None = None
    within_budget: bool = False
    reason: str = ""


@dataclasses.dataclass
class BudgetChoice:
    """What `export_within_budget` wrote, and why."""

    result: "ExportResult"
    chosen: str
    max_accuracy_drop: float
    candidates: list

    def explanation(self):
        """One line per candidate, then the choice."""
        lines = [f"{c.quantization:>8}: {c.reason}" for c in self.candidates]
        lines.append(f"chose {self.chosen}: the smallest file within an accuracy drop of {self.max_accuracy_drop:.4f}.")
        return "\n".join(lines)


def export_within_budget(
    model,
    path,
    eval_data,
    *,
    max_accuracy_drop=0.005,
    representative_data=None,
    num_samples=100,
    candidates=BUDGET_CANDIDATES,
    metadata=None,
    overwrite=False,
    sequence_length=None,
):
    """Exports the smallest `.tflite` whose accuracy on `eval_data` stays within budget.

    Every candidate is exported beside `path`, run in a real LiteRT
    interpreter on all of `eval_data` and compared with the Keras model's
    accuracy on the same examples; of those within `max_accuracy_drop`, the
    smallest file is moved to `path`. float32 (`"none"`) always qualifies
    against itself, so there is always a choice when it is a candidate.

    Args:
        model: a built Keras 3 classifier.
        path: the `.tflite` file to write.
        eval_data: labelled data: a `tf.data.Dataset` of `(x, y)` or `(x, y)` arrays.
        max_accuracy_drop: largest allowed `keras accuracy - exported accuracy`
            (0.005 is half a point).
        representative_data: calibration data for int8 (defaults to `eval_data`;
            pass training data to keep evaluation honest).
        num_samples: int8 calibration examples.
        candidates: quantization modes to try, and `"mixed"` (the `quantizer` extra) for int8 with int4
            where the budget allows (`mixed_precision.export_mixed_precision` among the
            `MIXED_SEARCH_LAYERS` largest layers, chosen on `eval_data`; a search of its own, about a
            dozen quantizations, so asked for, not a default).

    Returns:
        A `BudgetChoice`; `.explanation()` says what each candidate scored.
    """
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"A LiteRT file name must end with '.tflite', got {path!r}.")
    if not 0 <= max_accuracy_drop < 1:
        raise ValueError(f"max_accuracy_drop must be in [0, 1), got {max_accuracy_drop}.")
    candidates = tuple(candidates)
    unknown = [mode for mode in candidates if mode not in (*QUANTIZATION_MODES, MIXED_CANDIDATE)]
    if unknown or not candidates:
        raise ValueError(
            f"Unknown candidates {unknown}; choose from {', '.join((*QUANTIZATION_MODES, MIXED_CANDIDATE))}."
        )
    files.refuse_to_overwrite([path, metadata_path(path), assets_path(path)], overwrite)
    calibration = eval_data if representative_data is None else representative_data
    from keras_transfer.deploy.export import export  # export.py offers this function too

    # The candidates go beside `path`, so the chosen one is renamed, not copied, into place.
    with tempfile.TemporaryDirectory(
        dir=files.parent_folder(path), prefix=".tmp-budget-", ignore_cleanup_errors=True
    ) as folder:
        tried, results = [], {}
        for mode in candidates:
            candidate_path = os.path.join(folder, mode, os.path.basename(path))
            with warnings.catch_warnings():  # a candidate that breaks the model is reported below, as over budget
                warnings.filterwarnings("ignore", message=".* agrees with the Keras model on only")
                if mode == MIXED_CANDIDATE:
                    from keras_transfer.deploy.mixed_precision import export_mixed_precision

                    mixed = export_mixed_precision(
                        model,
                        candidate_path,
                        eval_data,
                        max_accuracy_drop=max_accuracy_drop,
                        max_layers=MIXED_SEARCH_LAYERS,
                        metadata=metadata,
                    )
                    result = mixed.result
                else:
                    result = export(
                        model,
                        candidate_path,
                        quantization=Quantization.calibrated(mode, calibration, num_samples),
                        check_data=eval_data,
                        metadata=metadata,
                        sequence_length=sequence_length,
                    )
            check = result.check
            if check.accuracy_exported is None:
                raise ValueError("export_within_budget needs labelled classification data as eval_data.")
            drop = check.accuracy_keras - check.accuracy_exported
            within = drop <= max_accuracy_drop + 1e-9
            tried.append(
                BudgetCandidate(
                    mode,
                    result.size_bytes,
                    check.accuracy_keras,
                    check.accuracy_exported,
                    drop,
                    within,
                    f"{result.size_bytes / 1e6:.2f} MB, accuracy {check.accuracy_exported:.4f} vs Keras "
                    f"{check.accuracy_keras:.4f} (drop {drop:+.4f}: {'within' if within else 'over'} budget)"
                    + (
                        f"; {len(mixed.int4_layers)} of {len(mixed.sensitivities)} int4-capable layers at int4"
                        if mode == MIXED_CANDIDATE
                        else ""
                    ),
                )
            )
            results[mode] = result
        within = [candidate for candidate in tried if candidate.within_budget]
        if not within:
            raise ValueError(
                "No export stays within the accuracy budget:\n"
                + "\n".join(f"  {c.quantization}: {c.reason}" for c in tried)
                + "\nRaise max_accuracy_drop or add 'none' to the candidates."
            )
        best = min(within, key=lambda candidate: candidate.size_bytes)
        chosen = results[best.quantization]
        # The file, its metadata and its assets replace what was there as a set, or not at all.
        files.replace_together(
            [
                (chosen.path, path),
                (chosen.metadata_path, metadata_path(path)),
                (assets_path(chosen.path), assets_path(path)),
            ]
        )
        chosen.path, chosen.metadata_path = path, metadata_path(path)
        return BudgetChoice(chosen, best.quantization, max_accuracy_drop, tried)
