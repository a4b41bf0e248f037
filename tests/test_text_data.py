"""Tests for the text loaders of keras_transfer.data (tiny generated files, plus the real text assets)."""

import os
import sys

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

import keras_transfer as kt
from keras_transfer import data, errors
from keras_transfer.data import DataError, TextCleaner, sequence_length, text_cleaning, text_files, text_lists
from keras_transfer.data import tfds as tfds_data

# --------------------------------------------------------------------------
# Helpers.


def write(path, text):
    """Write `text` to `path` as UTF-8 (newlines kept as given); returns str."""
    with open(path, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    return str(path)


def all_batches(dataset):
    """Every (text, label) of a dataset: a list of str and a numpy array."""
    texts, labels = [], []
    for batch_texts, batch_labels in dataset:
        texts += [text.decode("utf-8") for text in batch_texts.numpy()]
        labels.append(batch_labels.numpy())
    return texts, np.concatenate(labels)


REVIEWS_CSV = (
    "review,sentiment\n"
    "great film,pos\n"
    '"long, slow, dull",neg\n'
    '"a ""classic"" ending\nover two lines",pos\n'
    "\n"
    "fine acting,pos\n"
    "bad plot,neg\n"
)


def tiny_vocabulary_tokenizer():
    words = ["the", "cat", "sat", "on", "mat", "a", "dog"]
    return keras_hub.models.BertTokenizer(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])


# --------------------------------------------------------------------------
# text_file


def test_text_file_csv_batches_and_attributes(tmp_path):
    path = write(tmp_path / "reviews.csv", REVIEWS_CSV)
    dataset = data.text_file(path, text_column="review", label_column="sentiment", batch_size=4)

    assert isinstance(dataset, tf.data.Dataset)
    texts, labels = next(iter(dataset))
    assert texts.shape == (4,) and texts.dtype == tf.string
    assert labels.shape == (4,) and labels.dtype == tf.int32
    assert dataset.class_names == ["neg", "pos"] and dataset.num_classes == 2
    assert dataset.num_examples == 5 and dataset.skipped_files == []
    assert dataset.cardinality().numpy() == 2  # known: real progress bars

    by_text = dict(zip(*all_batches(dataset)))
    assert by_text == {
        "great film": 1,
        "long, slow, dull": 0,  # CSV quoting keeps the commas
        'a "classic" ending\nover two lines': 1,  # and the newline
        "fine acting": 1,
        "bad plot": 0,
    }


def test_text_file_tsv_keeps_quote_characters(tmp_path):
    path = write(
        tmp_path / "quotes.tsv",
        'label\ttext\nham\t"Hi" he said\nspam\tWIN "big\nham\tok"\n',
    )
    dataset = data.text_file(path, text_column="text", label_column="label")
    texts, _ = all_batches(dataset)
    # csv quoting would have merged the last two rows at the unmatched quote.
    assert sorted(texts) == ['"Hi" he said', 'WIN "big', 'ok"']


def test_text_file_delimiter_sniffing_and_int_columns(tmp_path):
    # No extension: a tab in the first line means TSV; no header with int columns.
    no_header = write(tmp_path / "spam", "ham\thello there\nspam\tfree prize, call now\n")
    dataset = data.text_file(no_header, text_column=1, label_column=0)
    assert dataset.num_examples == 2 and dataset.class_names == ["ham", "spam"]
    assert sorted(all_batches(dataset)[0]) == ["free prize, call now", "hello there"]

    semicolons = write(tmp_path / "reviews.txt", "text;label\nnice;1\nmeh;0\nawful;0\n")
    dataset = data.text_file(semicolons, text_column="text", label_column="label")
    assert dataset.num_examples == 3 and dataset.class_names == ["0", "1"]

    # header=True skips a header even when the columns are given by index.
    dataset = data.text_file(semicolons, text_column=0, label_column=1, header=True)
    assert dataset.num_examples == 3
    # "auto" + ints: a first row whose label is no label is a header, with a warning.
    with pytest.warns(UserWarning, match=r"first row .* as a header: its label 'label' is not a number"):
        dataset = data.text_file(semicolons, text_column=0, label_column=1, delimiter=";")
    assert dataset.class_names == ["0", "1"] and dataset.num_examples == 3
    dataset = data.text_file(semicolons, text_column=0, label_column=1, delimiter=";", header=False)
    assert dataset.class_names == ["0", "1", "label"]


def test_text_file_validation_file(tmp_path):
    train_path = write(tmp_path / "train.csv", REVIEWS_CSV)
    validation_path = write(tmp_path / "val.csv", "review,sentiment\nlovely,pos\nboring,neg\nsuperb,pos\n")
    train, validation = data.text_file(
        train_path,
        text_column="review",
        label_column="sentiment",
        validation_file=validation_path,
        batch_size=2,
    )
    assert (train.num_examples, validation.num_examples) == (5, 3)
    assert validation.class_names == train.class_names == ["neg", "pos"]
    texts, labels = all_batches(validation)
    assert texts == ["lovely", "boring", "superb"]  # never shuffled
    assert labels.tolist() == [1, 0, 1]


def test_text_file_validation_split_is_seeded_and_disjoint(tmp_path):
    rows = "".join(f"text number {i},{'ab'[i % 2]}\n" for i in range(20))
    path = write(tmp_path / "numbers.csv", "text,label\n" + rows)

    def load(**kwargs):
        return data.text_file(
            path,
            text_column="text",
            label_column="label",
            validation_split=0.25,
            **kwargs,
        )

    train, validation = load()
    assert (train.num_examples, validation.num_examples) == (15, 5)
    train_texts, _ = all_batches(train)
    validation_texts, _ = all_batches(validation)
    assert not set(train_texts) & set(validation_texts)
    assert len(set(train_texts) | set(validation_texts)) == 20

    # Same seed, same split and the same first-epoch order.
    train_again, validation_again = load()
    assert all_batches(train_again)[0] == train_texts
    assert all_batches(validation_again)[0] == validation_texts
    assert all_batches(load(seed=7)[1])[0] != validation_texts
    # Training data is reshuffled every epoch, validation data is not.
    assert all_batches(train)[0] != train_texts
    assert all_batches(validation)[0] == validation_texts

    # shuffle=False holds out the last rows of each class, in file order: the
    # 5 held out are 2.5 per class, and the one left over goes to the first class.
    _, last = load(shuffle=False)
    assert all_batches(last)[0] == [f"text number {i}" for i in (14, 16, 17, 18, 19)]


def test_text_file_max_examples_is_a_random_subset(tmp_path):
    # Sorted by class: the first 20 rows are all "a".
    rows = [f"alpha {i},a\n" for i in range(30)] + [f"beta {i},b\n" for i in range(30)]
    path = write(tmp_path / "sorted.csv", "text,label\n" + "".join(rows))
    dataset = data.text_file(path, text_column="text", label_column="label", max_examples=20)
    assert dataset.num_examples == 20 and dataset.class_names == ["a", "b"]
    texts, labels = all_batches(dataset)
    assert len(texts) == 20 and set(labels.tolist()) == {0, 1}
    again = data.text_file(path, text_column="text", label_column="label", max_examples=20, shuffle=False)
    assert sorted(all_batches(again)[0]) == sorted(texts)  # same seeded subset


def test_text_file_multi_label_and_regression(tmp_path):
    path = write(
        tmp_path / "news.csv",
        "text,topics,score,votes\n"
        "rates rise,economy|politics,0.5,10\n"
        "cup final,sports,1.5,3\n"
        "budget vote,politics,-2,7\n",
    )
    multi = data.text_file(
        path,
        text_column="text",
        label_column="topics",
        label_mode="multi_label",
        label_separator="|",
        shuffle=False,
    )
    texts, labels = next(iter(multi))
    assert labels.dtype == tf.float32 and labels.shape == (3, 3)
    assert multi.class_names == ["economy", "politics", "sports"]
    assert multi.num_classes == 3
    assert labels.numpy().tolist() == [[1, 1, 0], [0, 0, 1], [0, 1, 0]]

    one = data.text_file(
        path,
        text_column="text",
        label_column="score",
        label_mode="regression",
        shuffle=False,
    )
    _, targets = next(iter(one))
    assert targets.dtype == tf.float32 and targets.numpy().tolist() == [0.5, 1.5, -2.0]
    assert one.class_names is None and one.num_classes == 1

    two = data.text_file(
        path,
        text_column="text",
        label_column=["score", "votes"],
        label_mode="regression",
        shuffle=False,
    )
    _, targets = next(iter(two))
    assert targets.shape == (3, 2) and two.num_classes == 2
    assert targets.numpy()[:, 1].tolist() == [10, 3, 7]


def test_class_names_order_and_integer_labels(tmp_path):
    path = write(tmp_path / "stars.tsv", "stars\ttext\n10\tsuperb\n2\tpoor\n1\tawful\n2\tmeh\n")
    dataset = data.text_file(path, text_column="text", label_column="stars", shuffle=False)
    assert dataset.class_names == ["1", "2", "10"]  # numeric, not "1" < "10" < "2"
    assert all_batches(dataset)[1].tolist() == [2, 1, 0, 1]

    # Integer labels that are not class names index into class_names.
    binary = write(tmp_path / "sst.tsv", "label\tsentence\n0\tdull\n1\tfun\n")
    dataset = data.text_file(
        binary,
        text_column="sentence",
        label_column="label",
        class_names=["negative", "positive"],
        shuffle=False,
    )
    assert dataset.class_names == ["negative", "positive"]
    assert all_batches(dataset)[1].tolist() == [0, 1]

    # Given class_names fix the order, and may list classes without examples.
    dataset = data.text_file(
        binary,
        text_column="sentence",
        label_column="label",
        class_names=["1", "0", "2"],
        shuffle=False,
    )
    assert dataset.num_classes == 3 and all_batches(dataset)[1].tolist() == [1, 0]


def test_clean_runs_in_the_pipeline(tmp_path):
    path = write(tmp_path / "html.csv", "text,label\n<b>Great</b>   FILM!,pos\nBad.,neg\n")
    dataset = data.text_file(
        path,
        text_column="text",
        label_column="label",
        clean=["strip_html", "lower", "remove_punctuation", "collapse_whitespace"],
        shuffle=False,
    )
    assert all_batches(dataset)[0] == ["great film", "bad"]


# --------------------------------------------------------------------------
# Errors, each raised before any training.


def error_message(call):
    with pytest.raises(DataError) as caught:
        call()
    return str(caught.value)


def test_empty_text_names_the_file_line(tmp_path):
    # Line 4: the header and a two-line quoted text come first.
    path = write(tmp_path / "train.csv", 'text,label\n"two\nlines",a\n   ,b\nok,a\n')
    message = error_message(lambda: data.text_file(path, text_column="text", label_column="label"))
    assert f"line 4 of {path!r} has an empty text" in message
    assert "remove the row or fill in its text" in message

    tsv = write(tmp_path / "train.tsv", "label\ttext\na\tfine\n\nb\t\n")
    message = error_message(lambda: data.text_file(tsv, text_column="text", label_column="label"))
    assert f"line 4 of {tsv!r} has an empty text" in message  # blank line 3 counts


def test_empty_text_in_a_list_names_the_index():
    message = error_message(lambda: data.from_texts(["fine", "good", " \t"], [0, 1, 0]))
    assert message.startswith("texts[2] has an empty text")
    message = error_message(lambda: data.from_texts(["fine", "good"], [0, 1], validation_data=(["ok", ""], [0, 1])))
    assert message.startswith("validation texts[1] has an empty text")


def test_unseen_validation_label(tmp_path):
    train = write(tmp_path / "train.csv", REVIEWS_CSV)
    validation = write(tmp_path / "val.csv", "review,sentiment\nnice,pos\nodd,neutral\n")
    message = error_message(
        lambda: data.text_file(
            train,
            text_column="review",
            label_column="sentiment",
            validation_file=validation,
        )
    )
    assert (
        f"line 3 of {validation!r} has label 'neutral', which is not in the training classes ['neg', 'pos']" in message
    )
    assert "pass class_names= listing every class" in message

    message = error_message(lambda: data.from_texts(["a b", "c d"], ["x", "y"], validation_data=(["e f"], ["z"])))
    assert "validation texts[0] has label 'z'" in message and "['x', 'y']" in message


def test_label_not_in_given_class_names(tmp_path):
    message = error_message(lambda: data.from_texts(["a b", "c d"], ["x", "q"], class_names=["x", "y"]))
    assert "texts[1] has label 'q', which is not in class_names ['x', 'y']" in message


def test_missing_column_lists_available_columns(tmp_path):
    path = write(tmp_path / "reviews.csv", REVIEWS_CSV)
    message = error_message(lambda: data.text_file(path, text_column="text", label_column="sentiment"))
    assert "column(s) ['text'] not found" in message
    assert "available columns: ['review', 'sentiment']" in message
    assert "header=False" in message


def test_single_class(tmp_path):
    path = write(tmp_path / "one.csv", "text,label\nhi there,a\nbye now,a\n")
    message = error_message(lambda: data.text_file(path, text_column="text", label_column="label"))
    assert "need at least 2 classes for classification" in message
    assert f"file {path!r} has 1: ['a']" in message


def test_empty_files(tmp_path):
    empty = write(tmp_path / "empty.csv", "\n\n")
    message = error_message(lambda: data.text_file(empty, text_column="text", label_column="label"))
    assert f"file {empty!r} is empty" in message
    header_only = write(tmp_path / "header.csv", "text,label\n")
    message = error_message(lambda: data.text_file(header_only, text_column="text", label_column="label"))
    assert "has a header but no data rows" in message
    message = error_message(lambda: data.from_texts([], []))
    assert "the texts list has no examples" in message


def test_text_column_that_is_not_text(tmp_path):
    path = write(tmp_path / "swapped.csv", "text,label\nnice film,1\ndull film,0\n")
    message = error_message(lambda: data.text_file(path, text_column="label", label_column="text"))
    assert "are all numbers (e.g. '1')" in message
    assert "did you swap the text and label columns?" in message

    message = error_message(lambda: data.from_texts(["fine", 3.5, "ok"], [0, 1, 0]))
    assert "texts[1] has a float 3.5 where a text belongs" in message


@pytest.mark.parametrize("split", [0, 1, 1.5, -0.2])
def test_validation_split_out_of_range(tmp_path, split):
    # Checked before the file is even read.
    message = error_message(
        lambda: data.text_file(
            tmp_path / "nope.csv",
            text_column="t",
            label_column="l",
            validation_split=split,
        )
    )
    assert "between 0 and 1" in message and "validation_split=0.2" in message
    with pytest.raises(DataError, match="between 0 and 1"):
        data.from_texts(["a b", "c d"], [0, 1], validation_split=split)


@pytest.mark.parametrize(
    "content, kwargs, expected",
    [
        (None, {}, "does not exist: check the path"),
        (
            "text,label\nhi,a\nyo\n",
            {},
            "line 3 of .* has 1 field\\(s\\) but the columns need 2",
        ),
        ("text,label\nhi,a\nyo,\n", {}, "line 3 of .* has no label"),
        (
            "text,label\nhi,a\nyo,b\n",
            {"header": False},
            r"column names \['text', 'label'\] need a header row",
        ),
        (
            "text,label\nhi,a\nyo,b\n",
            {"validation_split": 0.2, "validation_file": "x.csv"},
            "either validation_split or separate validation data",
        ),
        (
            "text,label\nhi,a\nyo,b\n",
            {"label_separator": "|"},
            "label_separator only applies to label_mode='multi_label'",
        ),
        (
            "text,label\nhi,a\nyo,b\n",
            {"label_mode": "multi_label"},
            "needs label_separator",
        ),
        (
            "text,label\nhi,a\nyo,b\n",
            {"label_mode": "regression"},
            "which is not a number",
        ),
        ("text,label\nhi,a\nyo,b\n", {"validation_split": 0.2}, "leaves no validation"),
        ("text,label\nhi,a\nyo,b\n", {"max_examples": 0}, "max_examples must be"),
    ],
)
def test_text_file_errors(tmp_path, content, kwargs, expected):
    path = tmp_path / "data.csv"
    if content is not None:
        write(path, content)
    with pytest.raises(DataError, match=expected):
        data.text_file(path, text_column="text", label_column="label", **kwargs)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncafé,a\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text.*save it as UTF-8"):
        data.text_file(path, text_column="text", label_column="label")


def test_unknown_clean_step_fails_before_reading(tmp_path):
    with pytest.raises(ValueError, match="Valid steps: lower, strip_html, remove_urls"):
        data.text_file(
            tmp_path / "nope.csv",
            text_column="t",
            label_column="l",
            clean=["lowercase"],
        )


# --------------------------------------------------------------------------
# TextCleaner


@pytest.mark.parametrize(
    "step, text, expected",
    [
        ("lower", "ÉCOLE Big", "école big"),
        ("strip_html", "a<br/>b&copy;<i>c</i>", "a b c"),
        # Escaped characters are text: SMS spam writes numbers as "&lt;#&gt;".
        ("strip_html", "call &lt;#&gt; now &amp; then &amp;lt;", "call <#> now & then &lt;"),
        ("remove_urls", "see https://x.org/a?b=1 or www.y.com now", "see or now"),
        ("remove_punctuation", "wow!!! it's £5,ok?", "wow it s 5 ok"),
        ("remove_numbers", "room 101 in 2024", "room in"),
        ("remove_stopwords", "The cat is on THE mat", "cat mat"),
        ("collapse_whitespace", "  a \t b\n\nc\u00a0d  ", "a b c d"),
    ],
)
def test_cleaning_steps(step, text, expected):
    cleaned = TextCleaner([step])(text)
    # Removal steps leave spaces, so words never merge ("a b", not "ab").
    assert " ".join(cleaned.split()) == expected
    if step == "collapse_whitespace":
        assert cleaned == expected


def test_cleaner_order_inputs_and_config():
    html_first = TextCleaner(["strip_html", "remove_punctuation", "collapse_whitespace"])
    punctuation_first = TextCleaner(["remove_punctuation", "strip_html", "collapse_whitespace"])
    assert html_first("<b>hi</b>") == "hi"
    assert punctuation_first("<b>hi</b>") == "b hi b"  # the tags lost their <>

    cleaner = TextCleaner(["lower", "collapse_whitespace"])
    assert cleaner(["  A  B ", "C"]) == ["a b", "c"]
    tensor = cleaner(tf.constant([["X  Y"], ["Z"]]))
    assert tensor.shape == (2, 1) and tensor.numpy()[0, 0] == b"x y"
    in_graph = tf.function(cleaner)(tf.constant(["Q  R"]))
    assert in_graph.numpy().tolist() == [b"q r"]

    assert cleaner.get_config() == {"steps": ["lower", "collapse_whitespace"]}
    clone = TextCleaner.from_config(cleaner.get_config())
    assert clone.steps == cleaner.steps and "TextCleaner" in repr(clone)
    assert TextCleaner("lower")("AB") == "ab"

    with pytest.raises(ValueError, match=r"unknown cleaning step\(s\) \['stem'\]"):
        TextCleaner(["lower", "stem"])


def test_clean_accepts_a_cleaner_or_a_function():
    texts, labels = ["One  Two", "Three"], ["a", "b"]
    dataset = data.from_texts(texts, labels, clean=TextCleaner("lower"), shuffle=False)
    assert all_batches(dataset)[0] == ["one  two", "three"]
    dataset = data.from_texts(texts, labels, clean=tf.strings.upper, shuffle=False)
    assert all_batches(dataset)[0] == ["ONE  TWO", "THREE"]


# --------------------------------------------------------------------------
# from_texts and from_pandas


def test_from_texts_labels():
    texts = ["good", "bad", "great", "awful"]
    dataset = data.from_texts(texts, ["pos", "neg", "pos", "neg"], shuffle=False)
    assert dataset.class_names == ["neg", "pos"]
    assert all_batches(dataset)[1].tolist() == [1, 0, 1, 0]

    # Int labels are values (each a class) ...
    dataset = data.from_texts(np.array(texts), np.array([3, 5, 3, 5]), shuffle=False)
    assert dataset.class_names == ["3", "5"]
    assert all_batches(dataset)[1].tolist() == [0, 1, 0, 1]
    # ... or, with class_names, indices into them.
    dataset = data.from_texts(texts, [1, 0, 1, 0], class_names=["negative", "positive"], shuffle=False)
    assert dataset.class_names == ["negative", "positive"]
    assert all_batches(dataset)[1].tolist() == [1, 0, 1, 0]

    with pytest.raises(DataError, match="float label 0.5.*label_mode='regression'"):
        data.from_texts(texts, [0.5, 1.0, 0.0, 1.0])
    with pytest.raises(DataError, match="got 4 texts but 3 labels"):
        data.from_texts(texts, [0, 1, 0])


def test_from_texts_multi_label_and_regression():
    texts = ["a b", "c d", "e f"]
    names = data.from_texts(texts, [["x", "y"], ["y"], []], label_mode="multi_label", shuffle=False)
    assert names.class_names == ["x", "y"]
    assert all_batches(names)[1].tolist() == [[1, 1], [0, 1], [0, 0]]

    multi_hot = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    dataset = data.from_texts(texts, multi_hot, label_mode="multi_label", shuffle=False)
    _, labels = all_batches(dataset)
    assert labels.dtype == np.float32 and np.array_equal(labels, multi_hot)
    assert dataset.class_names is None and dataset.num_classes == 3

    targets = np.array([[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]])
    dataset = data.from_texts(texts, targets, label_mode="regression", shuffle=False)
    _, labels = all_batches(dataset)
    assert labels.dtype == np.float32 and np.allclose(labels, targets)
    assert dataset.num_classes == 2


def test_from_texts_validation_data():
    train, validation = data.from_texts(
        ["a b", "c d", "e f"],
        ["x", "y", "x"],
        validation_data=(["g h", "i j"], ["y", "x"]),
        batch_size=2,
    )
    assert (train.num_examples, validation.num_examples) == (3, 2)
    assert all_batches(validation)[1].tolist() == [1, 0]


def test_from_pandas():
    import pandas as pd

    frame = pd.DataFrame(
        {"review": ["good", "bad", "great", "awful"], "stars": [5, 1, 5, 1]},
        index=[10, 11, 12, 13],
    )
    train, validation = data.from_pandas(frame, text_column="review", label_column="stars", validation_split=0.5)
    assert train.class_names == ["1", "5"] and train.num_examples == 2
    assert sorted(all_batches(train)[0] + all_batches(validation)[0]) == sorted(frame.review)

    with pytest.raises(DataError, match=r"available columns: \['review', 'stars'\]"):
        data.from_pandas(frame, text_column="text", label_column="stars")
    frame.loc[12, "review"] = None
    with pytest.raises(DataError, match="row 12 of frame has no text"):
        data.from_pandas(frame, text_column="review", label_column="stars")
    with pytest.raises(DataError, match="must be a pandas DataFrame, got list"):
        data.from_pandas([1, 2], text_column="review", label_column="stars")


def test_from_pandas_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    with pytest.raises(ImportError, match="from_pandas needs pandas.*pip install pandas"):
        data.from_pandas(object(), text_column="text", label_column="label")


# --------------------------------------------------------------------------
# TFDS


class KerasTransferTinyReviews(tfds.core.GeneratorBasedBuilder):
    """A two-class text dataset generated in memory, for offline tests."""

    VERSION = tfds.core.Version("1.0.0")
    # tfds infers a metadata folder from the module's package; tests is not one.
    pkg_dir_path = epath.Path(os.path.dirname(__file__))

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "sentence": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=["negative", "positive"]),
                    "idx": tfds.features.Scalar(dtype=np.int32),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(6),
            "validation": self._generate_examples(2),
        }

    def _generate_examples(self, count):
        for i in range(count):
            yield i, {"sentence": f"Review Number {i}", "label": i % 2, "idx": i}


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds_text"))
    KerasTransferTinyReviews(data_dir=data_dir).download_and_prepare()
    return data_dir


def test_from_tfds_text_offline(tiny_tfds_dir):
    options = dict(data_dir=tiny_tfds_dir, download=False, text_key="sentence")
    train, validation = data.from_tfds_text(
        "keras_transfer_tiny_reviews",
        split=["train", "validation"],
        batch_size=4,
        clean=["lower"],
        **options,
    )
    assert train.class_names == ["negative", "positive"] and train.num_classes == 2
    assert (train.num_examples, validation.num_examples) == (6, 2)
    assert train.cardinality().numpy() == 2 and train.skipped_files == []
    texts, labels = next(iter(train))
    assert texts.dtype == tf.string and labels.dtype == tf.int32 and labels.shape == (4,)
    all_texts, _ = all_batches(validation)
    assert sorted(all_texts) == ["review number 0", "review number 1"]

    single = data.from_tfds_text("keras_transfer_tiny_reviews", **options)
    assert isinstance(single, tf.data.Dataset) and single.num_examples == 6

    with pytest.raises(DataError, match="no feature 'text'.*text_key="):
        data.from_tfds_text("keras_transfer_tiny_reviews", data_dir=tiny_tfds_dir, download=False)
    with pytest.raises(DataError, match="feature 'idx' .* is not text"):
        data.from_tfds_text("keras_transfer_tiny_reviews", **{**options, "text_key": "idx"})


# --------------------------------------------------------------------------
# choose_sequence_length


def test_choose_sequence_length_with_a_tiny_tokenizer():
    tokenizer = tiny_vocabulary_tokenizer()
    texts = ["the cat sat on the mat " * 3] + ["a dog"] * 9  # 18 tokens, then 2s
    assert data.choose_sequence_length(texts, tokenizer, percentile=100) == 18 + 2
    assert data.choose_sequence_length(texts, tokenizer, percentile=50) == 8  # floor
    assert data.choose_sequence_length(texts, tokenizer, percentile=100, maximum=12) == 12

    # A dataset from the loaders is unbatched and read whole.
    dataset = data.from_texts(texts, ["x"] * 5 + ["y"] * 5, batch_size=3)
    assert data.choose_sequence_length(dataset, tokenizer, percentile=100) == 20
    # A sample: seeded, so the same answer every time.
    many = ["the cat"] * 50 + ["the cat sat on the mat the cat sat on the mat"] * 50
    first = data.choose_sequence_length(many, tokenizer, sample_size=10, seed=3)
    assert first == data.choose_sequence_length(many, tokenizer, sample_size=10, seed=3)


# --------------------------------------------------------------------------
# The datasets train a Keras model.


def test_text_dataset_trains_a_keras_model():
    texts = ["good fun great", "bad dull awful", "great good", "awful bad"] * 4
    labels = ["pos", "neg", "pos", "neg"] * 4
    dataset = data.from_texts(texts, labels, batch_size=4, clean="lower")
    vectorize = keras.layers.TextVectorization(output_mode="multi_hot", max_tokens=20)
    vectorize.adapt(dataset.map(lambda t, _: t))
    model = keras.Sequential([vectorize, keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(dataset, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2


def test_public_api_is_re_exported():
    homes = {
        "text_file": text_files,
        "from_texts": text_lists,
        "from_pandas": text_lists,
        "from_tfds_text": tfds_data,
        "choose_sequence_length": sequence_length,
        "TextCleaner": text_cleaning,
        "CLEANING_STEPS": text_cleaning,
    }
    for name, module in homes.items():
        assert getattr(kt.data, name) is getattr(module, name)
    assert kt.data.DataError is errors.DataError is text_files.DataError
    assert issubclass(DataError, ValueError)


# --------------------------------------------------------------------------
# Real data


@pytest.mark.integration
def test_sms_spam_collection(assets_dir):
    path = os.path.join(assets_dir, "text", "sms_spam", "SMSSpamCollection")
    dataset = data.text_file(path, text_column="SMS", label_column="Label", shuffle=False)
    assert dataset.num_examples == 5574  # quote characters do not merge rows
    assert dataset.class_names == ["ham", "spam"]
    texts, labels = all_batches(dataset)
    assert np.bincount(labels).tolist() == [4827, 747]
    assert texts[0].startswith("Go until jurong point")

    train, validation = data.text_file(
        path,
        text_column="SMS",
        label_column="Label",
        validation_split=0.2,
        max_examples=1000,
    )
    assert (train.num_examples, validation.num_examples) == (800, 200)

    tokenizer = keras_hub.models.BertTokenizer.from_preset(os.path.join(assets_dir, "keras-hub", "all-MiniLM-L6-v2"))
    length = data.choose_sequence_length(train, tokenizer, maximum=512)
    assert 45 <= length <= 65  # SMS are short: 95% have about 52 word pieces or fewer
    assert data.choose_sequence_length(train, tokenizer, maximum=32) == 32


@pytest.mark.integration
def test_sst2_files(assets_dir):
    folder = os.path.join(assets_dir, "text", "sst2")
    dev = data.text_file(os.path.join(folder, "dev.tsv"), text_column="content", label_column="label")
    assert dev.num_examples == 872 and dev.class_names == ["0", "1"]

    # train.tsv calls the text column "sentence", dev.tsv "content": use indexes.
    train, validation = data.text_file(
        os.path.join(folder, "train.tsv"),
        text_column=1,
        label_column=0,
        header=True,
        validation_file=os.path.join(folder, "dev.tsv"),
        class_names=["negative", "positive"],
        max_examples=2000,
        clean=["lower", "collapse_whitespace"],
    )
    assert (train.num_examples, validation.num_examples) == (2000, 872)
    assert train.class_names == ["negative", "positive"]
    texts, labels = next(iter(train))
    assert texts.shape == (32,) and labels.dtype == tf.int32
