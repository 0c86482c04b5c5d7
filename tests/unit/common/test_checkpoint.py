from pathlib import Path

import pytest
import torch

from common.errors import ModelNotAvailableError
from common.ml.checkpoint import load_checkpoint, save_checkpoint
from common.ml.model import LITE_VARIANTS, ModelConfig, build_model, native_input_size


@pytest.mark.parametrize("arch", ["simple_cnn", *LITE_VARIANTS])
def test_checkpoint_round_trip_restores_architecture_weights_and_metadata(
    tmp_path: Path, arch: str
) -> None:
    config = ModelConfig(
        arch=arch, image_size=64, resize_size=72, mean=(0.1, 0.2, 0.3), temperature=1.7
    )
    model = build_model(config).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, config, {"model_name": "catdog", "lineage": {"git": "abc"}})

    loaded, loaded_config, metadata = load_checkpoint(path)

    assert loaded_config == config
    assert metadata["lineage"] == {"git": "abc"}
    batch = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))


def test_loading_a_missing_checkpoint_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def test_loading_a_corrupt_checkpoint_raises_model_not_available(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelNotAvailableError, match="could not be loaded"):
        load_checkpoint(path)


@pytest.mark.parametrize("arch", sorted(LITE_VARIANTS))
def test_pretrained_lite_weights_recognise_a_cat_and_a_dog(arch: str) -> None:
    """The offline ImageNet weights are real and the stage table builds the network they were
    trained in (a wrong stride or kernel loads strictly but sees nothing): the untouched
    ImageNet head ranks cat classes first for a cat photo and dog classes first for a dog."""
    from common.imaging import decode_image
    from common.ml.model import EfficientNetLite
    from common.ml.preprocessing import preprocess_batch
    from tests.conftest import PETIMAGES
    from training.backbones import lite_weights_file

    model = EfficientNetLite(LITE_VARIANTS[arch], 1000, 0.2)
    model.load_state_dict(torch.load(lite_weights_file(arch), weights_only=True))
    model.eval()
    photos = [PETIMAGES / "Cat" / "1.jpg", PETIMAGES / "Dog" / "1.jpg"]
    size = native_input_size(arch)
    config = ModelConfig(arch=arch, image_size=size, resize_size=size)
    batch = preprocess_batch([decode_image(p.read_bytes()).image for p in photos], config)
    with torch.no_grad():
        probs = model(batch).softmax(dim=1)
    cat_mass, dog_mass = probs[:, 281:286].sum(dim=1), probs[:, 151:269].sum(dim=1)
    # Measured: the true side holds 8x (Lite1's cat) to 2,800x the other side's mass.
    assert cat_mass[0] > 5 * dog_mass[0]
    assert dog_mass[1] > 5 * cat_mass[1]
