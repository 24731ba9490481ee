"""Backbones and registry (SPEC 7, 12 items 34-35): sizes, stems, the stage/head interface, fidelity to references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from aikd.models import Backbone, BiFPNc, Critic, create_model, list_models, register_model

# name -> list of (kwargs, nominal input size); names not listed build with no kwargs at 32x32.
BACKBONE_VARIANTS = {
    "resnet18": [({"stem": "imagenet"}, 224), ({"stem": "cifar"}, 32)],
    "densenet121": [({"stem": "imagenet"}, 224), ({"stem": "cifar"}, 32)],
}
NON_BACKBONES = {"critic", "bifpnc"}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def backbone_variants(name: str) -> list[tuple[dict, int]]:
    return BACKBONE_VARIANTS.get(name, [({}, 32)])


# --- registry -----------------------------------------------------------------------------------------------------


def test_registry_lists_every_spec_model():
    expected = {"preact_resnet18", "resnet18", "resnet18_cifar", "densenet121", "wrn16_2", "small_cnn", "critic",
                "bifpnc"}
    assert expected <= set(list_models())
    assert list_models() == sorted(list_models())


def test_config_backbones_are_the_registered_backbones():
    """The torch-free table `--model` is checked against (aikd.config.BACKBONES) names every registered backbone."""
    from aikd.config import BACKBONES
    assert set(BACKBONES) == set(list_models()) - NON_BACKBONES, "a new model's name goes into aikd.config.BACKBONES"


def test_unknown_model_name_raises_value_error_naming_valid_ones():
    with pytest.raises(ValueError) as excinfo:
        create_model("no_such_model", num_classes=10)
    message = str(excinfo.value)
    assert "no_such_model" in message
    for name in list_models():
        assert name in message


def test_registering_a_different_function_under_a_taken_name_raises():
    def small_cnn(num_classes):  # same __name__ as a registered model, different function
        return nn.Linear(3, num_classes)

    before = list_models()
    with pytest.raises(ValueError, match="already registered"):
        register_model(small_cnn)
    assert list_models() == before
    assert not isinstance(create_model("small_cnn", 10), nn.Linear)


@pytest.mark.parametrize("name,kwargs", [("resnet18", {"stem": "vgg"}), ("densenet121", {"stem": "x"})])
def test_unknown_stem_raises(name, kwargs):
    with pytest.raises(ValueError, match="stem"):
        create_model(name, 10, **kwargs)


# --- parameter counts (SPEC 7, [V] figures) -----------------------------------------------------------------------


@pytest.mark.parametrize("name,num_classes,kwargs,expected", [
    ("preact_resnet18", 100, {}, 11_217_444),
    ("preact_resnet18", 200, {}, 11_268_744),
    ("resnet18", 100, {}, 11_227_812),
    ("resnet18", 200, {}, 11_279_112),
    ("resnet18", 120, {"stem": "imagenet"}, 11_238_072),
    ("resnet18", 67, {}, 11_210_883),
    ("resnet18", 40, {}, 11_197_032),
    ("resnet18", 100, {"stem": "cifar"}, 11_220_132),
    ("resnet18_cifar", 100, {}, 11_220_132),
    ("densenet121", 100, {"stem": "cifar"}, 7_048_548),
    ("densenet121", 200, {"stem": "cifar"}, 7_151_048),
    ("densenet121", 100, {}, 7_056_356),
    ("densenet121", 200, {"stem": "imagenet"}, 7_158_856),
    ("densenet121", 120, {}, 7_076_856),
    ("densenet121", 67, {}, 7_022_531),
    ("wrn16_2", 100, {}, 703_060),
])
def test_parameter_count_matches_spec(name, num_classes, kwargs, expected):
    assert count_parameters(create_model(name, num_classes, **kwargs)) == expected


def test_wrn16_2_unused_batchnorm_accounts_for_256_parameters():
    model = create_model("wrn16_2", 100)
    assert count_parameters(model) - count_parameters(model.unused_bn) == 702_804


def test_small_cnn_is_small():
    assert count_parameters(create_model("small_cnn", 100)) < 100_000


# --- every registered model: forward and backward (SPEC 12 item 34) ----------------------------------------------


def run_forward_backward_backbone(model: Backbone, size: int, num_classes: int) -> None:
    model.train()
    x = torch.randn(2, 3, size, size)
    features = model.forward_features(x)
    assert len(features) == len(model.stage_channels)
    for feature, channels in zip(features, model.stage_channels):
        assert feature.shape[:2] == (2, channels)
    logits, pooled = model.forward_head(features, return_pooled=True)
    assert logits.shape == (2, num_classes)
    assert pooled.shape == (2, model.stage_channels[-1])
    assert torch.isfinite(logits).all()
    model.zero_grad(set_to_none=True)
    logits.square().mean().backward()
    used = [p for n, p in model.named_parameters() if not n.startswith("unused_bn")]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in used)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_forward_and_backward(name):
    """Iterates the registry so a newly registered model is covered (or must be handled here explicitly)."""
    num_classes = 10
    if name == "critic":
        model = create_model(name, num_classes)
        assert isinstance(model, Critic)
        x = torch.randn(4, num_classes, requires_grad=True)
        scores = model(model.prepare(x))
        assert scores.shape == (4,)
        scores.sum().backward()
        assert x.grad is not None
        return
    if name == "bifpnc":
        model = create_model(name, num_classes, stage_channels=[16, 32, 64], width=1)
        assert isinstance(model, BiFPNc)
        feats = [torch.randn(2, c, s, s, requires_grad=True) for c, s in ((16, 8), (32, 4), (64, 2))]
        refined, logits = model(feats)
        assert logits.shape == (2, num_classes)
        (logits.sum() + sum(r.sum() for r in refined)).backward()
        assert all(f.grad is not None for f in feats)
        return
    assert name not in NON_BACKBONES
    for kwargs, nominal_size in backbone_variants(name):
        model = create_model(name, num_classes, **kwargs)
        assert isinstance(model, Backbone), f"{name} must implement the Backbone interface"
        for size in sorted({8, 32, nominal_size}):
            run_forward_backward_backbone(model, size, num_classes)


@pytest.mark.parametrize("name,kwargs", [
    (name, kwargs) for name in list_models() if name not in NON_BACKBONES for kwargs, _ in backbone_variants(name)
])
def test_forward_equals_head_of_features(name, kwargs):
    model = create_model(name, 7, **kwargs).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        assert torch.equal(model.forward_head(features), logits)
        head_logits, pooled = model.forward_head(features, return_pooled=True)
        assert torch.equal(head_logits, logits)
        assert pooled.shape == (2, model.stage_channels[-1])


# --- stems and stage geometry (SPEC 4.1 table, 12 item 35) --------------------------------------------------------


@pytest.mark.parametrize("name,kwargs,size,expected_spatial,expected_channels", [
    ("preact_resnet18", {}, 32, [32, 16, 8, 4], [64, 128, 256, 512]),
    ("resnet18_cifar", {}, 32, [32, 16, 8, 4], [64, 128, 256, 512]),
    ("resnet18", {"stem": "cifar"}, 32, [32, 16, 8, 4], [64, 128, 256, 512]),
    ("densenet121", {"stem": "cifar"}, 32, [32, 16, 8, 4], [256, 512, 1024, 1024]),
    ("wrn16_2", {}, 32, [32, 16, 8], [32, 64, 128]),
    ("small_cnn", {}, 32, [32, 16, 8], [16, 32, 64]),
    ("resnet18", {"stem": "imagenet"}, 224, [56, 28, 14, 7], [64, 128, 256, 512]),
    ("densenet121", {"stem": "imagenet"}, 224, [56, 28, 14, 7], [256, 512, 1024, 1024]),
])
def test_stage_geometry(name, kwargs, size, expected_spatial, expected_channels):
    model = create_model(name, 10, **kwargs).eval()
    assert model.stage_channels == expected_channels
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, size, size))
    assert [f.shape[-1] for f in features] == expected_spatial
    assert [f.shape[-2] for f in features] == expected_spatial
    assert [f.shape[1] for f in features] == expected_channels


def test_cifar_stems_have_no_downsampling_or_maxpool():
    preact = create_model("preact_resnet18", 10)
    assert preact.conv1.kernel_size == (3, 3) and preact.conv1.stride == (1, 1)
    dense = create_model("densenet121", 10, stem="cifar")
    assert dense.conv1.kernel_size == (3, 3) and dense.conv1.stride == (1, 1) and dense.conv1.out_channels == 64
    resnet = create_model("resnet18_cifar", 10)
    assert resnet.conv1.kernel_size == (3, 3) and resnet.conv1.stride == (1, 1)
    for model in (preact, dense, resnet):
        assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


# --- fidelity to reference definitions -----------------------------------------------------------------------------


def test_resnet18_imagenet_stem_is_torchvision_resnet18():
    ours = create_model("resnet18", 100)
    reference = torchvision.models.resnet18(num_classes=100)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    reference.load_state_dict(ours.state_dict())
    ours.eval()
    reference.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-6)


def test_resnet18_imagenet_stem_init_is_torchvision_init():
    model = create_model("resnet18", 100)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
    conv = model.layer4[1].conv2  # Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (9 * 512))
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 512)), rel=0.03)


def test_densenet121_imagenet_stem_is_torchvision_densenet121_at_even_sizes():
    ours = create_model("densenet121", 100)
    reference = torchvision.models.densenet121(num_classes=100)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    reference.load_state_dict(ours.state_dict())
    ours.eval()
    reference.eval()
    x = torch.randn(1, 3, 64, 64)  # maps entering transitions are 16, 8, 4: even, so ceil_mode changes nothing
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)
    assert torch.equal(ours.classifier.bias, torch.zeros(100))


def test_densenet121_imagenet_transition_keeps_a_1x1_map():
    pool = create_model("densenet121", 10).features.transition3.pool
    x = torch.randn(1, 4, 1, 1)
    assert torch.equal(pool(x), x)


def test_resnet18_cifar_equals_standard_post_activation_resnet18_with_cifar_stem():
    """FRSKD's block (ReLU at the next block's input) is the textbook post-activation block (SPEC 7.5)."""
    ours = create_model("resnet18_cifar", 10)
    reference = torchvision.models.resnet18(num_classes=10)
    reference.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    reference.maxpool = nn.Identity()
    reference.load_state_dict(ours.state_dict())
    ours.eval()
    reference.eval()
    with torch.no_grad():
        for m in ours.modules():  # non-trivial BN statistics so the comparison means something
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        reference.load_state_dict(ours.state_dict())
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
        features = ours.forward_features(x)
        assert (features[0] < 0).any(), "stage outputs are the pre-ReLU sums"


def test_resnet18_cifar_uses_pytorch_default_init():
    torch.manual_seed(1)
    model = create_model("resnet18_cifar", 10)
    conv = model.layer4[1].conv2  # default kaiming_uniform(a=sqrt(5)): bound = 1 / sqrt(fan_in)
    bound = 1 / math.sqrt(512 * 9)
    assert conv.weight.abs().max().item() <= bound
    assert conv.weight.abs().max().item() > 0.95 * bound


def test_preact_block_shortcut_carries_the_preactivated_input():
    """The CS-KD quirk (SPEC 7.1): identity shortcut adds ReLU(BN1(x)), not x."""
    model = create_model("preact_resnet18", 10).eval()
    block = model.layer1[1]
    assert isinstance(block.shortcut, nn.Identity)
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        preactivated = F.relu(block.bn1(x))
        expected = block.conv2(F.relu(block.bn2(block.conv1(preactivated)))) + preactivated
        torch.testing.assert_close(block(x), expected, rtol=0, atol=1e-6)
        projection = model.layer2[0]
        assert isinstance(projection.shortcut, nn.Conv2d) and projection.shortcut.bias is None
        x = torch.randn(2, 64, 8, 8)
        preactivated = F.relu(projection.bn1(x))
        expected = (projection.conv2(F.relu(projection.bn2(projection.conv1(preactivated))))
                    + projection.shortcut(preactivated))
        torch.testing.assert_close(projection(x), expected, rtol=0, atol=1e-6)


def test_preact_head_pools_the_last_stage_directly():
    model = create_model("preact_resnet18", 10).eval()
    features = [torch.randn(2, c, 4, 4) for c in model.stage_channels]
    with torch.no_grad():
        expected = model.linear(features[-1].mean(dim=(2, 3)))
        torch.testing.assert_close(model.forward_head(features), expected, rtol=0, atol=1e-6)


def test_wrn16_2_blocks_and_head_follow_frskd():
    model = create_model("wrn16_2", 10).eval()
    first = model.block1[0]  # 16 -> 32: shortcut conv reads ReLU(x); no BN before conv1
    assert not hasattr(first, "bn1")
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        activated = F.relu(x)
        expected = first.conv_shortcut(activated) + first.conv2(F.relu(first.bn2(first.conv1(activated))))
        torch.testing.assert_close(first(x), expected, rtol=0, atol=1e-6)
        same = model.block1[1]  # 32 -> 32: identity shortcut carries x itself
        x = torch.randn(2, 32, 8, 8)
        expected = x + same.conv2(F.relu(same.bn2(same.conv1(F.relu(x)))))
        torch.testing.assert_close(same(x), expected, rtol=0, atol=1e-6)
        features = [torch.randn(2, c, 4, 4) for c in model.stage_channels]
        expected = model.fc(F.relu(features[-1]).mean(dim=(2, 3)))
        torch.testing.assert_close(model.forward_head(features), expected, rtol=0, atol=1e-6)
        x = torch.randn(2, 3, 16, 16)
        before = model(x)
        model.unused_bn.weight.fill_(5.0)
        assert torch.equal(model(x), before), "the extra BatchNorm2d(128) must not affect the output"


def test_wrn16_2_init_follows_frskd():
    torch.manual_seed(2)
    model = create_model("wrn16_2", 10)
    conv = model.block3[1].conv2
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 128)), rel=0.03)
    assert torch.equal(model.fc.bias, torch.zeros(10))
    assert torch.equal(model.block2bn.weight, torch.ones(64))


def test_densenet121_cifar_head_and_transitions():
    model = create_model("densenet121", 10, stem="cifar").eval()
    assert [model.trans1.conv.out_channels, model.trans2.conv.out_channels, model.trans3.conv.out_channels] == [
        128, 256, 512]
    features = [torch.randn(2, c, 2, 2) for c in model.stage_channels]
    with torch.no_grad():
        expected = model.linear(F.relu(model.bn(features[-1])).mean(dim=(2, 3)))
        torch.testing.assert_close(model.forward_head(features), expected, rtol=0, atol=1e-6)
