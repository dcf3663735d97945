"""The quickstart's example images (`examples/`) are what `training.data.examples` says they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import examples, fashion_mnist

SHIPPED = Path(__file__).resolve().parents[1] / "examples"


def test_file_names_are_plain():
    assert [examples.file_name(label) for label in fashion_mnist.LABELS] == [
        "t-shirt.png", "trouser.png", "pullover.png", "dress.png", "coat.png", "sandal.png", "shirt.png",
        "sneaker.png", "bag.png", "ankle-boot.png"]


@pytest.mark.integration
def test_shipped_examples_are_the_first_test_image_of_each_class():
    try:
        ds = fashion_mnist.load(allow_download=False)
    except fashion_mnist.DatasetUnavailable:
        pytest.skip("the real Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    for c, i in enumerate(examples.first_of_each_class(ds.test_labels)):
        assert ds.test_labels[i] == c and (ds.test_labels[:i] != c).all()
        with Image.open(SHIPPED / examples.file_name(fashion_mnist.LABELS[c])) as img:
            assert img.mode == "L" and img.size == (28, 28)
            np.testing.assert_array_equal(np.asarray(img), ds.test_images[i])


def test_the_command_writes_ten_pngs(make_fake_fashion, tmp_path):
    data = make_fake_fashion(40, 40, seed=3)
    assert examples.main(["--out", str(tmp_path / "ex"), "--data", str(data)]) == 0
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == sorted(
        examples.file_name(label) for label in fashion_mnist.LABELS)
