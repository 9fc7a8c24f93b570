"""The AsyncAPI document (docs/asyncapi.json) against the code and against docs/protocol.md."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator
from protocol_schema import check_client_frame, check_server_frame, load_document, validator

from trio_broadcast.errors import ErrorCode, ProtocolError
from trio_broadcast.server.config import Settings
from trio_broadcast.wire.protocol import (
    Publish,
    Recovery,
    encode_ack,
    encode_batch,
    encode_error,
    encode_message,
    encode_welcome,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
TIMESTAMP = "2026-11-25T10:00:00.123456+00:00"


def _json_examples(markdown: str) -> list[dict[str, Any]]:
    """Every JSON object in the ```json blocks of ``markdown``, but placeholders ("...")."""
    found: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    for block in re.findall(r"```json\n(.*?)```", markdown, re.DOTALL):
        position = 0
        while (start := block.find("{", position)) != -1:
            value, position = decoder.raw_decode(block, start)
            if '"..."' not in json.dumps(value):
                found.append(value)
    return found


def test_document_is_asyncapi_3_with_a_channel_for_the_endpoint() -> None:
    document = load_document()
    assert document["asyncapi"].startswith("3.")
    assert document["channels"]["events"]["address"] == "/ws/events"
    assert set(document["channels"]["events"]["messages"]) == {
        "publish",
        "welcome",
        "message",
        "ack",
        "recovered",
        "error",
        "batch",
    }
    for schema in document["components"]["schemas"].values():
        Draft7Validator.check_schema(schema)


def test_docs_asyncapi_is_the_packaged_document() -> None:
    assert json.loads((DOCS / "asyncapi.json").read_text()) == load_document()


def test_every_example_in_the_document_validates() -> None:
    for name, message in load_document()["components"]["messages"].items():
        for example in message["examples"]:
            if name == "publish":
                check_client_frame(example["payload"])
            else:
                check_server_frame(example["payload"])


def test_every_frame_example_in_protocol_md_validates() -> None:
    examples = _json_examples((DOCS / "protocol.md").read_text())
    assert len(examples) >= 8
    for example in examples:
        if "type" in example:
            check_server_frame(example)
        else:
            check_client_frame(example)


def test_protocol_md_welcome_example_shows_the_default_limits() -> None:
    examples = _json_examples((DOCS / "protocol.md").read_text())
    (welcome,) = [example for example in examples if example.get("type") == "welcome"]
    assert welcome["limits"] == Settings().limits()


def test_error_codes_and_limits_are_the_codes() -> None:
    schemas = load_document()["components"]["schemas"]
    assert set(schemas["Error"]["properties"]["code"]["enum"]) == {str(code) for code in ErrorCode}
    assert set(schemas["Limits"]["properties"]) == set(Settings().limits())


def test_every_frame_the_codec_encodes_validates() -> None:
    limits = Settings(publish_rate=None, history_ttl=None, ping_interval=None).limits()
    frames = [
        encode_welcome(
            client_id="a1", seq=0, epoch="e1", connections=1, server="x", batch=True, limits=limits
        ),
        encode_message(1, "", TIMESTAMP, "a1"),
        encode_ack(2, TIMESTAMP, None),
        encode_ack(2, TIMESTAMP, "c-1"),
        encode_error(ErrorCode.RATE_LIMITED, "slow down", "c-2"),
        Recovery(complete=True, since=0, replayed=0, seq=0).encode(),
        Recovery(
            complete=False, since=3, replayed=1, seq=9, reason="history_expired", first_seq=9
        ).encode(),
        Recovery(complete=False, since=3, replayed=0, seq=0, reason="epoch_mismatch").encode(),
        encode_batch([encode_message(1, "x", TIMESTAMP, "a1"), encode_ack(2, TIMESTAMP, None)]),
    ]
    for frame in frames:
        check_server_frame(json.loads(frame))


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "message", "seq": 1, "message": "x", "timestamp": TIMESTAMP},  # no sender
        {"type": "ack", "seq": "1", "timestamp": TIMESTAMP},
        {"type": "recovered", "complete": False, "since": 1, "replayed": 0, "seq": 1},
        {"type": "error", "code": "no_such_code", "detail": ""},
        {"type": "batch", "events": [{"type": "ack", "seq": 1, "timestamp": TIMESTAMP}]},
        {"type": "hello"},
    ],
)
def test_frames_the_protocol_does_not_have_fail(frame: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match=r"docs/asyncapi\.json"):
        check_server_frame(frame)


@pytest.mark.parametrize(
    "frame",
    [
        {"message": "hi"},
        {"message": "", "id": "x" * 64},
        {"message": "hi", "id": "x" * 65},
        {"id": "x"},
        {"message": 3},
        {"message": "hi", "extra": 1},
    ],
)
def test_publish_schema_agrees_with_the_codec(frame: dict[str, Any]) -> None:
    try:
        Publish.from_mapping(frame)
    except ProtocolError:
        accepted = False
    else:
        accepted = True
    assert validator("Publish").is_valid(frame) is accepted


PARSER_CHECK = """
import { Parser } from '@asyncapi/parser';
import fs from 'node:fs';
const text = fs.readFileSync(process.argv[2], 'utf8');
const { document, diagnostics } = await new Parser().parse(text);
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of errors) console.log(d.code, d.message, JSON.stringify(d.path));
process.exit(document && errors.length === 0 ? 0 : 1);
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None, reason="the AsyncAPI parser is an npm package")
def test_the_asyncapi_parser_accepts_the_document(tmp_path: Path) -> None:
    """The reference parser (npm ``@asyncapi/parser``, installed for this test) finds no error."""
    npm = shutil.which("npm")
    assert npm is not None
    subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "@asyncapi/parser@3.6.6"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    script = tmp_path / "check.mjs"
    script.write_text(PARSER_CHECK)
    result = subprocess.run(
        ["node", str(script), str(DOCS / "asyncapi.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
