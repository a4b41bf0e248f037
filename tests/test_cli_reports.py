"""report.json holds what repeats a run, and `--config report.json` repeats it."""

import json

import pytest
from helpers import TINY_TRAIN_OPTIONS

from keras_transfer.cli import EXIT_BAD_INPUT, build_parser, main
from keras_transfer.cli.common import expand_config, run_settings


def parsed(argv):
    args = build_parser().parse_args(argv)
    return args.command_parser, args


def test_the_command_line_holds_every_option_with_a_value_and_names_the_defaults():
    parser, args = parsed(
        ["train", "photos", "--backbone", "mobilenet_v2", "--no-cache-features", "--head-epochs", "3",
         "--output", "runs/a", "--json", "--overwrite"]
    )  # fmt: skip
    command_line, defaults_used = run_settings(parser, args)
    assert command_line[:2] == ["train", "photos"]
    assert command_line[command_line.index("--head-epochs") + 1] == "3"
    assert "--no-cache-features" in command_line
    # Defaults with a value are written out, so a later version's defaults do not change the run.
    assert command_line[command_line.index("--seed") + 1] == "1337" and "--weights" in command_line
    # What changes no result is left out.
    assert "--json" not in command_line and "--overwrite" not in command_line
    assert "--seed" in defaults_used and "--finetune-epochs" in defaults_used and "--head-epochs" not in defaults_used
    # The command line parses back to the same settings.
    again = build_parser().parse_args(command_line)
    assert {key: value for key, value in vars(again).items() if key not in ("json", "overwrite", "command_parser")} == {
        key: value for key, value in vars(args).items() if key not in ("json", "overwrite", "command_parser")
    }


def test_config_puts_the_recorded_command_line_first_so_given_options_replace_it(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"command_line": ["train", "photos", "--seed", "1", "--output", "runs/a"]}))
    expanded = expand_config(["--debug", "train", "--config", str(report), "--output", "runs/b"])
    assert expanded == ["--debug", "train", "photos", "--seed", "1", "--output", "runs/a", "--output", "runs/b"]
    assert build_parser().parse_args([*expanded, "--backbone", "x"]).output == "runs/b"
    assert expand_config(["train", f"--config={report}"])[:2] == ["train", "photos"]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read it as a report.json"),
        ("not json", "cannot read it as a report.json"),
        (json.dumps({"val_accuracy": 0.9}), "has no command line to repeat"),
        (json.dumps({"command_line": ["train-text", "reviews.csv"]}), "was written by `keras-transfer train-text`"),
    ],
)
def test_a_report_that_cannot_be_repeated_is_a_usage_error(tmp_path, capsys, content, message):
    report = tmp_path / "report.json"
    if content is not None:
        report.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(report), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_a_run_repeated_from_its_report_gives_the_same_result(make_image_folder, tmp_path, capsys):
    images = make_image_folder(per_class=5, size=32)
    first, second = tmp_path / "first", tmp_path / "second"
    options = [*TINY_TRAIN_OPTIONS, "--head-epochs", "2"]
    assert (
        main(["train", images, "--val-split", "0.4", *options, "--finetune-epochs", "1", "--output", str(first)]) == 0
    )
    report = json.loads((first / "report.json").read_text())
    assert report["seed"] == 1337 and report["batch_size"] == 32
    assert report["data"]["train"] == {"examples": 6, "class_counts": {"cats": 3, "dogs": 3}}
    assert report["data"]["validation"] == {"examples": 4, "class_counts": {"cats": 2, "dogs": 2}}
    versions = report["environment"]["versions"]
    assert {"python", "keras_transfer", "tensorflow", "keras", "numpy"} <= set(versions)
    assert report["recipe"]["head_epochs"] == 2 and report["recipe"]["finetune_learning_rate"] == 1e-5
    assert report["train_accuracy_last_epoch"] is not None
    capsys.readouterr()
    assert main(["train", "--config", str(first / "report.json"), "--output", str(second)]) == 0
    repeated = json.loads((second / "report.json").read_text())
    assert repeated["command_line"] == [*report["command_line"][:-1], str(second)]
    assert repeated["history"]["loss"] == pytest.approx(report["history"]["loss"], rel=1e-5)
    assert repeated["val_accuracy"] == report["val_accuracy"]
