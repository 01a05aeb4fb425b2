"""Draw tubes onto a video (mp4) and plot per-frame IoU over time (PNG). `llava-st viz` and the eval drivers.

Predicted tubes (core.tube contract: span in seconds, per-frame pixel `box_xyxy` at sampled times) are
drawn on every frame of the original video inside the span, boxes linearly interpolated between the
sampled times; ground truth (a Uni-STG record: span seconds, boxes [{"t", "xyxy"}] pixels) on the
annotated frames. Prediction green, ground truth red.

    llava-st viz --video clip.mp4 --tubes tubes.json [--record gt.json] --out clip.viz.mp4 [--iou-png iou.png]
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

from ..core.boxes import paired_box_iou
from ..data.video import write_video
from .metrics import boxes_on_grid

log = logging.getLogger(__name__)

PRED_BGR = (60, 200, 60)
GT_BGR = (40, 40, 230)


def _read_all_frames(path: str):
    """All frames of a video as BGR uint8 [T, H, W, 3] and its fps (opencv)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 1.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise ValueError(f"video {path} has no readable frames")
    return np.stack(frames), float(fps)


def tube_boxes(tube: Optional[dict], times: np.ndarray) -> np.ndarray:
    """float [T, 4] pixel xyxy of a predicted tube at `times` (seconds), NaN outside its span."""
    if not tube or tube.get("span") is None or not tube.get("frames"):
        return np.full((len(times), 4), np.nan)
    frames = tube["frames"]
    return boxes_on_grid([f["t"] for f in frames], [f["box_xyxy"] for f in frames], times, span=tube["span"])


def gt_boxes(record: Optional[dict], times: np.ndarray) -> np.ndarray:
    """float [T, 4] pixel xyxy of a record's annotated boxes at `times` (seconds), NaN where none."""
    if not record or not record.get("boxes"):
        return np.full((len(times), 4), np.nan)
    boxes = record["boxes"]
    return boxes_on_grid([b["t"] for b in boxes], [b["xyxy"] for b in boxes], times, interpolate=False)


def per_frame_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """float [T]: IoU where both boxes exist, 0 where only one does, NaN where neither ([T, 4] pixel xyxy)."""
    has_p, has_g = np.isfinite(pred).all(1), np.isfinite(gt).all(1)
    iou = np.where(has_p | has_g, 0.0, np.nan)
    both = has_p & has_g
    if both.any():
        iou[both] = paired_box_iou(torch.from_numpy(pred[both]), torch.from_numpy(gt[both])).double().numpy()
    return iou


def _draw(frame: np.ndarray, box, color, label: str) -> None:
    import cv2

    if box is None or not np.isfinite(box).all():
        return
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(frame, (x0, y0), (x1, y1), color, 2)
    cv2.putText(frame, label, (x0 + 2, max(y0 - 3, 9)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA)


def draw_tubes_video(video_path, tubes: Sequence[dict], out_path, record: Optional[dict] = None) -> Path:
    """Write an mp4 of `video_path` with every tube (green, labelled by position) and the ground truth of
    `record` (red) drawn on each frame. Returns the output path."""
    import cv2

    frames, fps = _read_all_frames(video_path)
    times = np.arange(len(frames)) / fps
    preds = [tube_boxes(t, times) for t in tubes]
    gt = gt_boxes(record, times)
    H = frames.shape[1]
    drawn = frames.copy()
    for k, frame in enumerate(drawn):
        _draw(frame, gt[k], GT_BGR, "gt")
        for n, boxes in enumerate(preds):
            _draw(frame, boxes[k], PRED_BGR, f"q{n}")
        cv2.putText(frame, f"{times[k]:.2f}s", (2, H - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return write_video(out_path, drawn, fps, bgr=True)


def draw_image(image_path, tubes: Sequence[dict], out_path, record: Optional[dict] = None) -> Path:
    """Write a PNG of an image with the tubes' single boxes (green) and the record's box (red)."""
    import cv2

    image = cv2.imread(str(image_path))
    if image is None:
        raise FileNotFoundError(f"cannot read image {image_path}")
    zero = np.zeros(1)
    _draw(image, gt_boxes(record, zero)[0], GT_BGR, "gt")
    for n, tube in enumerate(tubes):
        frames = (tube or {}).get("frames") or []
        _draw(image, np.asarray(frames[0]["box_xyxy"], dtype=float) if frames else None, PRED_BGR, f"q{n}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_path), image)
    return out_path


def plot_iou(times: np.ndarray, iou: np.ndarray, out_png, title: str = "", spans: Optional[dict] = None) -> Path:
    """PNG of per-frame IoU (y, 0..1) over time (x, seconds); `spans` {"gt": [s, e], "pred": [s, e]} shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.5), dpi=100)
    for name, color in (("gt", "tab:red"), ("pred", "tab:green")):
        span = (spans or {}).get(name)
        if span is not None:
            ax.axvspan(span[0], span[1], color=color, alpha=0.15, label=f"{name} span")
    ax.plot(times, iou, color="black", lw=1.2, label="IoU")
    ax.set_xlim(float(times[0]) if len(times) else 0, float(times[-1]) if len(times) else 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("IoU")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def draw_sample(record: dict, tube: Optional[dict], data_root, out_dir) -> List[Path]:
    """Draw one evaluated sample into `out_dir`: <id>.mp4 + <id>.iou.png for a video, <id>.png for an image.
    Media paths follow the data-root rule (data.paths.resolve_media; MediaPathError otherwise)."""
    from ..data.paths import resolve_media

    out_dir = Path(out_dir)
    rid = str(record["id"]).replace("/", "_")
    tubes = [tube] if tube else []
    if record.get("image"):
        return [draw_image(resolve_media(data_root, record["image"], record["id"], "image"), tubes, out_dir / f"{rid}.png", record)]
    video = resolve_media(data_root, record["video"], record["id"], "video")
    mp4 = draw_tubes_video(video, tubes, out_dir / f"{rid}.mp4", record)
    fps = float(record.get("fps") or _read_all_frames(video)[1])
    times = np.arange(int(round(float(record["duration"]) * fps))) / fps
    iou = per_frame_iou(tube_boxes(tube, times), gt_boxes(record, times))
    spans = {"gt": record.get("span"), "pred": (tube or {}).get("span")}
    png = plot_iou(times, iou, out_dir / f"{rid}.iou.png", title=f"{rid}: {record.get('caption', '')}"[:90], spans=spans)
    return [mp4, png]


def _load_tubes(path) -> List[dict]:
    """Tubes from a JSON file: one tube, a list of tubes, or an eval prediction row ({"tube": ...})."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        data = [data.get("tube", data)]
    return [t for t in data if t]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="llava-st viz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", required=True, help="video (or image) file the tubes belong to")
    parser.add_argument("--tubes", required=True, help="JSON: a tube, a list of tubes (llava-st ground output) or a prediction row")
    parser.add_argument("--record", help="JSON: a Uni-STG record whose ground truth is drawn in red")
    parser.add_argument("--out", required=True, help="output .mp4 (video) or .png (image)")
    parser.add_argument("--iou-png", help="also plot per-frame IoU of the first tube against --record (needs --record)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tubes = _load_tubes(args.tubes)
    record = json.loads(Path(args.record).read_text()) if args.record else None
    if Path(args.video).suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        out = draw_image(args.video, tubes, args.out, record)
    else:
        out = draw_tubes_video(args.video, tubes, args.out, record)
    log.info("wrote %s", out)
    if args.iou_png:
        if record is None:
            parser.error("--iou-png needs --record (the ground truth)")
        _, fps = _read_all_frames(args.video)
        times = np.arange(int(round(float(record["duration"]) * fps))) / fps
        iou = per_frame_iou(tube_boxes(tubes[0] if tubes else None, times), gt_boxes(record, times))
        spans = {"gt": record.get("span"), "pred": (tubes[0] if tubes else {}).get("span")}
        log.info("wrote %s", plot_iou(times, iou, args.iou_png, spans=spans))
    return 0


if __name__ == "__main__":
    sys.exit(main())
