"""FRSKD self-teacher BiFPNc (SPEC 4.2; 12 items 21, 22, 23, 27)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from aikd.models import BiFPNc, MaxPool2dSamePadding, create_model, normalized_fusion_weights

WRN16_2_CHANNELS = [32, 64, 128]
RESNET18_CHANNELS = [64, 128, 256, 512]
WRN16_2_PARAMETERS = 703_060



def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- parameter counts (item 23) -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage_channels,num_classes,width,expected", [
    (WRN16_2_CHANNELS, 100, 1, 134_317),
    (WRN16_2_CHANNELS, 100, 2, 411_885),
    (WRN16_2_CHANNELS, 100, 3, 832_813),
    (RESNET18_CHANNELS, 100, 2, 6_375_794),
    (RESNET18_CHANNELS, 200, 2, 6_478_294),
])
def test_bifpnc_parameter_count_matches_spec_table(stage_channels, num_classes, width, expected):
    model = create_model("bifpnc", num_classes, stage_channels=stage_channels, width=width)
    assert count_parameters(model) == expected


def test_bifpnc_defaults_are_resnet18_width_2_depth_2():
    assert count_parameters(create_model("bifpnc", 100)) == 6_375_794


@pytest.mark.parametrize("width,expected_ratio", [(1, 0.191), (2, 0.586), (3, 1.185)])
def test_bifpnc_ratio_to_wrn16_2(width, expected_ratio):
    model = create_model("bifpnc", 100, stage_channels=WRN16_2_CHANNELS, width=width)
    assert round(count_parameters(model) / WRN16_2_PARAMETERS, 3) == expected_ratio
    assert count_parameters(create_model("wrn16_2", 100)) == WRN16_2_PARAMETERS


@pytest.mark.parametrize("channels,expected_ratio", [(128, 0.298), (256, 0.969)])
def test_uniform_bifpn_ratio_to_wrn16_2(channels, expected_ratio):
    model = create_model("bifpnc", 100, stage_channels=WRN16_2_CHANNELS, arch="bifpn", channels=channels)
    assert round(count_parameters(model) / WRN16_2_PARAMETERS, 3) == expected_ratio


def test_unknown_arch_raises():
    with pytest.raises(ValueError, match="arch"):
        create_model("bifpnc", 10, arch="fpn")


# --- shapes (item 22) -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage_channels,spatial,expected_channels", [
    (RESNET18_CHANNELS, [32, 16, 8, 4], [128, 256, 512, 1024]),
    (WRN16_2_CHANNELS, [32, 16, 8], [64, 128, 256]),
    (RESNET18_CHANNELS, [56, 28, 14, 7], [128, 256, 512, 1024]),
])
def test_refined_feature_and_logit_shapes(stage_channels, spatial, expected_channels):
    model = create_model("bifpnc", 100, stage_channels=stage_channels, width=2)
    feats = [torch.randn(2, c, s, s) for c, s in zip(stage_channels, spatial)]
    with torch.no_grad():
        refined, logits = model(feats)
    assert [tuple(r.shape) for r in refined] == [(2, c, s, s) for c, s in zip(expected_channels, spatial)]
    assert logits.shape == (2, 100)
    assert all((r >= 0).all() for r in refined), "refined features are ReLU(T_i)"


def test_refined_shapes_from_real_backbones():
    for backbone_name, expected in (("resnet18_cifar", [(128, 32), (256, 16), (512, 8), (1024, 4)]),
                                    ("wrn16_2", [(64, 32), (128, 16), (256, 8)])):
        backbone = create_model(backbone_name, 100)
        teacher = create_model("bifpnc", 100, stage_channels=backbone.stage_channels)
        with torch.no_grad():
            refined, logits = teacher(backbone.forward_features(torch.randn(2, 3, 32, 32)))
        assert [tuple(r.shape[1:]) for r in refined] == [(c, s, s) for c, s in expected]
        assert logits.shape == (2, 100)


def test_uniform_bifpn_shapes():
    model = create_model("bifpnc", 10, stage_channels=WRN16_2_CHANNELS, arch="bifpn", channels=128)
    feats = [torch.randn(2, c, s, s) for c, s in zip(WRN16_2_CHANNELS, (32, 16, 8))]
    with torch.no_grad():
        refined, logits = model(feats)
    assert [tuple(r.shape) for r in refined] == [(2, 128, 32, 32), (2, 128, 16, 16), (2, 128, 8, 8)]
    assert logits.shape == (2, 10)
    assert all(isinstance(up.conv, nn.Identity) for up in model.upsample)
    assert all(isinstance(down.conv, nn.Identity) for down in model.downsample)


def test_runs_on_tiny_maps_where_levels_are_not_exact_doublings():
    """224-stem ResNet-18 at 8x8 gives stage sizes 2, 1, 1, 1; the teacher must still run (SPEC D23)."""
    backbone = create_model("resnet18", 10)
    teacher = create_model("bifpnc", 10, stage_channels=backbone.stage_channels)
    feats = backbone.forward_features(torch.randn(2, 3, 8, 8))
    assert [f.shape[-1] for f in feats] == [2, 1, 1, 1]
    refined, logits = teacher(feats)
    assert [r.shape[-1] for r in refined] == [2, 1, 1, 1]
    logits.sum().backward()
    assert backbone.conv1.weight.grad is not None, "the teacher's CE reaches the backbone (features not detached)"


# --- node equations ------------------------------------------------------------------------------------------------


def test_forward_follows_the_node_equations():
    """Recompute SPEC 4.2's equations from the module's parts for n = 3 (covers 2- and 3-input nodes)."""
    torch.manual_seed(0)
    model = create_model("bifpnc", 5, stage_channels=[4, 8, 16], width=2, depth=2).eval()
    with torch.no_grad():
        for raw in list(model.top_down_weights) + list(model.bottom_up_weights):
            raw.uniform_(-0.5, 2.0)
        raw_last = model.bottom_up_weights[-1]
        raw_last[0] = 1.5  # keep the last node's weights non-degenerate
        feats = [torch.randn(2, c, s, s) for c, s in ((4, 8), (8, 4), (16, 2))]
        relu = F.relu

        def fusion(raw):
            clipped = raw.clamp(min=0)
            return clipped / (clipped.sum() + 1e-6)

        L = [model.lateral[i](relu(feats[i])) for i in range(3)]
        L2 = {i: model.lateral2[i - 1](relu(feats[i])) for i in (1, 2)}
        P = {2: L[2]}
        for i in (1, 0):
            w = fusion(model.top_down_weights[i])
            up = model.upsample[i].conv(F.interpolate(relu(P[i + 1]), scale_factor=2, mode="nearest"))
            P[i] = model.top_down_blocks[i](w[0] * relu(L[i]) + w[1] * up)
        T = {0: P[0]}
        w = fusion(model.bottom_up_weights[0])
        down = model.downsample[0](relu(T[0]))
        T[1] = model.bottom_up_blocks[0](w[0] * relu(L2[1]) + w[1] * relu(P[1]) + w[2] * down)
        w = fusion(model.bottom_up_weights[1])
        down = model.downsample[1](relu(T[1]))
        T[2] = model.bottom_up_blocks[1](w[0] * relu(L2[2]) + w[1] * down)
        expected_logits = model.fc(relu(T[2]).mean(dim=(2, 3)))

        refined, logits = model(feats)
    for i in range(3):
        torch.testing.assert_close(refined[i], relu(T[i]), rtol=0, atol=1e-6)
    torch.testing.assert_close(logits, expected_logits, rtol=0, atol=1e-6)


def test_fusion_weights_start_at_one_and_node_counts():
    model = create_model("bifpnc", 10, stage_channels=RESNET18_CHANNELS)
    assert [w.numel() for w in model.top_down_weights] == [2, 2, 2]
    assert [w.numel() for w in model.bottom_up_weights] == [3, 3, 2]
    for raw in list(model.top_down_weights) + list(model.bottom_up_weights):
        assert torch.equal(raw, torch.ones_like(raw))


def test_depthwise_separable_block_structure():
    model = create_model("bifpnc", 10, stage_channels=WRN16_2_CHANNELS, width=1, depth=3)
    block = model.bottom_up_blocks[0].conv
    assert len(block) == 3
    first, later = block[0], block[1]
    assert isinstance(first[0], nn.Conv2d) and first[0].groups == first[0].in_channels
    assert isinstance(first[-1], nn.BatchNorm2d)
    assert isinstance(later[0], nn.ReLU) and isinstance(later[-1], nn.BatchNorm2d)


# --- "same" max-pool (item 27) --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 8, 14, 28, 56])
def test_same_padding_max_pool_output_is_ceil_half(size):
    pool = MaxPool2dSamePadding(3, 2)
    assert pool(torch.randn(1, 2, size, size)).shape[-2:] == (math.ceil(size / 2),) * 2
    assert pool(torch.randn(1, 2, size, 2 * size + 1)).shape[-2:] == (math.ceil(size / 2), size + 1)


def test_same_padding_max_pool_hand_example_even_size():
    """H = 4: pad = (2 - 1) * 2 - 4 + 3 = 1, i.e. 0 before and 1 after."""
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(MaxPool2dSamePadding(3, 2)(x), torch.tensor([[[[10.0, 11.0], [14.0, 15.0]]]]))


def test_same_padding_max_pool_pads_with_zeros_on_both_sides_for_odd_size():
    """H = 7: pad = 2, one zero before and one after; a constant -1 map shows where padding entered."""
    out = MaxPool2dSamePadding(3, 2)(-torch.ones(1, 1, 7, 7))
    expected = torch.zeros(4, 4)
    expected[1:3, 1:3] = -1.0
    assert torch.equal(out[0, 0], expected)


# --- fusion weights (item 21) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_inputs", [2, 3])
def test_fusion_weights_invariants_on_random_raw_weights(num_inputs):
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        raw = torch.randn(num_inputs, generator=generator) * 2
        weights = normalized_fusion_weights(raw)
        total = raw.clamp(min=0).sum()
        assert (weights >= 0).all()
        assert weights.sum().item() == pytest.approx((total / (total + 1e-6)).item(), abs=1e-6)
        assert weights.sum().item() <= 1.0 + 1e-7
        if total >= 0.1:
            assert abs(weights.sum().item() - 1.0) <= 1e-5


def test_fusion_weights_all_zero_when_raw_weights_non_positive():
    weights = normalized_fusion_weights(torch.tensor([-1.0, 0.0, -3.0]))
    assert torch.equal(weights, torch.zeros(3))


def test_fusion_weights_formula_and_gradient():
    raw = torch.tensor([1.0, 3.0, -2.0], requires_grad=True)
    weights = normalized_fusion_weights(raw)
    torch.testing.assert_close(weights, torch.tensor([1.0, 3.0, 0.0]) / (4.0 + 1e-6), rtol=0, atol=1e-7)
    weights[0].backward()
    assert raw.grad[0] > 0 and raw.grad[1] < 0 and raw.grad[2] == 0


def test_upsampling_to_twice_the_size_equals_fixed_x2_nearest():
    x = torch.randn(2, 3, 5, 7)
    model = create_model("bifpnc", 10, stage_channels=[4, 8], arch="bifpn", channels=3)
    assert torch.equal(model.upsample[0](x, torch.Size([10, 14])), nn.Upsample(scale_factor=2, mode="nearest")(x))


def test_bifpnc_is_not_a_backbone_and_checks_input_count():
    model = create_model("bifpnc", 10, stage_channels=WRN16_2_CHANNELS)
    assert isinstance(model, BiFPNc)
    assert not hasattr(model, "forward_features")
    with pytest.raises(ValueError):
        model([torch.randn(1, 32, 8, 8)])
