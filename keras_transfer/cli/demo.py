"""`keras-transfer demo`: transfer vs. from-scratch on scikit-learn's digits, offline."""

import json


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="transfer vs. from-scratch on scikit-learn's handwritten digits (offline, ~1 min)",
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
