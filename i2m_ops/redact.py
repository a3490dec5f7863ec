"""Redaction of secret values from text and from every file of a run's folder.

The roles never print a value (no_log, names and states only); this is the second line of
defence, for whatever a failing task or a verbose run might still carry.
"""

import base64
import json
import urllib.parse
from pathlib import Path

MARK = "<redacted>"


def _forms(value: str) -> set:
    """The ways a value can be written: raw, JSON-escaped, base64, URL-encoded."""
    return {value, json.dumps(value)[1:-1], base64.b64encode(value.encode()).decode(),
            urllib.parse.quote(value), urllib.parse.quote_plus(value)}


def redact_text(text: str, secrets: set) -> str:
    """text with every form of every secret value replaced by MARK, longest first."""
    forms = sorted({form for value in secrets for form in _forms(value)}, key=len, reverse=True)
    for form in forms:
        text = text.replace(form, MARK)
    return text


def redact_data(node, secrets: set):
    """node (JSON-like: dicts, lists, strings, other scalars) with every string redacted."""
    if isinstance(node, dict):
        return {key: redact_data(value, secrets) for key, value in node.items()}
    if isinstance(node, list):
        return [redact_data(value, secrets) for value in node]
    return redact_text(node, secrets) if isinstance(node, str) else node


def redact_tree(folder: Path, secrets: set) -> None:
    if not secrets:
        return
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        redacted = redact_text(text, secrets)
        if redacted != text:
            path.write_text(redacted)
