"""The text frames the server builds itself are the ones wsproto would build."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol

from trio_broadcast.server import _hypercorn
from trio_broadcast.wire.frames import client_text_frame, text_frame


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
def test_text_frame_matches_wsproto_at_every_length_boundary(length: int) -> None:
    text = "é" * (length // 2) + "x" * (length % 2)  # multi-byte UTF-8 too
    wsproto_frame = FrameProtocol(client=False, extensions=[]).send_data(text, fin=True)
    assert text_frame(text.encode()) == bytes(wsproto_frame)


@pytest.mark.parametrize("length", [0, 125, 126, 65_535, 65_536])
def test_client_frame_is_masked_with_the_zero_key_and_parses(length: int) -> None:
    text = "x" * length
    server_side = FrameProtocol(client=False, extensions=[])
    server_side.receive_bytes(client_text_frame(text.encode()))
    (frame,) = server_side.received_frames()
    assert frame.payload == text


@pytest.mark.parametrize(("value", "expected"), [("off", False), ("0", False), ("", True)])
def test_the_shortcuts_can_be_turned_off_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv(_hypercorn.SHORTCUTS_VARIABLE, value)
    _hypercorn._shortcuts_apply.cache_clear()
    try:
        assert _hypercorn._shortcuts_apply() is expected
    finally:
        _hypercorn._shortcuts_apply.cache_clear()
