"""Text cleaning with tf.strings ops, so it runs inside the tf.data graph."""

import tensorflow as tf

# Removal steps put a space where the removed text was, so words never merge;
# "collapse_whitespace" tidies up afterwards.
_REMOVAL_PATTERNS = {
    "remove_urls": r"(?:https?://|www\.)\S+",
    "remove_punctuation": r"[\pP\pS]+",
    "remove_numbers": r"[0-9]+",
}
# Escaped characters are text ("&lt;#&gt;" is SMS spam's "<#>"), so the common
# entities are decoded; other entities become a space. "&amp;" is decoded last,
# through a placeholder, so that "&amp;lt;" stays the literal text "&lt;".
_HTML_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&#39;", "'"), ("&nbsp;", " "))
_AMPERSAND_PLACEHOLDER = "\ue000"  # a private-use character, absent from real text


def _strip_html(texts):
    texts = tf.strings.regex_replace(texts, r"<[^>]*>", " ")
    texts = tf.strings.regex_replace(texts, "&amp;", _AMPERSAND_PLACEHOLDER)
    for entity, character in _HTML_ENTITIES:
        texts = tf.strings.regex_replace(texts, entity, character)
    texts = tf.strings.regex_replace(texts, r"&(?:[a-zA-Z]+|#[0-9]+|#x[0-9a-fA-F]+);", " ")
    return tf.strings.regex_replace(texts, _AMPERSAND_PLACEHOLDER, "&")


CLEANING_STEPS = (
    "lower",
    "strip_html",
    "remove_urls",
    "remove_punctuation",
    "remove_numbers",
    "remove_stopwords",
    "collapse_whitespace",
)


def _stopword_pattern():
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # slow to import

    # Longest first, so "others" is removed whole rather than leaving "s".
    words = sorted(ENGLISH_STOP_WORDS, key=lambda word: (-len(word), word))
    return r"(?i)\b(?:" + "|".join(words) + r")\b"


class TextCleaner:
    """Cleans text with `tf.strings` ops, in the order the steps are given.

    Steps: "lower" (Unicode lower case), "strip_html" (tags removed, the
    common entities such as `&lt;` and `&amp;` decoded, others removed),
    "remove_urls", "remove_punctuation" (Unicode punctuation and symbols),
    "remove_numbers", "remove_stopwords" (scikit-learn's English list, any
    case) and "collapse_whitespace" (runs of whitespace become one space, ends
    are stripped). Removal steps leave a space where they removed something,
    so end with "collapse_whitespace" for tidy text.

    Works on a tf.string tensor of any shape (inside `tf.data` or a
    `tf.function` too), a Python string, or a list of Python strings.

    Args:
        steps: A step name or a list of step names.

    Raises:
        ValueError: for an unknown step name.

    Example:
        >>> cleaner = TextCleaner(["strip_html", "lower", "collapse_whitespace"])
        >>> cleaner("<b>Hello</b>  World ")
        'hello world'
    """

    def __init__(self, steps):
        steps = [steps] if isinstance(steps, str) else list(steps)
        unknown = [step for step in steps if step not in CLEANING_STEPS]
        if unknown:
            raise ValueError(f"unknown cleaning step(s) {unknown}. Valid steps: {', '.join(CLEANING_STEPS)}.")
        self.steps = steps
        self._stopwords = _stopword_pattern() if "remove_stopwords" in steps else None

    def _apply(self, texts):
        for step in self.steps:
            if step == "lower":
                texts = tf.strings.lower(texts, encoding="utf-8")
            elif step == "strip_html":
                texts = _strip_html(texts)
            elif step == "collapse_whitespace":
                texts = tf.strings.regex_replace(texts, r"[\s\p{Z}]+", " ")  # NBSP too
                texts = tf.strings.strip(texts)
            else:
                pattern = self._stopwords if step == "remove_stopwords" else _REMOVAL_PATTERNS[step]
                texts = tf.strings.regex_replace(texts, pattern, " ")
        return texts

    def __call__(self, texts):
        if isinstance(texts, str):
            return self._apply(tf.constant(texts)).numpy().decode("utf-8")
        if isinstance(texts, (list, tuple)):
            cleaned = self._apply(tf.constant(list(texts), dtype=tf.string)).numpy()
            return [text.decode("utf-8") for text in cleaned]
        return self._apply(texts)

    def get_config(self):
        return {"steps": list(self.steps)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"TextCleaner({self.steps!r})"


def resolve_cleaner(clean):
    """Accept None, a step name, a list of step names or a callable."""
    if clean is None or callable(clean):
        return clean
    return TextCleaner(clean)
