"""The one data-root path rule (data.paths.resolve_media) on real files and real symbolic links."""

import os

import pytest

from llava_st.data.paths import MediaPathError, path_problem, resolve_media
from llava_st.data.schema import validate_record


@pytest.fixture()
def tree(tmp_path):
    """root/ with a file, a link to a file inside, links leading out; outside/ beside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "v").mkdir(parents=True)
    outside.mkdir()
    (root / "v" / "a.mp4").write_bytes(b"inside")
    (outside / "secret.mp4").write_bytes(b"outside")
    (root / "v" / "alias.mp4").symlink_to(root / "v" / "a.mp4")
    (root / "v" / "rel_alias.mp4").symlink_to("a.mp4")
    (root / "out_file.mp4").symlink_to(outside / "secret.mp4")
    (root / "out_dir").symlink_to(outside)
    (root / "up").symlink_to("..")
    (root / "loop").symlink_to("loop")
    return root, outside


def test_paths_inside_the_root_resolve_to_the_file(tree):
    root, _ = tree
    assert resolve_media(root, "v/a.mp4", "r1") == (root / "v" / "a.mp4").resolve()
    assert resolve_media(root, "v/alias.mp4", "r1").read_bytes() == b"inside"
    assert resolve_media(root, "v/rel_alias.mp4", "r1").read_bytes() == b"inside"
    assert resolve_media(root, "./v//a.mp4", "r1").read_bytes() == b"inside"
    assert resolve_media(root, "v/not-yet.mp4", "r1") == (root / "v" / "not-yet.mp4").resolve()  # existence is the reader's


def test_a_root_that_is_itself_a_link_is_followed(tree, tmp_path):
    root, _ = tree
    (tmp_path / "root_link").symlink_to(root)
    assert resolve_media(tmp_path / "root_link", "v/a.mp4", "r1").read_bytes() == b"inside"
    with pytest.raises(MediaPathError, match="escapes"):
        resolve_media(tmp_path / "root_link", "out_file.mp4", "r1")


@pytest.mark.parametrize(
    "path, words",
    [
        ("../outside/secret.mp4", "escapes the data root"),
        ("v/../../outside/secret.mp4", "escapes the data root"),
        ("out_file.mp4", "through a link"),
        ("out_dir/secret.mp4", "through a link"),
        ("up/outside/secret.mp4", "through a link"),
        ("up", "through a link"),
        ("v/a\x00.mp4", "NUL byte"),
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("~/secret.mp4", "relative"),
        (None, "non-empty"),
        (7, "non-empty"),
        (["v/a.mp4"], "non-empty"),
    ],
)
def test_paths_leaving_the_root_are_refused_naming_id_and_field(tree, path, words):
    root, outside = tree
    with pytest.raises(MediaPathError, match=words) as info:
        resolve_media(root, path, "rec-7", "image")
    assert str(info.value).startswith("id=rec-7 field=image: ")
    assert info.value.record_id == "rec-7" and info.value.field == "image"


def test_absolute_paths_are_refused_even_inside_the_root(tree):
    root, _ = tree
    for path in (str(root / "v" / "a.mp4"), "/etc/passwd"):
        with pytest.raises(MediaPathError, match="relative to the data root"):
            resolve_media(root, path, "r", "video")


def test_a_link_loop_is_refused_not_raised_through(tree):
    root, _ = tree
    with pytest.raises(MediaPathError, match="id=r field=video"):
        resolve_media(root, "loop/a.mp4", "r", "video")


def test_ids_that_cannot_be_printed_are_escaped(tree):
    root, _ = tree
    with pytest.raises(MediaPathError) as info:
        resolve_media(root, "../x", "bad\ud800id\n", "video")
    message = str(info.value)
    message.encode("utf-8")  # printable anywhere
    assert message.startswith("id=bad\\ud800id\\n field=video:")


def test_the_validator_applies_the_same_rule(tree):
    root, _ = tree
    record = {"id": "q", "task": "qa", "conversations": [{"from": "human", "value": "<image>\nx"}, {"from": "gpt", "value": "y"}]}
    for path in ("v/a.mp4", "v/alias.mp4"):
        assert validate_record({**record, "video": path}, data_root=root) == []
    for path in ("out_file.mp4", "out_dir/secret.mp4", "up/outside/secret.mp4", "../x.mp4", "/abs.mp4", "a\x00b"):
        problems = validate_record({**record, "video": path}, data_root=root)
        assert len(problems) == 1 and problems[0].startswith("id=q field=video: "), problems
        assert path_problem(path) is not None or "through a link" in problems[0]
    assert os.path.islink(root / "out_file.mp4")
