"""REC boxes under every upstream image setting: the frame the model sees (core.boxes.ImageFrame) is
checked against upstream's own preprocessing on non-square images, and a box in that frame maps back
to the exact pixels of the original image, in training targets and in the grounder's tubes."""

import numpy as np
import pytest
import torch

from llava_st.core.batch import GROUNDING_BOXES
from llava_st.core.boxes import ImageFrame, normalize_xyxy, xyxy_to_cxcywh
from llava_st.core.tube import assemble_tube, text_tube

SIZES = [(120, 64), (64, 120), (97, 53), (80, 80)]
BOX = {(120, 64): [30, 10, 70, 40], (64, 120): [5, 50, 45, 110], (97, 53): [0, 7, 33, 53], (80, 80): [10, 10, 50, 30]}
SETTINGS = ["pad", "anyres_max_9", "square"]


def picture(width, height, box):
    """A grey PIL image with a red rectangle filling `box` (pixel xyxy, end exclusive)."""
    from PIL import Image

    array = np.full((height, width, 3), 128, dtype=np.uint8)
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = (250, 10, 10)
    return Image.fromarray(array)


def red_box(array: np.ndarray):
    """Normalised xyxy of the red pixels of an RGB array [H, W, 3] (end exclusive)."""
    red = (array[..., 0] > 200) & (array[..., 1] < 60) & (array[..., 2] < 60)
    ys, xs = np.nonzero(red)
    h, w = red.shape
    return [xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("setting", SETTINGS)
def test_a_box_maps_to_the_frame_and_back_to_the_same_pixels(setting, size):
    width, height = size
    frame = ImageFrame.for_aspect_ratio(width, height, setting)
    box = torch.tensor([BOX[size]], dtype=torch.float32)
    norm = frame.normalize(box)
    assert torch.allclose(frame.to_pixels(norm), box, atol=1e-4)
    if setting == "pad" and width != height:
        side = max(width, height)
        assert (frame.frame_width, frame.frame_height) == (side, side)
        assert not torch.allclose(norm, normalize_xyxy(box, width, height))  # normalising to the original is wrong here
    else:
        assert torch.allclose(norm, normalize_xyxy(box, width, height))
    # a box on the padding ends at the image's edge
    assert frame.to_pixels(torch.tensor([[0.0, 0.0, 1.0, 1.0]])).tolist() == [[0.0, 0.0, float(width), float(height)]]


@pytest.mark.upstream
@pytest.mark.parametrize("size", SIZES)
def test_pad_frame_is_upstreams_expand2square(size):
    from llava.mm_utils import expand2square

    width, height = size
    padded = expand2square(picture(width, height, BOX[size]), (0, 0, 0))
    expected = ImageFrame.for_aspect_ratio(width, height, "pad").normalize(torch.tensor(BOX[size], dtype=torch.float32))
    assert red_box(np.asarray(padded)) == pytest.approx(expected.tolist(), abs=1e-6)


@pytest.mark.upstream
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("setting", ["anyres_max_9", "square"])
def test_resized_views_cover_the_frame_with_the_whole_image(setting, size):
    """anyres's base view and a plain resize stretch the image over the model's frame: the rectangle
    lands where normalising to the original image says (up to the resize's one-pixel rounding)."""
    from types import SimpleNamespace

    from llava.mm_utils import process_images
    from llava.model.multimodal_encoder.siglip_encoder import SigLipImageProcessor

    from llava_st.testing.upstream import TINY_GRID_PINPOINTS

    width, height = size
    processor = SigLipImageProcessor()
    config = SimpleNamespace(image_aspect_ratio=setting, image_grid_pinpoints=TINY_GRID_PINPOINTS)
    pixels = process_images([picture(width, height, BOX[size])], processor, config)[0]
    base = pixels[0] if pixels.dim() == 4 else pixels  # anyres: the base view comes first
    rgb = ((base.permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255).round().astype(np.uint8)  # SigLIP's mean/std 0.5
    expected = ImageFrame.for_aspect_ratio(width, height, setting).normalize(torch.tensor(BOX[size], dtype=torch.float32))
    assert red_box(rgb) == pytest.approx(expected.tolist(), abs=2 / rgb.shape[0])


def test_tube_of_a_padded_image_gives_the_original_pixels():
    width, height = 120, 64
    frame = ImageFrame.for_aspect_ratio(width, height, "pad")
    box = torch.tensor([BOX[(width, height)]], dtype=torch.float32)
    decoder = xyxy_to_cxcywh(frame.normalize(box))  # what a decoder trained on pad targets outputs
    info = {"path": "x.png", "width": width, "height": height, "duration": 0.0, "fps": 0.0}
    tube = assemble_tube("the box", "The object is located.", [0.0], decoder, info, span=(0.0, 0.0), frame=frame)
    assert tube["frames"][0]["box_xyxy"] == pytest.approx(BOX[(width, height)], abs=0.01)
    assert tube["frames"][0]["box_norm"] == pytest.approx(normalize_xyxy(box, width, height)[0].tolist(), abs=1e-5)
    # the boxes-as-text ablation writes boxes in the same frame
    x0, y0, x1, y1 = frame.normalize(box)[0].tolist()
    text = f"From 0.0s to 0.0s. 0.0s: [{x0:.2f}, {y0:.2f}, {x1:.2f}, {y1:.2f}]."
    as_text = text_tube("the box", text, [0.0], info, span=(0.0, 0.0), frame=frame)
    assert as_text["frames"][0]["box_xyxy"] == pytest.approx(BOX[(width, height)], abs=0.01 * max(width, height))


@pytest.mark.upstream
def test_rec_training_target_under_pad_is_normalised_to_the_padded_square(tmp_path, qwen_tokenizer):
    from test_train_upstream_data import H, W, data_args, write_mixed_data

    from llava_st.hosts.llava_next.data import GroundingDataset

    root = tmp_path / "data"
    path = write_mixed_data(root)  # rec-0: box [30, 20, 60, 44] on a 96 x 64 image
    args = data_args(root)
    args.image_aspect_ratio = "pad"
    ds = GroundingDataset(str(path), qwen_tokenizer, args)
    rec = next(ds[i] for i in range(len(ds)) if ds[i]["id"] == "rec-0")["grounding"]
    side, oy = W, (W - H) // 2
    assert rec[GROUNDING_BOXES][0].tolist() == pytest.approx([45 / side, (32 + oy) / side, 30 / side, 24 / side])
