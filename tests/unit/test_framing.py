"""The text frames the server builds itself are the ones wsproto would build."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol

from trio_broadcast.server._hypercorn import text_frame


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
def test_text_frame_matches_wsproto_at_every_length_boundary(length: int) -> None:
    text = "é" * (length // 2) + "x" * (length % 2)  # multi-byte UTF-8 too
    wsproto_frame = FrameProtocol(client=False, extensions=[]).send_data(text, fin=True)
    assert text_frame(text.encode()) == bytes(wsproto_frame)
