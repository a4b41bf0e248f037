"""Loader fuzz tests: corrupt, truncated, huge, odd-format and odd-mode images, malformed CSV/TSV files.

Whatever is in the folder or file, the loaders read what they can and name the
rest (`skipped_files` / `skipped_reasons`), or raise `DataError` before any
training: nothing crashes mid-epoch, nothing readable is lost, and no input
file is changed.
"""

import hashlib
import io
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
from helpers import tiny_classifier
from PIL import Image

from keras_transfer import data
from keras_transfer.data import DataError

# name -> whether training reads it
GOOD = {
    **{f"good{i}.png": True for i in range(4)},
    "good.jpg": True,
    "cmyk.jpg": True,
    "i16.png": True,
    "palette.png": True,
    "la.png": True,
    "bilevel.png": True,
    "rgba.png": True,
    "animated.gif": True,
    "image.bmp": True,
    "image.webp": True,
    "png_inside.jpeg": True,
    "progressive.jpg": True,
}
BAD = (
    "truncated.jpg",
    "truncated.png",
    "bad_crc.png",
    "zero.jpg",
    "garbage.png",
    "bomb.png",
    "huge.png",
    "image.tiff",
    "text_inside.jpg",
)


def _png_header(width, height):
    """A PNG that declares `width`x`height` RGB pixels but holds two rows."""

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width * 3 + 1) * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _write_class(folder, brightness, rng):
    os.makedirs(folder, exist_ok=True)

    def image(mode="RGB", size=40):
        pixels = np.clip(rng.normal(brightness, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        return Image.fromarray(pixels).convert(mode)

    def encoded(fmt, **options):
        buffer = io.BytesIO()
        image().save(buffer, fmt, **options)
        return buffer.getvalue()

    def write(name, content):
        with open(os.path.join(folder, name), "wb") as file:
            file.write(content)

    for i in range(4):
        image().save(os.path.join(folder, f"good{i}.png"))
    image().save(os.path.join(folder, "good.jpg"), quality=90)
    image().save(os.path.join(folder, "progressive.jpg"), progressive=True)
    image("CMYK").save(os.path.join(folder, "cmyk.jpg"))
    Image.fromarray((rng.random((40, 40)) * 65535).astype(np.uint16)).save(os.path.join(folder, "i16.png"))
    image("P").save(os.path.join(folder, "palette.png"))
    image("LA").save(os.path.join(folder, "la.png"))
    image("1").save(os.path.join(folder, "bilevel.png"))
    image("RGBA").save(os.path.join(folder, "rgba.png"))
    frames = [image("P") for _ in range(3)]
    frames[0].save(os.path.join(folder, "animated.gif"), save_all=True, append_images=frames[1:])
    image().save(os.path.join(folder, "image.bmp"))
    image().save(os.path.join(folder, "image.webp"))
    image().save(os.path.join(folder, "png_inside.jpeg"), format="PNG")
    image().save(os.path.join(folder, "image.tiff"))
    jpeg, png = encoded("JPEG"), encoded("PNG")
    write("truncated.jpg", jpeg[: len(jpeg) // 2])
    write("truncated.png", png[: len(png) // 2])
    broken = bytearray(png)
    broken[40] ^= 0xFF
    write("bad_crc.png", bytes(broken))
    write("zero.jpg", b"")
    write("garbage.png", rng.bytes(500))
    write("bomb.png", _png_header(20000, 20000))  # 400 megapixels
    write("huge.png", _png_header(12000, 8000))  # 96 megapixels: over the limit, under PIL's error
    write("text_inside.jpg", b"just some text, not a JPEG\n" * 10)
    write("notes.txt", b"not an image, not an image name: ignored")


def _hashes(root):
    hashes = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as file:
                hashes[os.path.join(folder, name)] = hashlib.sha256(file.read()).hexdigest()
    return hashes


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "images"
    rng = np.random.default_rng(13)
    for index, name in enumerate(("cats", "dogs")):
        _write_class(str(root / name), 50 + 150 * index, rng)
    return str(root)


def test_image_folder_reads_every_good_image_and_names_every_bad_one(fuzz_folder):
    before = _hashes(fuzz_folder)
    with pytest.warns(UserWarning, match=r"Skipping 18 unreadable image files") as caught:
        train, validation = data.image_folder(fuzz_folder, image_size=32, batch_size=8, validation_split=0.25)
    message = str(caught[0].message)
    expected_bad = sorted(os.path.join(fuzz_folder, c, name) for c in ("cats", "dogs") for name in BAD)
    assert sorted(train.skipped_files) == expected_bad and validation.skipped_files == []
    assert set(train.skipped_reasons) == set(expected_bad)
    reasons = {os.path.basename(path): why for path, why in train.skipped_reasons.items()}
    assert reasons["zero.jpg"] == "empty file (0 bytes)"
    assert "decompression bomb" in reasons["bomb.png"] and "megapixel limit" in reasons["huge.png"]
    assert "training reads" in reasons["image.tiff"] and "cannot be decoded" in reasons["truncated.jpg"]
    assert all(path in message for path in expected_bad)
    # Every good image is read, once, by exactly one of the two datasets.
    assert train.num_examples + validation.num_examples == 2 * len(GOOD)
    for dataset in (train, validation):
        for _ in range(2):
            count = sum(int(labels.shape[0]) for _, labels in dataset)
            assert count == dataset.num_examples

    # One epoch of a tiny model on what was read completes.
    model = tiny_classifier(size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fine_tune(train, validation, head_epochs=1, finetune_epochs=0, verbose=0)
    assert np.isfinite(history.head.history["loss"][-1])
    assert _hashes(fuzz_folder) == before


def test_every_file_dropped_is_one_predict_cannot_read_either(fuzz_folder):
    import keras

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skipped = set(data.image_folder(fuzz_folder, image_size=32).skipped_files)
    for name in GOOD:
        keras.utils.load_img(os.path.join(fuzz_folder, "cats", name))  # predict reads what training reads
    # PIL also reads TIFF, fills a truncated PNG with gray and only warns at
    # 96 megapixels; training skips those (named, with a reason) on purpose.
    for name in set(BAD) - {"image.tiff", "huge.png", "truncated.png"}:
        with pytest.raises(Exception):  # noqa: B017, PT011 - PIL raises many kinds
            keras.utils.load_img(os.path.join(fuzz_folder, "cats", name))
    assert {os.path.join(fuzz_folder, "cats", name) for name in BAD} <= skipped


TEXT_CASES = {
    "ragged": (b"text,label\ngood,pos\nbad\nfine,neg\n", DataError),
    "empty": (b"", DataError),
    "only_blank_lines": (b"\n\n  \n", DataError),
    "only_header": (b"text,label\n", DataError),
    "latin1": ("text,label\ncaf\xe9 ok,pos\nbad,neg\n".encode("latin-1"), DataError),
    "nul_bytes": (b"text,label\nhel\x00lo,pos\nbye,neg\nok,pos\n", 3),
    "unclosed_quote": (b'text,label\ngood,pos\n"bad,neg\nfine,pos\n', DataError),
    "huge_field": (b"text,label\n" + b"word " * 100_000 + b",pos\nshort,neg\n", 2),
    "bom_crlf": ("\ufefftext,label\r\nnice,pos\r\nmeh,neg\r\n".encode(), 2),
    "extra_fields": (b"text,label\na b,pos,extra\nc d,neg\n", 2),
    "empty_text": (b"text,label\n,pos\nfine,neg\n", DataError),
    "empty_label": (b"text,label\nnice,\nfine,neg\nok,pos\n", DataError),
    "tsv_quotes": (b'text\tlabel\n"Hi" he said\tpos\nok "fine\tneg\n', 2),
    "binary": (bytes(range(256)) * 4, DataError),
}


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_malformed_text_files_load_whole_or_fail_before_training(tmp_path, case):
    content, expected = TEXT_CASES[case]
    path = tmp_path / (f"{case}.tsv" if case.startswith("tsv") else f"{case}.csv")
    path.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    if expected is DataError:
        with pytest.raises(DataError):
            data.text_file(path, text_column="text", label_column="label")
    else:
        dataset = data.text_file(path, text_column="text", label_column="label", batch_size=2)
        assert dataset.num_examples == expected
        assert sum(int(labels.shape[0]) for _, labels in dataset) == expected
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
