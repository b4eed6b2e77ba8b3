"""The layer registry: shapes inferred per layer type, shorthand, init, and one-sentence errors."""

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cnntrain.errors import ModelConfigError
from cnntrain.models.builder import build_model
from cnntrain.models.registry import available_layers, register, unregister

IMAGE = (1, 28, 28)


def shapes(layers, input_shape=IMAGE):
    """Output shape of every layer, as the summary would show it."""
    _, rows = build_model(layers, input_shape, "t")
    return [r.output_shape for r in rows]


def error(layers, input_shape=IMAGE) -> str:
    with pytest.raises(ModelConfigError) as info:
        build_model(layers, input_shape, "mine")
    return str(info.value)


# ---------------------------------------------------------------------------------------------- shapes


def test_conv_without_and_with_padding():
    assert shapes([{"conv2d": {"out_channels": 20, "kernel_size": 5}}]) == [(20, 24, 24)]
    assert shapes([{"conv2d": {"out_channels": 8, "kernel_size": 3, "padding": 1}}]) == [(8, 28, 28)]
    assert shapes([{"conv2d": {"out_channels": 4, "kernel_size": 3, "stride": 2}}]) == [(4, 13, 13)]


def test_conv_infers_in_channels_from_previous_layer():
    model, _ = build_model(
        [{"conv2d": {"out_channels": 6, "kernel_size": 3}}, {"conv2d": {"out_channels": 9, "kernel_size": 3}}],
        (3, 10, 10),
    )
    assert model[0].in_channels == 3 and model[1].in_channels == 6


def test_pools_with_padding_and_default_stride():
    assert shapes([{"maxpool2d": 2}]) == [(1, 14, 14)]
    assert shapes([{"maxpool2d": {"kernel_size": 2, "padding": 1}}], (128, 7, 7)) == [(128, 4, 4)]
    assert shapes([{"avgpool2d": {"kernel_size": 3, "stride": 1}}]) == [(1, 26, 26)]


def test_flatten_linear_and_adaptive_pool():
    layers = [
        {"conv2d": {"out_channels": 5, "kernel_size": 3}},
        {"adaptive_avgpool2d": 2},
        "flatten",
        {"linear": 7},
        "log_softmax",
    ]
    assert shapes(layers, (3, 32, 32)) == [(5, 30, 30), (5, 2, 2), (20,), (7,), (7,)]


def test_batchnorm_picks_1d_or_2d():
    model, _ = build_model(["batchnorm", "flatten", "batchnorm"], (4, 3, 3))
    assert isinstance(model[0], nn.BatchNorm2d) and model[0].num_features == 4
    assert isinstance(model[2], nn.BatchNorm1d) and model[2].num_features == 36


def test_activations_keep_shape():
    layers = ["relu", "gelu", "silu", "tanh", "sigmoid", "identity", {"leaky_relu": 0.2}, {"dropout2d": 0.1}]
    assert shapes(layers, (2, 5, 5)) == [(2, 5, 5)] * len(layers)


def test_scalar_shorthand_fills_primary_argument():
    model, rows = build_model(["flatten", {"linear": 500}, {"dropout": 0.25}, {"leaky_relu": 0.1}], IMAGE)
    assert model[1].out_features == 500 and model[2].p == 0.25 and model[3].negative_slope == 0.1
    assert [r.detail for r in rows] == ["", "500", "0.25", "0.1"]


def test_yaml_style_entries_and_null_args():
    cfg = OmegaConf.create({"layers": [{"maxpool2d": {"kernel_size": 2}}, {"flatten": None}, {"linear": 3}]})
    assert shapes(cfg.layers) == [(1, 14, 14), (196,), (3,)]


def test_one_child_per_config_item_and_train_mode_restored():
    model, rows = build_model([{"conv_block": 8}, "flatten", {"linear": 4}], IMAGE)
    assert len(model) == 3 and [r.index for r in rows] == [1, 2, 3]
    assert all(m.training for m in model.modules())


def test_conv_block_parts_order_and_options():
    model, rows = build_model(
        [
            {
                "conv_block": {
                    "out_channels": 8,
                    "batchnorm": True,
                    "dropout": 0.3,
                    "activation": {"leaky_relu": 0.1},
                    "pool_type": "avg",
                    "order": ["conv", "activation", "batchnorm", "dropout", "pool"],
                }
            }
        ],
        IMAGE,
    )
    kinds = [type(m) for m in model[0]]
    assert kinds == [nn.Conv2d, nn.LeakyReLU, nn.BatchNorm2d, nn.Dropout2d, nn.AvgPool2d]
    assert rows[0].output_shape == (8, 14, 14)
    assert rows[0].detail == "Conv(8,k3,p1) LeakyReLU(0.1) BN Drop2d(0.3) AvgPool(2)"


def test_conv_block_switches_parts_off():
    model, _ = build_model(
        [{"conv_block": {"out_channels": 4, "pool": None, "dropout": 0.2, "dropout2d": False}}], IMAGE
    )
    assert [type(m) for m in model[0]] == [nn.Conv2d, nn.ReLU, nn.Dropout]


# ---------------------------------------------------------------------------------------------- init


def test_zeros_init_gives_zero_weight_and_keeps_bias():
    torch.manual_seed(0)
    model, _ = build_model(["flatten", {"linear": {"out_features": 5, "init": "zeros"}}], IMAGE)
    assert torch.count_nonzero(model[1].weight) == 0
    assert torch.count_nonzero(model[1].bias) > 0


def test_xavier_uniform_bound_respected():
    model, _ = build_model(["flatten", {"linear": {"out_features": 10, "init": "xavier_uniform"}}], (3136,))
    bound = math.sqrt(6 / (3136 + 10))
    weight = model[1].weight
    assert weight.abs().max() <= bound
    assert weight.abs().max() > 0.9 * bound


def test_init_on_conv_and_conv_block():
    model, _ = build_model(
        [
            {"conv2d": {"out_channels": 3, "kernel_size": 3, "init": "zeros"}},
            {"conv_block": {"out_channels": 3, "init": "zeros"}},
        ],
        IMAGE,
    )
    assert torch.count_nonzero(model[0].weight) == 0
    assert torch.count_nonzero(model[1][0].weight) == 0


# ---------------------------------------------------------------------------------------------- registry


def test_available_layers_has_the_required_names():
    required = {
        "conv2d",
        "linear",
        "batchnorm",
        "relu",
        "leaky_relu",
        "gelu",
        "silu",
        "tanh",
        "sigmoid",
        "dropout",
        "dropout2d",
        "maxpool2d",
        "avgpool2d",
        "adaptive_avgpool2d",
        "flatten",
        "log_softmax",
        "identity",
        "conv_block",
    }
    names = available_layers()
    assert required <= set(names) and names == sorted(names)


def test_registering_a_layer_makes_it_usable_from_a_config():
    @register("test_scale", primary="factor", doc="multiply by a constant")
    def test_scale(in_shape, factor: float = 2.0):
        return _Scale(factor)

    try:
        assert "test_scale" in available_layers()
        model, rows = build_model(["flatten", {"test_scale": 3.0}], (2, 2))
        assert torch.equal(model(torch.ones(1, 2, 2)), torch.full((1, 4), 3.0))
        assert rows[1].name == "test_scale" and rows[1].detail == "3.0"
    finally:
        unregister("test_scale")
    assert "test_scale" not in available_layers()


def test_registering_a_name_twice_is_a_programming_error():
    with pytest.raises(ValueError):
        register("relu")(lambda in_shape: nn.ReLU())


class _Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


# ---------------------------------------------------------------------------------------------- errors


def test_kernel_larger_than_input():
    layers = [{"conv2d": {"out_channels": 50, "kernel_size": 5}}] * 4
    msg = error(layers, (1, 14, 14))
    assert msg.startswith("model 'mine', layer 4 (conv2d")
    assert "input is 50x2x2, smaller than the kernel 5x5" in msg


def test_unknown_layer_suggests_and_lists():
    msg = error(["relu", "relu", "conv3d"])
    assert msg.startswith("model 'mine', layer 3: unknown layer 'conv3d' (did you mean 'conv2d'?); available: ")
    assert "adaptive_avgpool2d, avgpool2d" in msg


def test_unknown_argument_suggests_and_lists():
    msg = error([{"conv2d": {"out_channels": 4, "kernal_size": 5}}])
    assert msg.startswith("model 'mine', layer 1 (conv2d): unknown argument 'kernal_size'")
    assert "(did you mean 'kernel_size'?)" in msg
    assert "allowed: bias, init, kernel_size, out_channels, padding, stride" in msg


def test_missing_required_argument():
    msg = error([{"conv2d": {"kernel_size": 5}}])
    assert msg == "model 'mine', layer 1 (conv2d): missing required argument 'out_channels'"


def test_linear_on_unflat_input_says_add_flatten():
    layers = [{"conv2d": {"out_channels": 50, "kernel_size": 5}}, {"maxpool2d": 6}, {"linear": 500}]
    msg = error(layers)
    assert msg == "model 'mine', layer 3 (linear 500): input is 50x4x4, not flat; add 'flatten' before it"


@pytest.mark.parametrize(
    "layer, expected",
    [
        ({"dropout": "high"}, "layer 2 (dropout): p must be a number in [0, 1), got 'high'"),
        ({"dropout": 1.5}, "p must be a number in [0, 1), got 1.5"),
        ({"linear": 2.5}, "out_features must be an integer >= 1, got 2.5"),
        ({"linear": {"out_features": 3, "bias": "yes"}}, "bias must be true or false, got 'yes'"),
        ({"leaky_relu": "x"}, "negative_slope must be a number, got 'x'"),
        ({"relu": 3}, "(relu): takes no arguments, got 3"),
        ({"batchnorm": 3}, "(batchnorm): takes no shorthand value"),
    ],
)
def test_bad_argument_values(layer, expected):
    msg = error(["flatten", layer])
    assert msg.startswith("model 'mine', layer 2 (") and expected in msg


def test_entry_that_is_not_a_name_or_one_key_mapping():
    msg = error(["relu", "relu", "relu", "relu", {"linear": 3, "relu": None}])
    assert msg.startswith("model 'mine', layer 5")
    assert "each layer is a name or a one-key mapping, got {'linear': 3, 'relu': None}" in msg
    assert "layer 1" in error([42])


def test_unknown_init_lists_allowed():
    msg = error(["flatten", {"linear": {"out_features": 3, "init": "xavier"}}])
    assert "layer 2 (linear): unknown init 'xavier'" in msg
    assert "allowed: kaiming_normal, kaiming_uniform, normal, orthogonal, xavier_normal, xavier_uniform, zeros" in msg


def test_shape_errors_of_other_layers():
    assert "dropout2d needs a CxHxW input" in error(["flatten", "dropout2d"])
    assert "conv2d needs a CxHxW input" in error(["flatten", {"conv2d": {"out_channels": 3, "kernel_size": 1}}])
    assert "(with padding 1), smaller than the kernel 4x4" in error(
        [{"maxpool2d": {"kernel_size": 4, "padding": 1}}], (1, 1, 1)
    )
    assert "padding 2 is more than half the kernel 2x2" in error([{"maxpool2d": {"kernel_size": 2, "padding": 2}}])
    assert "not flat; add 'flatten'" in error(["log_softmax"])


def test_conv_block_errors_name_the_part():
    assert "(conv_block): unknown activation 'lrelu' (did you mean 'relu'?)" in error(
        [{"conv_block": {"out_channels": 4, "activation": "lrelu"}}]
    )
    assert "batchnorm is switched on but not listed in order" in error(
        [{"conv_block": {"out_channels": 4, "batchnorm": True, "order": ["conv", "pool"]}}]
    )
    assert "pool_type must be one of max, avg, got 'min'" in error(
        [{"conv_block": {"out_channels": 4, "pool_type": "min"}}]
    )
    msg = error([{"conv_block": {"out_channels": 4, "pool": 64}}])
    assert "layer 1 (conv_block" in msg and "pool: input is 4x28x28, smaller than the kernel 64x64" in msg


def test_any_other_failure_becomes_a_model_config_error():
    @register("test_broken")
    def test_broken(in_shape):
        return nn.Linear(3, 4)  # wrong on purpose: ignores the input shape

    try:
        msg = error(["flatten", "test_broken"])
    finally:
        unregister("test_broken")
    assert msg.startswith("model 'mine', layer 2 (test_broken): fails on input 784: ")
    assert "\n" not in msg


def test_bad_list_and_input_shape():
    assert "layers must be a non-empty list" in error([])
    assert "input_shape must be a list of positive sizes" in error(["relu"], (1, 0, 28))
    cfg = OmegaConf.create({"layers": [{"linear": "${dataset.num_classes}"}]})
    assert "cannot resolve its layers" in error(cfg.layers, (4,))


# ---------------------------------------------------------------------------------------------- MACs and blocks


def test_macs_counted_per_layer_in_the_dry_run():
    _, rows = build_model(
        [
            {"conv2d": {"out_channels": 4, "kernel_size": 3}},
            "relu",
            "flatten",
            {"linear": {"out_features": 3, "bias": False}},
        ],
        (2, 5, 5),
    )
    assert [r.macs for r in rows] == [4 * 2 * 9 * 3 * 3, 0, 0, 36 * 3]
    assert all(r.blocks == () for r in rows)


class _Pair(nn.Module):
    """A block whose output is not a tensor."""

    def forward(self, x):
        return x, x.sum()


class _Net(nn.Module):
    """A whole network in one layer, as a wrapped torchvision/timm model is: stem, a skipped block, head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, bias=False)
        self.act = nn.ReLU()
        self.pair = _Pair()
        self.unused = nn.Linear(2, 2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x):
        x, _ = self.pair(self.act(self.stem(x)))
        return self.head(x)

    def summary_blocks(self):
        return [
            ("stem", self.stem),
            ("act", self.act),
            ("pair", self.pair),
            ("unused", self.unused),
            ("head", self.head),
        ]


def test_summary_blocks_become_sub_rows():
    register("test_net")(lambda in_shape: _Net())
    try:
        model, rows = build_model(["test_net"], (1, 8, 8))
    finally:
        unregister("test_net")
    [row] = rows
    assert row.output_shape == (3,) and row.params == 36 + 6 + 435 and row.macs == 4 * 9 * 36 + 144 * 3
    assert [(b.index, b.name, b.detail) for b in row.blocks] == [
        (1, "stem", "Conv2d"),
        (2, "act", "ReLU"),
        (3, "pair", "_Pair"),
        (4, "unused", "Linear"),
        (5, "head", "Sequential"),
    ]
    assert [b.output_shape for b in row.blocks] == [(4, 6, 6), (4, 6, 6), (), (), (3,)]
    assert [b.params for b in row.blocks] == [36, 0, 0, 6, 435]
    assert [b.macs for b in row.blocks] == [4 * 9 * 36, 0, 0, 0, 144 * 3]
    assert all(b.blocks == () for b in row.blocks)
    assert not model[0].stem._forward_hooks and not model[0].stem._forward_pre_hooks, "the dry run's hooks are gone"


def test_summary_blocks_must_be_name_module_pairs():
    class Bad(nn.Identity):
        def summary_blocks(self):
            return [nn.ReLU()]

    register("test_bad_blocks")(lambda in_shape: Bad())
    try:
        msg = error(["test_bad_blocks"])
    finally:
        unregister("test_bad_blocks")
    assert "layer 1 (test_bad_blocks)" in msg and "summary_blocks() must return (name, module) pairs" in msg
