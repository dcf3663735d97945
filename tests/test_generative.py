"""The generative models: dry-runs of the autoencoder, VAE and DCGAN trainers on tiny fake data (export parity,
cards that validate, the decoder graph agreeing with the main graph), the KL and ELBO arithmetic against closed
forms and Monte Carlo, the linear-AE-versus-PCA helpers, and (with the real dataset) the shipped cards' figures
reproduced from their ONNX files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from training import linear_ae_pca, train_autoencoder, train_gan
from training.data import fashion_mnist
from training.export.generative import decoder_consistency
from training.export.graph_export import check_graph_parity, export_graph, run_graph
from training.generated import Generated
from training.image_quality import FeatureModel, gaussian, measure
from training.tasks import image_generation as task
from training.zoo.generative import DCGANConfig
from zooserve.card import card_document, load_card, save_card
from zooserve.latent import draw

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = ROOT / "models" / "fashion-resnet" / "1"


@pytest.fixture(scope="module")
def fake_data(make_fake_fashion):
    return make_fake_fashion(96, 32, seed=5)


@pytest.fixture(scope="module")
def autoencoders(fake_data, tmp_path_factory):
    """Dry-run both autoencoder recipes once; -> {name: (model dir, run dir)}."""
    runs = tmp_path_factory.mktemp("runs")
    for name in ("fashion-autoencoder", "fashion-vae"):
        assert train_autoencoder.main([name, "--dry-run", "--no-progress", "--data", str(fake_data),
                                       "--runs", str(runs), "--batch-size", "16", "--val-size", "32"]) == 0
    return {name: (runs / "dry-run" / "models" / name / "1", runs / "dry-run" / name)
            for name in ("fashion-autoencoder", "fashion-vae")}


@pytest.mark.parametrize("name", ["fashion-autoencoder", "fashion-vae"])
def test_autoencoder_dry_run_writes_two_graphs_and_a_valid_card(autoencoders, name):
    model_dir, run_dir = autoencoders[name]
    card = load_card(model_dir)
    assert card.task == "autoencoder" and card.preprocess.mean == [0.0] and card.preprocess.std == [1.0]
    decoder = card.graph("decoder")
    assert card.latent.graph == "decoder" and card.latent.input == "code" == decoder.inputs[0].name
    assert card.latent.prior == ("normal" if name == "fashion-vae" else None)
    assert card.postprocess.output == "image" and card.postprocess.range == [0.0, 1.0]
    assert [o.name for o in card.outputs] == (["code", "log_var", "image"] if name == "fashion-vae" else
                                              ["code", "image"])
    assert card.parity.argmax_agreement is None and card.parity.max_abs_diff <= 1e-4
    assert decoder.parity.max_abs_diff <= 1e-4
    assert (model_dir / decoder.artifact.file).stat().st_size == decoder.artifact.bytes
    test = card.split("test")
    assert 0 < test.reconstruction_mse < 1
    if name == "fashion-vae":
        assert test.negative_elbo == pytest.approx(test.reconstruction_nll + test.kl)
    for f in ("history.json", "curves.png", "reconstructions.png", "last.pt"):
        assert (run_dir / f).is_file()


@pytest.mark.parametrize("name", ["fashion-autoencoder", "fashion-vae"])
def test_decoder_graph_decodes_the_main_graphs_code(autoencoders, name, fake_data):
    model_dir, _ = autoencoders[name]
    x = np.random.default_rng(0).random((7, 1, 28, 28), dtype=np.float32)
    assert decoder_consistency(model_dir, x) <= 1e-4
    main = run_graph(model_dir / "model.onnx", {"input": x})
    decoded = run_graph(model_dir / "decoder.onnx", {"code": main["code"]})["image"]
    np.testing.assert_allclose(decoded, main["image"], atol=1e-5)
    assert 0.0 <= decoded.min() and decoded.max() <= 1.0  # sigmoid


def test_vae_samples_from_the_prior_by_the_service_rule(autoencoders):
    model_dir, run_dir = autoencoders["fashion-vae"]
    card = load_card(model_dir)
    codes = draw(card.latent, 5, seed=3)
    images = run_graph(model_dir / "decoder.onnx", codes)["image"]
    assert images.shape == (5, 1, 28, 28)
    # Image i depends on the seed and i only, not on n.
    np.testing.assert_allclose(run_graph(model_dir / "decoder.onnx", draw(card.latent, 2, seed=3))["image"],
                               images[:2], atol=1e-6)
    assert (run_dir / "samples.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not (CLASSIFIER / "model.onnx").is_file(), reason="needs the shipped fashion-resnet")
def test_gan_dry_run_exports_the_eval_mode_generator(fake_data, tmp_path):
    assert train_gan.main(["fashion-dcgan", "--dry-run", "--no-progress", "--data", str(fake_data), "--runs",
                           str(tmp_path), "--batch-size", "16", "--val-size", "32", "--classifier", str(CLASSIFIER)]) == 0
    model_dir, run_dir = tmp_path / "dry-run" / "models" / "fashion-dcgan" / "1", tmp_path / "dry-run" / "fashion-dcgan"
    card = load_card(model_dir)
    assert card.task == "image-generation" and card.preprocess is None
    assert card.labels == fashion_mnist.LABELS
    assert (card.latent.input, card.latent.prior, card.latent.condition) == ("z", "normal", "label")
    assert [(i.name, i.datatype) for i in card.inputs] == [("z", "FP32"), ("label", "INT64")]
    assert card.postprocess.range == [-1.0, 1.0]
    gen = card.split("generated")
    assert gen.feature_model == "fashion-resnet/1" and gen.examples == 200 and gen.frechet_distance > 0
    assert sum(gen.class_shares.values()) == pytest.approx(1.0) and 0.1 <= gen.mean_top1_probability <= 1
    modes = json.loads((run_dir / "modes.json").read_text())
    assert set(modes) == {"eval", "train"}
    history = json.loads((run_dir / "history.json").read_text())
    assert {"train_loss_d", "train_loss_g", "train_value", "mean_top1"} <= set(history[0])


def test_generator_parity_and_batch_independence(tmp_path):
    """One graph, two inputs (z FP32, label INT64): ORT equals torch in eval mode, and an image does not depend
    on what else is in the batch (BatchNorm uses its running statistics)."""
    cfg = DCGANConfig(dim=8, embed=4, channels=8, d_channels=8)
    G, _ = cfg.build()
    G.train()
    with torch.no_grad():  # move the running statistics away from their initial values
        for _ in range(3):
            G(torch.randn(32, 8), torch.randint(0, 10, (32,)))
    G.eval()
    latent = train_gan.latent_of(cfg)
    sample = {k: torch.from_numpy(v) for k, v in draw(latent, 2, 0, labels=10).items()}
    opset = export_graph(G, sample, ["image"], tmp_path / "g.onnx")
    inputs = draw(latent, 40, 1, labels=10)
    report = check_graph_parity(G, tmp_path / "g.onnx", inputs, opset=opset)
    assert report.max_abs_diff <= 1e-4 and report.argmax_agreement is None and report.inputs == 40
    alone = run_graph(tmp_path / "g.onnx", {k: v[:1] for k, v in inputs.items()})["image"]
    np.testing.assert_allclose(alone, run_graph(tmp_path / "g.onnx", inputs)["image"][:1], atol=1e-5)


def test_gaussian_kl_matches_closed_form_and_monte_carlo():
    mean, log_var = torch.tensor([[0.5, -1.0]]), torch.tensor([[math.log(0.25), 0.0]])
    # 0.5 * sum(mu^2 + var - 1 - log var) = 0.5 * ((0.25 + 0.25 - 1 + 1.3863) + (1 + 1 - 1 - 0))
    want = 0.5 * ((0.25 + 0.25 - 1 - math.log(0.25)) + (1.0 + 1.0 - 1.0))
    assert float(task.gaussian_kl(mean, log_var)) == pytest.approx(want, rel=1e-6)
    gen = torch.Generator().manual_seed(0)
    std = torch.exp(0.5 * log_var)
    z = mean + std * torch.randn(200_000, 2, generator=gen)
    log_q = torch.distributions.Normal(mean, std).log_prob(z).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert float((log_q - log_p).mean()) == pytest.approx(want, abs=0.01)
    assert float(task.gaussian_kl(torch.zeros(1, 3), torch.zeros(1, 3))) == 0.0  # q = prior


def test_bernoulli_nll_and_elbo_on_tiny_numbers():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 0, :2] = torch.tensor([1.0, 0.5])
    logits = torch.zeros(1, 1, 28, 28)  # p = 0.5 everywhere: every pixel costs log 2
    assert float(task.bernoulli_nll(logits, x)) == pytest.approx(784 * math.log(2), rel=1e-6)
    probs = torch.sigmoid(logits).numpy()
    assert task.bernoulli_nll_np(probs, x.numpy())[0] == pytest.approx(784 * math.log(2), rel=1e-9)
    # The figures from graph outputs: code 0 and log_var 0 (q = prior, KL 0); eps is then the code decoded.
    main = {"code": np.zeros((1, 2), np.float32), "log_var": np.zeros((1, 2), np.float32), "image": probs}
    seen = []
    figs = task.autoencoder_figures(main, x.numpy(), decode=lambda z: seen.append(z) or probs)
    np.testing.assert_allclose(seen[0], np.random.default_rng(task.ELBO_SEED).standard_normal((1, 2), np.float32))
    assert figs["kl"] == 0.0 and figs["negative_elbo"] == pytest.approx(784 * math.log(2))
    assert figs["reconstruction_mse"] == pytest.approx(((0.5 ** 2) * 782 + 0.25 + 0) / 784)


def test_pca_helpers():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3)) @ np.diag([5.0, 2.0, 0.1])  # variance mostly in the first two axes
    mean, u = linear_ae_pca.pca(x, 2)
    np.testing.assert_allclose(np.abs(u), np.eye(3)[:, :2], atol=0.05)
    rotated = u @ np.array([[0.6, -0.8], [0.8, 0.6]]) * 3.0  # another basis of the same plane
    np.testing.assert_allclose(linear_ae_pca.subspace_angles(rotated, u), 0.0, atol=1e-6)
    assert linear_ae_pca.subspace_angles(np.eye(3)[:, 2:], u[:, :1])[0] == pytest.approx(math.pi / 2, abs=0.05)
    assert linear_ae_pca.pca_mse(x, mean, u) == pytest.approx(np.mean((x[:, 2] - x[:, 2].mean()) ** 2) / 3, rel=0.05)


def test_linear_ae_pca_dry_run(fake_data, capsys):
    assert linear_ae_pca.main(["--dry-run", "--data", str(fake_data), "--val-size", "32", "--ks", "4"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 4 |")]
    assert len(row) == 1 and len(row[0].split("|")) == 9


SHIPPED = [ROOT / "models" / n / "1" for n in ("fashion-autoencoder", "fashion-vae", "fashion-dcgan")]


@pytest.mark.integration
@pytest.mark.parametrize("model_dir", SHIPPED, ids=lambda p: p.parent.name)
def test_shipped_card_figures_reproduce_from_onnx(model_dir):
    if not (model_dir / "model.json").is_file():
        pytest.skip(f"{model_dir} is not shipped")
    try:
        ds = fashion_mnist.load(allow_download=False)
    except fashion_mnist.DatasetUnavailable:
        pytest.skip("the real Fashion-MNIST is not installed; this test never downloads")
    card = load_card(model_dir)
    if card.latent.prior is not None:  # the VAE and the GAN: their samples from seed 0, as /sample draws them
        gen = card.split("generated")
        feats = FeatureModel.open(CLASSIFIER)
        q = measure(feats, Generated(model_dir).sample(gen.examples, 0), gaussian(feats.run(ds.test_images)[0]))
        assert q.frechet_distance == pytest.approx(gen.frechet_distance, rel=1e-4)
        assert q.mean_top1_probability == pytest.approx(gen.mean_top1_probability, abs=1e-5)
        for label, share in gen.class_shares.items():
            assert q.class_shares[label] == pytest.approx(share, abs=2 / gen.examples)
    if card.task == "image-generation":
        return
    x = ds.test_images[:, None].astype(np.float32) / np.float32(255.0)  # as UNIT.apply: float32 division
    main = run_graph(model_dir / "model.onnx", {"input": x})
    figs = task.autoencoder_figures(main, x, lambda z: run_graph(model_dir / "decoder.onnx", {"code": z})["image"])
    test = card.split("test").model_dump(exclude_none=True)
    for key, value in figs.items():
        assert value == pytest.approx(test[key], rel=1e-5), key


def test_a_saved_card_keeps_a_null_prior_and_reads_back_equal(tmp_path):
    card = load_card(ROOT / "models" / "fashion-autoencoder" / "1")  # latent.prior is null
    assert card_document(card)["latent"]["prior"] is None
    save_card(tmp_path, card)
    assert load_card(tmp_path) == card
