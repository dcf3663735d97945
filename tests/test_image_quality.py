"""The image-quality measures (training/image_quality.py), the seed -> codes rule (zooserve/latent.py), the
images made from a generator's files (training/generated.py) and the report (training/gen_report.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from training import gen_report
from training.generated import Generated
from training.image_quality import Quality, _with_features, coverage, frechet_distance, gaussian
from zooserve.card import ImagePostprocess, Latent, load_card
from zooserve.latent import draw, to_pixels

ROOT = Path(__file__).resolve().parents[1]


def test_frechet_distance_of_diagonal_gaussians_has_a_closed_form():
    # For commuting covariances d^2 = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    got = frechet_distance((mu1, np.diag(s1)), (mu2, np.diag(s2)))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_is_zero_for_one_gaussian_and_invariant_under_rotation():
    rng = np.random.default_rng(0)
    a = gaussian(rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)))
    b = gaussian(rng.normal(size=(500, 6)) * 2 + 1)
    assert abs(frechet_distance(a, a)) < 1e-9
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))  # an orthogonal matrix
    rotated = lambda g: (q @ g[0], q @ g[1] @ q.T)  # noqa: E731
    assert frechet_distance(rotated(a), rotated(b)) == pytest.approx(frechet_distance(a, b), rel=1e-8)
    assert frechet_distance(a, b) > 1.0


def test_coverage_counts_top1_classes_and_their_mean_probability():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    shares, top1 = coverage(probs, ["a", "b", "c"])
    assert shares == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert top1 == pytest.approx((0.9 + 0.7 + 0.6 + 0.8) / 4)
    balanced = Quality(4, 0.0, {str(i): 0.1 for i in range(10)}, 0.85)
    assert balanced.meets_targets()
    assert not Quality(4, 0.0, {**balanced.class_shares, "0": 0.04}, 0.85).meets_targets()
    assert not Quality(4, 0.0, balanced.class_shares, 0.79).meets_targets()


def test_features_are_the_input_of_the_node_that_makes_the_logits(tmp_path):
    # x (N, 4) -> Relu -> h (N, 4) -> Gemm -> logits (N, 3): the features must be h.
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Gemm", ["h", "w"], ["logits"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [onnx.numpy_helper.from_array(w, "w")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    blob, name = _with_features(path)
    assert name == "h"
    import onnxruntime as ort
    x = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)
    logits, h = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(h, np.maximum(x, 0))
    np.testing.assert_allclose(logits, np.maximum(x, 0) @ w.T, rtol=1e-6)


def test_a_seed_names_the_same_codes_whatever_n_and_classes_come_from_their_own_stream():
    lat = Latent(input="z", dim=8, prior="normal", condition="label")
    small, large = draw(lat, 3, 11, labels=10), draw(lat, 64, 11, labels=10)
    np.testing.assert_array_equal(small["z"], large["z"][:3])
    np.testing.assert_array_equal(small["label"], large["label"][:3])
    assert small["z"].dtype == np.float32 and small["label"].dtype == np.int64
    fixed = draw(lat, 5, 11, classes=7, labels=10)
    np.testing.assert_array_equal(fixed["z"], large["z"][:5])  # asking for a class leaves the codes alone
    assert fixed["label"].tolist() == [7] * 5
    assert set(draw(lat, 2000, 1, labels=10)["label"].tolist()) == set(range(10))
    with pytest.raises(ValueError, match="no prior"):
        draw(Latent(input="code", dim=8, prior=None), 1, 0)


def test_to_pixels_maps_the_range_onto_0_255_and_clips():
    post = ImagePostprocess(output="image", height=1, width=4, channels=1, range=[-1.0, 1.0])
    x = np.array([[[[-2.0, -1.0, 0.0, 1.0]]]], np.float32)  # (1, 1, 1, 4)
    assert to_pixels(x, post).tolist() == [[[0, 0, 128, 255]]]
    rgb = ImagePostprocess(output="image", height=1, width=1, channels=3)
    assert to_pixels(np.array([[[[0.0]], [[0.5]], [[1.0]]]], np.float32), rgb).shape == (1, 1, 1, 3)


GENERATORS = sorted(p.parent for p in ROOT.glob("models/*/*/model.json")
                    if getattr(load_card(p).latent, "prior", None) is not None)


@pytest.mark.parametrize("model_dir", GENERATORS or [None], ids=lambda p: p.parent.name if p else "none")
def test_a_shipped_generator_makes_the_same_images_from_a_seed_in_any_batch(model_dir):
    if model_dir is None:
        pytest.skip("no generator in models/")
    gen = Generated(model_dir, threads=1)
    a, b = gen.sample(64, 5), gen.sample(3, 5)
    assert a.dtype == np.uint8 and a.shape == (64, 28, 28)
    np.testing.assert_array_equal(a[:3], b)
    assert a.std() > 10  # images, not a constant


@pytest.mark.integration
@pytest.mark.parametrize("model_dir", GENERATORS or [None], ids=lambda p: p.parent.name if p else "none")
def test_the_cards_generated_figures_reproduce_from_the_onnx_files(model_dir, tmp_path):
    """gen_report --cards on a copy of the shipped model and the shipped fashion-resnet gives the card's own
    figures; the distance within 1% (float kernels differ in their last bits across CPUs)."""
    if model_dir is None:
        pytest.skip("no generator in models/")
    card = load_card(model_dir)
    shipped = card.split(gen_report.GENERATED)
    repo = tmp_path / "repo"
    for src in (model_dir, ROOT / "models/fashion-resnet/1"):
        shutil.copytree(src, repo / src.parent.name / src.name)
    gen_report.main(["--models", str(repo), "--cards", "--images", str(shipped.examples)])
    again = json.loads((repo / model_dir.parent.name / model_dir.name / "model.json").read_text())
    got = next(m for m in again["metrics"] if m["split"] == gen_report.GENERATED)
    assert got["frechet_distance"] == pytest.approx(shipped.frechet_distance, rel=0.01)
    for label, share in shipped.class_shares.items():
        assert got["class_shares"][label] == pytest.approx(share, abs=0.002)
    assert got["mean_top1_probability"] == pytest.approx(shipped.mean_top1_probability, abs=0.002)


@pytest.mark.integration
def test_gen_report_dry_run_prints_the_reference_rows(capsys):
    if not (ROOT / "models/fashion-resnet/1/model.json").exists():
        pytest.skip("fashion-resnet is not in models/")
    assert gen_report.main(["--dry-run", "--models", str(ROOT / "models")]) == 0
    out = capsys.readouterr().out
    assert "training images" in out and "test images" in out
    real = next(line for line in out.splitlines() if "training images" in line)
    assert "| yes |" in real  # real images meet the coverage targets: the measure is not impossible to pass


def test_tile_lays_images_out_in_rows_with_gaps():
    from training.image_grids import tile
    rows = [np.zeros((3, 2, 2), np.uint8), np.full((3, 2, 2), 7, np.uint8)]
    pic = np.asarray(tile(rows, scale=2, gap=1))
    assert pic.shape == (2 * 5 + 1, 3 * 5 + 1)  # (rows * (h*scale + gap) + gap, cols * (w*scale + gap) + gap)
    assert pic[1:5, 1:5].max() == 0 and pic[6:10, 1:5].min() == 7 and pic[0].min() == 255


@pytest.mark.integration
def test_image_grids_dry_run_draws_each_generator(capsys):
    from training import image_grids
    assert image_grids.main(["--dry-run", "--models", str(ROOT / "models")]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) >= len(GENERATORS)
