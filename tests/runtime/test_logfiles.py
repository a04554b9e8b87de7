"""Log tails (a failing component's last lines) and following files as they grow."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.runtime import logfiles


@pytest.mark.parametrize(("lines", "expected"), [(2, ["c", "d"]), (10, ["a", "b", "c", "d"]), (0, [])])
def test_tail(tmp_path: Path, lines: int, expected: list[str]) -> None:
    (tmp_path / "x.log").write_text("a\nb\nc\nd\n")
    assert logfiles.tail(tmp_path / "x.log", lines) == expected


def test_tail_of_a_big_file_drops_the_cut_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logfiles, "TAIL_BYTES", 10)
    (tmp_path / "x.log").write_text("0123456789\nabc\ndef\n")
    assert logfiles.tail(tmp_path / "x.log", 5) == ["abc", "def"]
    assert logfiles.tail(tmp_path / "missing.log", 5) == []


def test_follow_yields_appended_lines_from_every_file_until_told_to_stop(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("old\n")
    script = [
        lambda: a.open("a").write("one\ntw"),
        lambda: a.open("a").write("o\n") and b.write_text("b1\n"),
        lambda: a.write_text("new\n"),  # replaced by a shorter file: read from its start
    ]
    steps = iter(script)
    stop = {"now": False}

    def sleep(_seconds: float) -> None:
        step = next(steps, None)
        if step is None:
            stop["now"] = True
        else:
            step()

    found = []
    for item in logfiles.follow([("a", a), ("b", b)], lambda: not stop["now"], sleep, interval=0):
        found.append(item)
        if len(found) > 10:
            break
    assert found == [("a", "one"), ("a", "two"), ("b", "b1"), ("a", "new")]


def test_a_log_past_its_limit_is_copied_aside_and_truncated_in_place(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    log.write_text("x" * 100)
    with log.open("a") as writer:  # the process keeps its descriptor (O_APPEND) across the rotation
        assert logfiles.rotate(log, max_bytes=200) is False
        assert logfiles.rotate(log, max_bytes=50) is True
        writer.write("after\n")
    assert (tmp_path / "web.log.1").read_text() == "x" * 100
    assert log.read_text() == "after\n"
    assert logfiles.rotate(tmp_path / "missing.log", max_bytes=0) is False
