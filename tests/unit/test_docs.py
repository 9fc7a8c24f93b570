"""The README stays true to the code: every setting and every close code is documented."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from trio_broadcast.errors import CloseCode, ErrorCode
from trio_broadcast.server.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


@pytest.mark.parametrize("field", attrs.fields(Settings), ids=lambda f: f.name)
def test_readme_documents_every_setting(field: attrs.Attribute[object]) -> None:
    assert f"`--{field.name.replace('_', '-')}" in README
    assert f"`{ENV_PREFIX}{field.name.upper()}`" in README


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda c: c.name)
def test_close_codes_are_documented(code: CloseCode) -> None:
    assert f"| {int(code)} |" in README
    assert f"| {int(code)} |" in PROTOCOL


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_error_codes_are_documented(code: ErrorCode) -> None:
    assert f"`{code}`" in PROTOCOL
