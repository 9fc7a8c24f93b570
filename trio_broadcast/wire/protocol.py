"""Wire models and codec: what clients send, what the server sends. Pure functions, no I/O.

Every server frame is encoded here, exactly once: a broadcast is encoded when it is accepted and
the same text goes to every subscriber (see :class:`Outgoing`).
"""

from __future__ import annotations

import functools
import json
import json.encoder
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from ..errors import ErrorCode, ProtocolError
from .frames import text_frame

MAX_ID_LENGTH = 64  # characters in a client-chosen publish ``id``
PUBLISH_FIELDS = frozenset({"message", "id"})

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # compact, UTF-8
_json_string: Callable[[str], str] = json.encoder.encode_basestring  # a str as dumps writes it


_ABSENT = object()


def _encodable(text: str) -> bool:
    """False for text with lone surrogates (JSON allows ``"\\ud800"``; UTF-8 does not)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@attrs.frozen
class Publish:
    """One message a client asked to broadcast."""

    message: str  # the text to broadcast
    id: str | None = None  # client-chosen, echoed in the ack

    @classmethod
    def from_text(cls, text: str) -> Publish:
        """Decode a client text frame.

        Raises:
            ProtocolError: the frame is not a valid publish; ``code`` says why.
        """
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ProtocolError(ErrorCode.INVALID_JSON, str(error)) from None
        except RecursionError:
            raise ProtocolError(ErrorCode.INVALID_JSON, "JSON nested too deeply") from None
        if not isinstance(data, dict):
            raise ProtocolError(
                ErrorCode.NOT_AN_OBJECT, f"expected a JSON object, got {type(data).__name__}"
            )
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Publish:
        """Validate a decoded JSON object.

        Raises:
            ProtocolError: a field is missing, of the wrong type, or unknown.
        """
        unknown = sorted(set(data) - PUBLISH_FIELDS)
        if unknown:
            names = ", ".join(ascii(name) for name in unknown)  # ascii(): may be unencodable
            raise ProtocolError(
                ErrorCode.UNKNOWN_FIELD,
                f"unknown field(s): {names}; a publish has 'message' and an optional 'id'",
            )
        message = data.get("message")
        if not isinstance(message, str):
            what = "missing" if "message" not in data else f"a {type(message).__name__}"
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, f"'message' must be a string, it is {what}"
            )
        if not _encodable(message):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "'message' is not valid Unicode")
        id_ = data.get("id", _ABSENT)
        if id_ is _ABSENT:
            return cls(message=message)
        if not isinstance(id_, str) or len(id_) > MAX_ID_LENGTH or not _encodable(id_):
            raise ProtocolError(
                ErrorCode.INVALID_ID, f"'id' must be a string of at most {MAX_ID_LENGTH} characters"
            )
        return cls(message=message, id=id_)


@attrs.frozen
class Outgoing:
    """One server frame, encoded once; a broadcast's instance is shared by every outbox."""

    frame: str  # the JSON text sent on the wire
    wire: bytes  # the whole WebSocket frame a server sends: header and UTF-8 payload
    size: int  # UTF-8 bytes of ``frame``, counted against outbox_bytes
    created: float  # trio.current_time() when accepted, for the latency histogram
    seq: int = 0  # broadcast sequence number; 0 for frames that are not broadcasts

    @classmethod
    def of(cls, frame: str, created: float, seq: int = 0) -> Outgoing:
        payload = frame.encode()
        wire = text_frame(payload)
        return cls(frame=frame, wire=wire, size=len(payload), created=created, seq=seq)


def format_timestamp(unix_time: float) -> str:
    """ISO 8601 with microseconds and a UTC offset: ``2026-11-25T10:00:00.123456+00:00``."""
    return datetime.fromtimestamp(unix_time, UTC).isoformat(timespec="microseconds")


# The two frames encoded for every broadcast, as templates: the same text as ``dumps`` of the
# dict (tested), in a quarter of the time. Only the strings need JSON's escaping.
_MESSAGE = '{"type":"message","seq":%d,"message":%s,"timestamp":%s,"sender":%s}'
_ACK = '{"type":"ack","seq":%d,"timestamp":%s'


def encode_message(seq: int, message: str, timestamp: str, sender: str) -> str:
    string = _json_string
    return _MESSAGE % (seq, string(message), string(timestamp), string(sender))


def encode_ack(seq: int, timestamp: str, id_: str | None) -> str:
    head = _ACK % (seq, _json_string(timestamp))
    return head + "}" if id_ is None else f'{head},"id":{_json_string(id_)}}}'


def encode_error(code: ErrorCode, detail: str, id_: str | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "code": str(code), "detail": detail}
    if id_ is not None:
        frame["id"] = id_
    return dumps(frame)


def encode_welcome(
    *,
    client_id: str,
    seq: int,
    epoch: str,
    connections: int,
    server: str,
    batch: bool,
    limits: Mapping[str, Any],
    cluster_connections: int | None = None,
) -> str:
    """The welcome frame: the same text as ``dumps`` of its dict (tested), from a template and
    a tail encoded once per server, batch flag and limits (one is built per connection)."""
    string = _json_string
    head = _WELCOME % (string(client_id), seq, string(epoch), connections)
    if cluster_connections is not None:
        head += f',"cluster_connections":{cluster_connections:d}'
    return head + _welcome_tail(server, batch, tuple(limits.items()))


_WELCOME = '{"type":"welcome","client_id":%s,"seq":%d,"epoch":%s,"connections":%d'


@functools.lru_cache(maxsize=16)
def _welcome_tail(server: str, batch: bool, limits: tuple[tuple[str, Any], ...]) -> str:
    return "," + dumps({"server": server, "batch": batch, "limits": dict(limits)})[1:]


@attrs.frozen
class Recovery:
    """The outcome of a resume request; encoded as the ``recovered`` frame."""

    complete: bool  # every broadcast after ``since`` was replayed
    since: int  # the seq the client asked to resume after
    replayed: int  # how many messages were replayed
    seq: int  # the newest seq at the time of the resume
    reason: str | None = None  # "history_expired" or "epoch_mismatch" when not complete
    first_seq: int | None = None  # oldest seq replayed, when history had expired

    def encode(self) -> str:
        frame: dict[str, Any] = {"type": "recovered", "complete": self.complete}
        if self.reason is not None:
            frame["reason"] = self.reason
        frame["since"] = self.since
        if self.first_seq is not None:
            frame["first_seq"] = self.first_seq
        frame["replayed"] = self.replayed
        frame["seq"] = self.seq
        return dumps(frame)


def encode_batch(frames: Sequence[str]) -> str:
    """Several already-encoded frames as one ``batch`` frame (no re-encoding)."""
    return '{"type":"batch","events":[' + ",".join(frames) + "]}"
