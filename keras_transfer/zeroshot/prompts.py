"""Prompts for zero-shot classes: a class's name or descriptions put into one or more templates.

Kept free of TensorFlow so that the command line checks its options before
any model loads.
"""

import numpy as np

# Sentence-embedding models place "This text is about sports." near sentences about sports.
DEFAULT_TEMPLATE = "This text is about {}."
# The wording CLIP's authors used for ImageNet class names.
DEFAULT_IMAGE_TEMPLATE = "a photo of a {}."
PLACEHOLDER = "{}"


def class_prompts(class_names, template=DEFAULT_TEMPLATE, descriptions=None):
    """The prompts of each class: every description (or the name) in every template.

    Args:
        class_names: at least two distinct class names, in the order of the
            model's outputs.
        template: a string with one `{}` where the class's name or
            description goes, or a list of such strings (a prompt ensemble:
            the class vector is then the mean of the prompts' embeddings).
            `"{}"` uses names and descriptions as they are.
        descriptions: optional `{class name: description or list of
            descriptions}`; a class with descriptions is described by them
            instead of by its name (e.g. `{"spam": "an advertisement or a
            prize offer"}`).

    Returns:
        One list of prompts per class.

    Raises:
        ValueError: fewer than two classes, repeated or empty names, a
            template without `{}`, or descriptions of unknown classes.

    Example:
    >>> class_prompts(["ham", "spam"], descriptions={"spam": "an advertisement"})
    [['This text is about ham.'], ['This text is about an advertisement.']]
    """
    if isinstance(class_names, str) or class_names is None:
        raise ValueError(f"class_names must be a list of at least 2 names, got {class_names!r}.")
    names = [str(name) for name in class_names]
    if len(names) < 2:
        raise ValueError(
            f"Zero-shot classification needs at least 2 classes to choose between, got {names}: give more class names."
        )
    if any(not name.strip() for name in names):
        raise ValueError(f"Class names must not be empty, got {names}.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Class names must be distinct: {repeated} appear more than once.")
    templates = _templates(template)
    described = _descriptions(descriptions, names)
    return [
        [form.replace(PLACEHOLDER, text) for form in templates for text in described.get(name, [name])]
        for name in names
    ]


def class_vectors(embeddings, prompts):
    """One vector per class: the mean of its prompts' unit-length embeddings.

    Args:
        embeddings: `(total prompts, features)`, the prompts of every class
            in order (as `class_prompts` lists them, flattened).
        prompts: the per-class prompt lists.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    expected = sum(len(group) for group in prompts)
    if embeddings.ndim != 2 or len(embeddings) != expected:
        raise ValueError(f"Expected {expected} prompt embeddings (one row each), got shape {embeddings.shape}.")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.maximum(norms, 1e-12)
    bounds = np.cumsum([0] + [len(group) for group in prompts])
    return np.stack([unit[start:end].mean(axis=0) for start, end in zip(bounds[:-1], bounds[1:])])


def _templates(template):
    templates = [template] if isinstance(template, str) else list(template or [])
    if not templates:
        raise ValueError(f"Give at least one template, such as {DEFAULT_TEMPLATE!r}.")
    for form in templates:
        if not isinstance(form, str) or form.count(PLACEHOLDER) != 1:
            raise ValueError(
                f"The template {form!r} must hold {PLACEHOLDER} exactly once, where the class name goes: "
                f"e.g. {DEFAULT_TEMPLATE!r} (or {PLACEHOLDER!r} for the names as they are)."
            )
    return templates


def _descriptions(descriptions, names):
    if not descriptions:
        return {}
    unknown = [key for key in descriptions if str(key) not in names]
    if unknown:
        raise ValueError(f"Descriptions were given for {unknown}, which are not among the classes {names}.")
    described = {}
    for key, value in descriptions.items():
        texts = [value] if isinstance(value, str) else list(value)
        if not texts or any(not isinstance(text, str) or not text.strip() for text in texts):
            raise ValueError(f"The descriptions of class {key!r} must be non-empty strings, got {value!r}.")
        described[str(key)] = [text.strip() for text in texts]
    return described
