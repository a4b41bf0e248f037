"""`keras-transfer backbones`: the image backbone registry, or the keras-hub text presets."""

import json

from keras_transfer.cli.common import CommandError

# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer backbones",
    "keras-transfer backbones --family EfficientNet",
    "keras-transfer backbones --text --family BERT",
)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "backbones",
        help="list the backbones in the registry (--text: the keras-hub text presets)",
        description="Lists the image backbones `train --backbone` takes (Keras Applications: family, default "
        "and smallest input size, constructor), or with --text the keras-hub text presets `train-text "
        "--backbone` takes, by family. Local keras-hub preset folders and Hugging Face folders work too.",
    )
    parser.add_argument("--family", help="only this family, e.g. MobileNet (with --text: BERT)")
    parser.add_argument(
        "--text", action="store_true", help="list the keras-hub text backbone presets by family (for train-text)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)
    return parser


def run(args):
    if args.text:
        return _text_backbones(args)
    from keras_transfer.models.image_backbones import list_backbones

    specs = list_backbones(args.family)
    if not specs:
        raise CommandError(f"no backbone family {args.family!r}; run `keras-transfer backbones` for all.")
    if args.json:
        print(json.dumps([spec.__dict__ for spec in specs], indent=2))
        return
    print(f"{'name':<22} {'family':<15} {'default':>7} {'min':>4}  keras.applications")
    for spec in specs:
        print(f"{spec.name:<22} {spec.family:<15} {spec.default_size:>7} {spec.min_size:>4}  {spec.constructor}")
    print(f"{len(specs)} backbones. keras-hub image presets and local preset folders also work as --backbone.")


def _text_backbones(args):
    import textwrap

    from keras_transfer.models.text_backbones import TEXT_BACKBONES, list_text_backbones

    families = list_text_backbones(args.family)
    if not families:
        raise CommandError(f"no text backbone family {args.family!r}; families: {', '.join(TEXT_BACKBONES)}.")
    if args.json:
        print(json.dumps(families, indent=2))
        return
    for family, presets in families.items():
        spec = TEXT_BACKBONES[family]
        pooler = ", with a pooler" if spec.has_pooler else ""
        print(f"{family} (keras_hub.models.{spec.backbone_class}{pooler}): {len(presets)} presets")
        print(
            textwrap.fill(
                "  ".join(presets), width=100, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False
            )
        )
    count = sum(len(presets) for presets in families.values())
    print(
        f"{count} presets in {len(families)} families. Local keras-hub preset folders and Hugging Face "
        "folders (e.g. all-MiniLM-L6-v2) also work as --backbone of train-text."
    )
