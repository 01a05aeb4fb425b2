import math

import numpy as np
import pytest

from llava_st.core import format_span, parse_span, snap_span, span_frame_mask, time_instruction

PHRASINGS = [
    ("From 3.2s to 7.8s.", (3.2, 7.8)),
    ("from 3.2 to 7.8 seconds", (3.2, 7.8)),
    ("From 3.20 seconds to 7.80 seconds.", (3.2, 7.8)),
    ("The event happens from 0s to 12s.", (0.0, 12.0)),
    ("3.2 - 7.8 seconds", (3.2, 7.8)),
    ("3.2-7.8s", (3.2, 7.8)),
    ("3.2s-7.8s", (3.2, 7.8)),
    ("3.2 – 7.8", (3.2, 7.8)),
    ("between 3.2 and 7.8 seconds", (3.2, 7.8)),
    ("Between 3.2s and 7.8s the man turns.", (3.2, 7.8)),
    ("[3.2, 7.8]", (3.2, 7.8)),
    ("(3.2, 7.8)", (3.2, 7.8)),
    ("The answer is [3.2s, 7.8s].", (3.2, 7.8)),
    ("00:03 to 00:07", (3.0, 7.0)),
    ("0:03 - 0:07.5", (3.0, 7.5)),
    ("01:02:03 to 01:02:05", (3723.0, 3725.0)),
    ("starts at 3.2s and ends at 7.8s", (3.2, 7.8)),
    ("Start: 3.2, End: 7.8", (3.2, 7.8)),
    ("start time 3.2 end time 7.8", (3.2, 7.8)),
    ("It begins at 3.2 until 7.8 seconds.", (3.2, 7.8)),
    ("3 to 8", (3.0, 8.0)),
    ("from 7.8s to 3.2s", (3.2, 7.8)),  # reversed pair is swapped
    ("From .5s to 2s.", (0.5, 2.0)),
    ("FROM 3.2S TO 7.8S", (3.2, 7.8)),
    ("3.2 sec to 7.8 sec", (3.2, 7.8)),
    ("3.2 secs ~ 7.8 secs", (3.2, 7.8)),
    ("The person appears 3.2 through 7.8 seconds", (3.2, 7.8)),
    ("From 3.2s to 7.8s.\nThe man is on the left.", (3.2, 7.8)),
    ("  from   3.2s   to   7.8s  ", (3.2, 7.8)),
    ("Answer: 10.5 till 19.0", (10.5, 19.0)),
]

GARBAGE = ["", "   ", "I don't know.", "The man in red.", "at 3 seconds", "no time here 4", "seconds to seconds", None]


@pytest.mark.parametrize("text,expected", PHRASINGS)
def test_parse_phrasings(text, expected):
    parsed = parse_span(text)
    assert parsed.ok, parsed.status
    assert parsed.status == "ok"
    assert parsed.span == pytest.approx(expected)


@pytest.mark.parametrize("text", GARBAGE)
def test_parse_garbage_returns_status_not_exception(text):
    parsed = parse_span(text)
    assert not parsed.ok
    assert parsed.span is None
    assert parsed.status and parsed.status != "ok"


def test_round_trip_and_clip():
    for s, e in [(0.0, 0.0), (1.25, 19.96), (0.04, 120.0)]:
        parsed = parse_span(format_span(s, e))
        assert parsed.span == pytest.approx((round(s, 1), round(e, 1)))
    assert parse_span("from 3 to 25 seconds", duration=20.0).span == (3.0, 20.0)
    with pytest.raises(ValueError):
        format_span(5.0, 1.0)
    with pytest.raises(ValueError):
        format_span(math.nan, 1.0)


def test_snap_and_mask():
    times = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    assert snap_span(0.3, 1.2, times) == (0.5, 1.0)
    assert snap_span(-1, 9, times) == (0.0, 2.0)
    assert span_frame_mask(0.5, 1.5, times).tolist() == [False, True, True, True, False]
    assert span_frame_mask(0.6, 0.9, times).tolist() == [False] * 5


def test_time_instruction_matches_upstream_text():
    text = time_instruction(20.0, [0.0, 0.28, 19.96])
    assert text == (
        "The video lasts for 20.00 seconds, and 3 frames are uniformly sampled from it. These frames are "
        "located at 0.00s,0.28s,19.96s.Please answer the following questions related to this video."
    )
