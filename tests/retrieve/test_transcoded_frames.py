"""The cache of frames served in a syntax they are not stored in: bounded, least recently used out."""

from __future__ import annotations

from tessel.retrieve.instances import _TranscodedFrames


def test_least_recently_used_frames_leave_first_and_the_budget_holds() -> None:
    cache = _TranscodedFrames(max_bytes=1000)
    for n in range(8):
        cache.put((f"frame{n}", "1.2.840.10008.1.2.1"), bytes(100))
    assert cache.get(("frame0", "1.2.840.10008.1.2.1")) is not None  # now the most recently used
    for n in range(8, 12):
        cache.put((f"frame{n}", "1.2.840.10008.1.2.1"), bytes(100))
    assert cache.get(("frame0", "1.2.840.10008.1.2.1")) is not None
    assert cache.get(("frame1", "1.2.840.10008.1.2.1")) is None  # the oldest untouched ones left
    kept = sum(cache.get((f"frame{n}", "1.2.840.10008.1.2.1")) is not None for n in range(12))
    assert kept == 10  # 10 x 100 bytes = the budget


def test_frames_are_kept_per_syntax_and_huge_ones_not_at_all() -> None:
    cache = _TranscodedFrames(max_bytes=800)
    cache.put(("f", "1.2.840.10008.1.2.1"), b"native")
    assert cache.get(("f", "1.2.840.10008.1.2.4.90")) is None
    cache.put(("big", "1.2.840.10008.1.2.1"), bytes(101))  # over an eighth of the budget
    assert cache.get(("big", "1.2.840.10008.1.2.1")) is None


def test_a_zero_budget_keeps_nothing() -> None:
    cache = _TranscodedFrames(max_bytes=1000)
    cache.put(("f", "x"), b"abc")
    cache.resize(0)
    assert cache.get(("f", "x")) is None
    cache.put(("g", "x"), b"abc")
    assert cache.get(("g", "x")) is None
