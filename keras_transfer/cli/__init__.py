"""The `keras-transfer` command line: one module per command, each with `add_parser` and `run`.

The commands parse options, call the library and print; defaults and choices
come from the library (`keras_transfer.finetune.recipes` and the constants of
`data`, `models` and `deploy`), never from copies here.
"""

import argparse
import sys

from keras_transfer.cli import backbones, demo, evaluate, export, optimize, predict, train, train_text
from keras_transfer.cli.common import CommandError

EXIT_BAD_INPUT = 2
COMMANDS = (backbones, train, train_text, evaluate, predict, export, optimize, demo)

__all__ = ["COMMANDS", "CommandError", "EXIT_BAD_INPUT", "build_parser", "main"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-transfer",
        description="Transfer learning on Keras 3: pretrained backbones, new heads, two-phase fine-tuning, evaluation.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except CommandError as error:
        print(f"keras-transfer {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
