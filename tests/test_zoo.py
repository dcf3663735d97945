"""The model zoo: every architecture builds, maps images to logits, and has exactly the parameters its
config says (counted here from the layer formulas, independently of the code under test)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from torch import nn

from training.zoo import ARCHITECTURES, build_config
from training.zoo.alexnet import AlexNetConfig
from training.zoo.inception import InceptionConfig, InceptionModule
from training.zoo.lenet import LeNetConfig
from training.zoo.mobilenet import MobileNetConfig
from training.zoo.resnet import BasicBlock, ResNetConfig
from training.zoo.vgg import VGGConfig


# Parameter-count formulas.
def conv(c_in: int, c_out: int, k: int | tuple[int, int], groups: int = 1, bias: bool = False) -> int:
    kh, kw = (k, k) if isinstance(k, int) else k
    return kh * kw * (c_in // groups) * c_out + (c_out if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def cbr(c_in: int, c_out: int, k: int | tuple[int, int], groups: int = 1) -> int:
    """conv (no bias) + BatchNorm; ReLU has no parameters."""
    return conv(c_in, c_out, k, groups) + bn(c_out)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_names():
    assert set(ARCHITECTURES) == {"lenet", "vgg", "resnet", "mobilenet", "inception", "alexnet"}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_family_fits_card_pattern(arch):
    assert re.fullmatch(r"[a-z]+/[a-z0-9_-]+", ARCHITECTURES[arch].family)
    assert ARCHITECTURES[arch].family == f"cnn/{arch}"


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_maps_images_to_logits(arch, batch):
    torch.manual_seed(0)
    model = build_config(arch).build().eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 1, 28, 28))
    assert out.shape == (batch, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_trains_in_train_mode_with_other_class_count(arch):
    model = build_config(arch, {"num_classes": 7}).build().train()
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_lenet_has_61706_parameters():
    expected = (conv(1, 6, 5, bias=True) + conv(6, 16, 5, bias=True)
                + linear(16 * 5 * 5, 120) + linear(120, 84) + linear(84, 10))
    assert expected == 61706
    assert n_params(LeNetConfig().build()) == 61706


@pytest.mark.parametrize("activation,pool", [("tanh", "avg"), ("relu", "avg")])
def test_lenet_variants(activation, pool):
    model = LeNetConfig(activation=activation, pool=pool).build()
    kinds = {type(m) for m in model.modules()}
    assert {"tanh": nn.Tanh, "relu": nn.ReLU}[activation] in kinds
    assert nn.AvgPool2d in kinds and nn.MaxPool2d not in kinds
    assert n_params(model) == 61706


def mobilenet_params(cfg: MobileNetConfig) -> int:
    def scaled(c):
        return max(8, int(round(c * cfg.width_multiplier)))

    c = scaled(cfg.stem)
    total = cbr(cfg.in_channels, c, 3)
    for width, _ in cfg.blocks:
        w = scaled(width)
        total += cbr(c, c, 3, groups=c) + cbr(c, w, 1)  # depthwise 3x3, then pointwise 1x1
        c = w
    return total + linear(c, cfg.num_classes)


@pytest.mark.parametrize("cfg", [
    MobileNetConfig(width_multiplier=0.5),
    MobileNetConfig(width_multiplier=1.0),
    MobileNetConfig(width_multiplier=0.1),  # every width floors at 8 channels
    MobileNetConfig(width_multiplier=0.75, stem=16, blocks=((24, 1), (40, 2))),
], ids=["alpha0.5", "alpha1.0", "alpha0.1", "custom"])
def test_mobilenet_parameters(cfg):
    assert n_params(cfg.build()) == mobilenet_params(cfg)


def test_mobilenet_depthwise_convs_have_one_filter_per_channel():
    model = MobileNetConfig(width_multiplier=0.5).build()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    depthwise = [m for m in convs if m.groups > 1]
    assert len(depthwise) == len(MobileNetConfig.blocks)
    for m in depthwise:
        assert m.groups == m.in_channels == m.out_channels and m.weight.shape[1:] == (1, 3, 3)
    assert [m.out_channels for m in convs if m.kernel_size == (1, 1)] == [32, 64, 64, 128, 128, 128]


def test_mobilenet_width_multiplier_halves_widths():
    full = MobileNetConfig(width_multiplier=1.0).build()
    half = MobileNetConfig(width_multiplier=0.5).build()
    assert full[-1][-1].in_features == 256 and half[-1][-1].in_features == 128


def resnet_params(cfg: ResNetConfig) -> int:
    g = cfg.groups
    c = cfg.widths[0]
    total = cbr(cfg.in_channels, c, 3)
    for stage, (width, n) in enumerate(zip(cfg.widths, cfg.blocks)):
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            total += cbr(c, width, 3, groups=g) + conv(width, width, 3, groups=g) + bn(width)
            if stride != 1 or c != width:
                total += conv(c, width, 1) + bn(width)  # projection skip
            c = width
    return total + linear(c, cfg.num_classes)


@pytest.mark.parametrize("cfg", [
    ResNetConfig(),
    ResNetConfig(widths=(16, 32, 64), blocks=(2, 2, 2)),
    ResNetConfig(widths=(16, 32, 64), blocks=(1, 2, 1), groups=4),
    ResNetConfig(widths=(8, 8, 16), blocks=(1, 1, 1), groups=2),  # a stride-2 stage that keeps the width
], ids=["default", "recipe", "groups4", "same-width-stride"])
def test_resnet_parameters(cfg):
    assert n_params(cfg.build()) == resnet_params(cfg)


def test_resnet_projection_skip_only_where_shape_changes():
    model = ResNetConfig(widths=(8, 8, 16), blocks=(2, 1, 2)).build()
    blocks = [m for m in model if isinstance(m, BasicBlock)]
    projected = [not isinstance(b.skip, nn.Identity) for b in blocks]
    # stage 0: same width, stride 1; stage 1: stride 2 (width kept); stage 2: stride 2 + wider, then plain.
    assert projected == [False, False, True, True, False]
    skip = blocks[2].skip[0]
    assert skip.kernel_size == (1, 1) and skip.stride == (2, 2)


def test_resnet_block_output_shapes():
    block = BasicBlock(8, 16, stride=2, groups=4).eval()
    assert block(torch.randn(2, 8, 14, 14)).shape == (2, 16, 7, 7)
    assert block.conv1[0].groups == 4 and block.conv2[0].groups == 4


def test_resnet_rejects_mismatched_stages():
    with pytest.raises(ValueError, match="one entry per stage"):
        ResNetConfig(widths=(8, 16), blocks=(1,)).build()


def vgg_params(cfg: VGGConfig) -> int:
    total, c, size = 0, cfg.in_channels, cfg.image_size
    for width in cfg.widths:
        for i in range(cfg.convs_per_stage):
            total += cbr(c, width, 3, groups=cfg.groups if i > 0 else 1)
            c = width
        size //= 2
    return total + linear(c * size * size, cfg.hidden) + linear(cfg.hidden, cfg.num_classes)


@pytest.mark.parametrize("cfg", [
    VGGConfig(),
    VGGConfig(groups=4),
    VGGConfig(widths=(16, 32), convs_per_stage=3, groups=8, hidden=64),
], ids=["default", "groups4", "two-stages"])
def test_vgg_parameters(cfg):
    model = cfg.build()
    assert n_params(model) == vgg_params(cfg)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, cfg.num_classes)


def test_vgg_first_conv_of_each_stage_is_dense():
    model = VGGConfig(groups=4).build()
    groups = [m.groups for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert groups == [1, 4, 1, 4, 1, 4]


def test_vgg_flatten_size_follows_image_size():
    # 28 -> 14 -> 7 -> 3: the dense layer sees 128 * 3 * 3 = 1152 features.
    assert [m for m in VGGConfig().build() if isinstance(m, nn.Linear)][0].in_features == 1152


def alexnet_params(cfg: AlexNetConfig) -> int:
    total, c = 0, cfg.in_channels
    for width, k in zip(cfg.widths, cfg.kernels):
        total += cbr(c, width, k) if cfg.norm == "batch" else conv(c, width, k, bias=True)  # LRN has no weights
        c = width
    # 28 -> 14 -> 7 -> 3 after the three overlapping 3x3/2 poolings
    return total + linear(c * 3 * 3, cfg.hidden) + linear(cfg.hidden, cfg.hidden) + linear(cfg.hidden, cfg.num_classes)


@pytest.mark.parametrize("cfg", [
    AlexNetConfig(),
    AlexNetConfig(norm="lrn"),
    AlexNetConfig(widths=(8, 16, 24, 24, 16), kernels=(5, 3, 3, 3, 3), hidden=64, norm="none"),
], ids=["default", "lrn", "small"])
def test_alexnet_parameters(cfg):
    model = cfg.build().eval()
    assert n_params(model) == alexnet_params(cfg)
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, cfg.num_classes)


def test_alexnet_pools_and_norms_where_the_paper_does():
    model = AlexNetConfig(norm="lrn").build()
    kinds = [type(m).__name__ for m in model if not isinstance(m, (nn.ReLU, nn.Flatten))]
    assert kinds == ["Conv2d", "LocalResponseNorm", "MaxPool2d", "Conv2d", "LocalResponseNorm", "MaxPool2d",
                     "Conv2d", "Conv2d", "Conv2d", "MaxPool2d",
                     "Dropout", "Linear", "Dropout", "Linear", "Linear"]
    pools = [m for m in model if isinstance(m, nn.MaxPool2d)]
    assert all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # overlapping pooling


def test_alexnet_rejects_bad_options():
    with pytest.raises(ValueError, match="norm"):
        AlexNetConfig(norm="layer").build()
    with pytest.raises(ValueError, match="five"):
        AlexNetConfig(widths=(8, 16, 32)).build()


def inception_params(cfg: InceptionConfig) -> int:
    n = cfg.factorised_n
    total, c = cbr(cfg.in_channels, cfg.stem, 3), cfg.stem
    for spec in cfg.modules:
        if spec == "pool":
            continue
        b1, b3, bn_, bp = spec
        r3, rn = max(8, b3 // 2), max(8, bn_ // 2)
        total += cbr(c, b1, 1)
        total += cbr(c, r3, 1) + cbr(r3, b3, 3)
        total += cbr(c, rn, 1) + cbr(rn, bn_, (1, n)) + cbr(bn_, bn_, (n, 1))
        total += cbr(c, bp, 1)
        c = b1 + b3 + bn_ + bp
    return total + linear(c, cfg.num_classes)


@pytest.mark.parametrize("cfg", [
    InceptionConfig(),
    InceptionConfig(stem=16, modules=((8, 16, 8, 8), "pool", (12, 20, 4, 6)), factorised_n=3),
], ids=["default", "small"])
def test_inception_parameters(cfg):
    assert n_params(cfg.build()) == inception_params(cfg)


def test_inception_module_concatenates_branch_widths():
    module = InceptionModule(12, b1=5, b3=7, bn=9, bp=3, n=5).eval()
    x = torch.randn(2, 12, 14, 14)
    with torch.no_grad():
        widths = [branch(x).shape for branch in (module.branch1, module.branch3, module.branchn, module.branchp)]
        out = module(x)
    assert [s[1] for s in widths] == [5, 7, 9, 3]
    assert all(s[2:] == (14, 14) for s in widths)  # every branch keeps H and W
    assert out.shape == (2, 5 + 7 + 9 + 3, 14, 14)
    assert module.out_channels == 24


def test_inception_module_outputs_through_the_net():
    cfg = InceptionConfig()
    model = cfg.build().eval()
    seen = []
    for m in model:
        if isinstance(m, InceptionModule):
            m.register_forward_hook(lambda mod, inp, out: seen.append(tuple(out.shape)))
    with torch.no_grad():
        model(torch.randn(1, 1, 28, 28))
    assert seen == [(1, 80, 28, 28), (1, 128, 14, 14), (1, 128, 14, 14), (1, 192, 7, 7)]


def test_inception_factorised_kernels():
    module = InceptionModule(8, 8, 8, 16, 8, n=7)
    kernels = [m.kernel_size for m in module.branchn.modules() if isinstance(m, nn.Conv2d)]
    assert kernels == [(1, 1), (1, 7), (7, 1)]


def test_build_config_applies_overrides():
    cfg = build_config("resnet", {"widths": [8, 16], "blocks": [1, 1], "groups": 2})
    assert cfg == ResNetConfig(widths=(8, 16), blocks=(1, 1), groups=2)
    assert isinstance(cfg.widths, tuple)


def test_build_config_defaults():
    for arch, cls in ARCHITECTURES.items():
        assert build_config(arch) == cls()
        assert build_config(arch, {}) == cls()


def test_build_config_rejects_unknown_arch():
    with pytest.raises(ValueError, match=r"unknown architecture 'googlenet'; choose from \['alexnet', 'inception'"):
        build_config("googlenet")


def test_build_config_rejects_unknown_option():
    with pytest.raises(ValueError, match=r"lenet has no option\(s\) \['depth', 'widths'\]; it has \[.*'activation'"):
        build_config("lenet", {"widths": [1], "depth": 3, "dropout": 0.1})


@pytest.mark.parametrize("arch", ["lenet", "vgg", "resnet", "mobilenet", "inception"])
def test_config_survives_json_round_trip(arch):
    cfg = ARCHITECTURES[arch]()
    again = build_config(arch, json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg
    assert hash(again) == hash(cfg)  # frozen configs are hashable only when they hold no lists
