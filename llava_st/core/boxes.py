"""Box and time-interval operations.

Box formats carry their names: `cxcywh` (centre x, centre y, width, height) and `xyxy` (x0, y0, x1, y1).
Inside the model boxes are normalised to [0, 1] of the frame as the model saw it; at user boundaries they
are absolute pixels of the original frame. torchvision.ops does the conversions and IoUs; this module
adds only what it lacks: normalisation, clamping and temporal IoU.
"""

from dataclasses import dataclass

import torch
from torchvision.ops import box_convert, box_iou

__all__ = [
    "box_convert",
    "box_iou",
    "cxcywh_to_xyxy",
    "xyxy_to_cxcywh",
    "normalize_xyxy",
    "denormalize_xyxy",
    "ImageFrame",
    "paired_box_iou",
    "temporal_iou",
]


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] cxcywh -> [..., 4] xyxy (same units)."""
    shape = boxes.shape
    return box_convert(boxes.reshape(-1, 4), "cxcywh", "xyxy").reshape(shape)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] xyxy -> [..., 4] cxcywh (same units)."""
    shape = boxes.shape
    return box_convert(boxes.reshape(-1, 4), "xyxy", "cxcywh").reshape(shape)


def normalize_xyxy(boxes_xyxy: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """[..., 4] pixel xyxy -> [..., 4] xyxy in [0, 1] of a width x height frame (clamped)."""
    scale = boxes_xyxy.new_tensor([width, height, width, height])
    return (boxes_xyxy / scale).clamp(0.0, 1.0)


def denormalize_xyxy(boxes_norm: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """[..., 4] normalised xyxy -> [..., 4] pixel xyxy of a width x height frame."""
    scale = boxes_norm.new_tensor([width, height, width, height])
    return boxes_norm.clamp(0.0, 1.0) * scale


@dataclass(frozen=True)
class ImageFrame:
    """Where an image of `width` x `height` pixels lies in the frame the model sees, in the image's own
    pixels: the frame is `frame_width` x `frame_height` with the image's top-left corner at (`offset_x`,
    `offset_y`). Boxes of the model (and its training targets) are normalised to that frame.

    `for_aspect_ratio` follows upstream's `image_aspect_ratio` (llava/mm_utils.py::process_images @
    df17966): "pad" pastes the image centred on a square of side max(W, H) (expand2square, offsets
    floor((side - W) / 2) and floor((side - H) / 2)); "anyres*" (its base view is the whole image
    resized, its tiles are unpadded back to the image) and a plain resize stretch the whole image over
    the frame: frame = image, offsets 0.
    """

    width: float
    height: float
    frame_width: float
    frame_height: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    @classmethod
    def for_aspect_ratio(cls, width: int, height: int, image_aspect_ratio: str = "anyres") -> "ImageFrame":
        if image_aspect_ratio == "pad" and width != height:
            side = max(width, height)
            return cls(width, height, side, side, (side - width) // 2, (side - height) // 2)
        return cls(width, height, width, height)

    def _scale_offset(self, like: torch.Tensor):
        scale = like.new_tensor([self.frame_width, self.frame_height, self.frame_width, self.frame_height])
        offset = like.new_tensor([self.offset_x, self.offset_y, self.offset_x, self.offset_y])
        return scale, offset

    def normalize(self, boxes_xyxy: torch.Tensor) -> torch.Tensor:
        """[..., 4] pixel xyxy of the image -> [..., 4] xyxy in [0, 1] of the model's frame."""
        scale, offset = self._scale_offset(boxes_xyxy)
        return ((boxes_xyxy + offset) / scale).clamp(0.0, 1.0)

    def to_pixels(self, boxes_norm: torch.Tensor) -> torch.Tensor:
        """[..., 4] normalised xyxy of the model's frame -> [..., 4] pixel xyxy of the image, clamped to
        the image (a box on the padding ends at the image's edge)."""
        scale, offset = self._scale_offset(boxes_norm)
        pixels = boxes_norm.clamp(0.0, 1.0) * scale - offset
        bound = boxes_norm.new_tensor([self.width, self.height, self.width, self.height])
        return torch.minimum(pixels.clamp(min=0.0), bound)


def paired_box_iou(boxes1_xyxy: torch.Tensor, boxes2_xyxy: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """IoU of matched pairs: [..., 4] and [..., 4] xyxy -> [...]. No +1 pixel term; 0 for empty union.

    torchvision's box_iou is all-pairs [N, M]; this is its diagonal without building the matrix. Computed
    in float64 when both inputs are float64 (the metrics), else in float32.
    """
    dtype = torch.float64 if boxes1_xyxy.dtype == boxes2_xyxy.dtype == torch.float64 else torch.float32
    b1 = boxes1_xyxy.to(dtype)
    b2 = boxes2_xyxy.to(dtype)
    lt = torch.maximum(b1[..., :2], b2[..., :2])
    rb = torch.minimum(b1[..., 2:], b2[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (b1[..., 2:] - b1[..., :2]).clamp(min=0).prod(-1)
    area2 = (b2[..., 2:] - b2[..., :2]).clamp(min=0).prod(-1)
    union = area1 + area2 - inter
    return torch.where(union > eps, inter / union.clamp(min=eps), torch.zeros_like(union))


def temporal_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU of matched time intervals: [..., 2] (start, end) in seconds, continuous -> [...].

    Reversed intervals count as empty; 0 when the union is empty.
    """
    pred = pred.double()
    gt = gt.double()
    p_len = (pred[..., 1] - pred[..., 0]).clamp(min=0)
    g_len = (gt[..., 1] - gt[..., 0]).clamp(min=0)
    inter = (torch.minimum(pred[..., 1], gt[..., 1]) - torch.maximum(pred[..., 0], gt[..., 0])).clamp(min=0)
    union = p_len + g_len - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))
