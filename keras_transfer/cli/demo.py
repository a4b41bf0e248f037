"""`keras-transfer demo`: transfer vs. from-scratch on scikit-learn's digits, offline."""

import json

# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer demo",
    "keras-transfer demo --json",
)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="transfer vs. from-scratch on scikit-learn's handwritten digits (offline, ~1 min)",
        description="Trains a small CNN on the handwritten digits 5-9 (scikit-learn's 1,797 8x8 digits, "
        "shipped with it: nothing is downloaded), transfers its convolutional layers to a classifier of the "
        "digits 0-4 trained on 2 examples per class, and scores it beside the same network trained from "
        "scratch on the same examples, over 8 seeds: each side's mean, standard deviation, min and max, and "
        "the per-seed gap.",
    )
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    parser.set_defaults(run=run)
    return parser


def run(args):
    from keras_transfer.demo import format_demo, run_demo

    result = run_demo(verbose=1)
    print(format_demo(result))
    if args.json:
        print(json.dumps(result))
