"""data.video.read_span_frames (PyAV, the Annotator's reader) against decord (read_video's reader): the
same frames bit for bit and the same times, on spans that need a seek past key frames, at the start and
end of a video, and in a container that does not store its frame count."""

import numpy as np
import pytest

from llava_st.data.video import VideoReadError, read_span_frames, sample_frames, write_video


def _textured(num_frames: int, height: int = 120, width: int = 160) -> np.ndarray:
    """uint8 [T, H, W, 3]: every frame different (moving gradients and a moving block)."""
    ys, xs = np.mgrid[0:height, 0:width]
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frames[t, ..., 0] = (xs + 3 * t) % 256
        frames[t, ..., 1] = (2 * ys + t) % 256
        frames[t, ..., 2] = 128
        x = (20 + 2 * t) % (width - 30)
        frames[t, 40:70, x : x + 30] = (255, 0, 0)
    return frames


@pytest.fixture(scope="module")
def clip_30fps(tmp_path_factory):
    """A 300-frame 30 fps 160x120 mp4 (opencv's MPEG-4 part 2: a key frame every 12 frames)."""
    return str(write_video(tmp_path_factory.mktemp("span") / "clip.mp4", _textured(300), 30.0))


def _decord(path, span, sample_fps):
    from decord import VideoReader, cpu

    vr = VideoReader(path, ctx=cpu(0), num_threads=1)
    sample = sample_frames(len(vr), vr.get_avg_fps(), frames_upbound=0, video_fps=sample_fps)
    inside = (sample.times >= span[0] - 1e-6) & (sample.times <= span[1] + 1e-6)
    indices = sample.indices[inside].tolist()
    return vr.get_batch(indices).asnumpy(), sample.times[inside], sample.fps, sample.duration, indices


@pytest.mark.parametrize("span, sample_fps", [((0.0, 10.0), 2.0), ((3.1, 7.4), 2.0), ((4.5, 4.6), 30.0),
                                              ((9.0, 20.0), 5.0), ((0.2, 9.97), 3.0)])
def test_span_frames_equal_decord(clip_30fps, span, sample_fps):
    frames, times, fps, duration = read_span_frames(clip_30fps, span, sample_fps)
    expected, expected_times, expected_fps, expected_duration, indices = _decord(clip_30fps, span, sample_fps)
    assert len(indices) > 0 and (fps, duration) == (expected_fps, expected_duration) == (30.0, 10.0)
    assert times.tolist() == expected_times.tolist()
    assert frames.shape == expected.shape == (len(indices), 120, 160, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, expected)


def test_span_outside_the_video_gives_no_frames(clip_30fps):
    frames, times, fps, duration = read_span_frames(clip_30fps, (11.0, 12.0), 2.0)
    assert frames.shape[0] == 0 and times.shape == (0,) and (fps, duration) == (30.0, 10.0)


def test_container_without_a_frame_count(tmp_path):
    """Matroska stores no frame count: the packets are counted, as decord's index does."""
    import av

    path = tmp_path / "clip.mkv"
    frames = _textured(45)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=15)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    got, times, fps, duration = read_span_frames(str(path), (1.0, 2.5), 2.0)
    expected, expected_times, expected_fps, expected_duration, _ = _decord(str(path), (1.0, 2.5), 2.0)
    assert (fps, duration) == (expected_fps, expected_duration) == (15.0, 3.0)
    assert times.tolist() == expected_times.tolist() and np.array_equal(got, expected)


def test_missing_and_corrupt_video_name_the_file(tmp_path):
    with pytest.raises(VideoReadError, match="video not found: .*nope.mp4"):
        read_span_frames(str(tmp_path / "nope.mp4"), (0, 1), 2.0)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01 not a video" * 64)
    with pytest.raises(VideoReadError, match="cannot decode video .*bad.mp4"):
        read_span_frames(str(bad), (0, 1), 2.0)
