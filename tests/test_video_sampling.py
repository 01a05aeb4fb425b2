import numpy as np
import pytest

from llava_st.data.video import VideoReadError, read_video, sample_frames


def test_sampling_follows_upstream_rule():
    # 30 fps, 10 s -> one frame per second (10 frames) under an upbound of 64
    s = sample_frames(300, 30.0, frames_upbound=64)
    assert s.indices.tolist() == list(range(0, 300, 30))
    assert np.allclose(s.times, np.arange(10))
    assert s.duration == 10.0
    # more than the upbound -> uniform linspace over the whole video
    s = sample_frames(3000, 30.0, frames_upbound=64)
    assert s.num_frames == 64
    assert s.indices.tolist() == np.linspace(0, 2999, 64, dtype=int).tolist()
    # force_sample always takes exactly frames_upbound frames
    s = sample_frames(300, 30.0, frames_upbound=16, force_sample=True)
    assert s.indices.tolist() == np.linspace(0, 299, 16, dtype=int).tolist()
    assert np.allclose(s.times, s.indices / 30.0)
    with pytest.raises(ValueError, match="no frames"):
        sample_frames(0, 30.0)


def test_read_real_mp4(moving_box_video):
    path, boxes = moving_box_video
    frames, sample = read_video(path, frames_upbound=8, force_sample=True)
    assert frames.shape == (8, 64, 96, 3) and frames.dtype == np.uint8
    assert sample.fps == pytest.approx(10.0)
    assert sample.duration == pytest.approx(4.0)
    # the red box is where the generator drew it
    for frame, idx in zip(frames, sample.indices):
        if np.isnan(boxes[idx]).any():
            continue
        x0, y0, x1, y1 = boxes[idx].astype(int)
        patch = frame[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3].reshape(-1, 3).mean(0)
        assert patch[0] > 180 and patch[1] < 90


def test_missing_and_corrupt_video(tmp_path):
    with pytest.raises(VideoReadError, match="not found"):
        read_video(str(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoReadError, match="cannot decode"):
        read_video(str(bad))
