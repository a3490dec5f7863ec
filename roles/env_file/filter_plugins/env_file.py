"""Filters of the env_file role: quoting for compose's env-file reader, input checks, redaction.

Problems are reported by key name only: no function here returns a value it was given.
"""

import re
from pathlib import Path

try:  # ansible-core 2.19+ records where each value was read (file, line, column)
    from ansible._internal._datatag._tags import Origin
except ImportError:
    Origin = None

KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DIALECTS = ("compose_v2", "compose_v1")


def env_file_quote(value, dialect="compose_v2"):
    r"""Quote a value so that compose's --env-file reader returns it byte for byte.

    compose v2: single quotes are literal, so they serve unless the value holds one or ends with
    a backslash (read as an escaped closing quote); then double quotes, escaping \\, \" and \$. compose v1 (python-dotenv): single quotes, escaping \\ and
    \' (it still expands ${...} inside them: env_file_problems refuses such values for v1).
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown env file dialect {dialect!r}: use one of {DIALECTS}")
    text = str(value)
    if dialect == "compose_v1":
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if "'" not in text and not text.endswith("\\"):
        return f"'{text}'"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def env_file_problems(values, secrets, required_keys, dialect="compose_v2"):
    """Every reason the inputs cannot make a correct env file, one line each, naming the key."""
    problems = []
    if not isinstance(values, dict):
        return ["the non-secret values must be a mapping of KEY: value"]
    if not isinstance(secrets, dict):
        return ["the secrets must be a mapping of KEY: value"]
    for key in sorted(set(values) & set(secrets)):
        problems.append(f"{key} is set both as a value and as a secret: keep one")
    entries = {**values, **secrets}
    for key in required_keys:
        if key not in entries:
            problems.append(f"{key} is required but not set: add it to the inventory (secrets: the vault)")
    for key in sorted(entries):
        problems.extend(_value_problems(key, entries[key], key in required_keys, entries, dialect))
    return problems


def _value_problems(key, value, required, entries, dialect):
    if not KEY_PATTERN.match(str(key)):
        return [f"{key!r} is not a valid variable name (letters, digits and _; not starting with a digit)"]
    if value is None:
        return [f"{key} is null: give it a value, or '' to leave it empty"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        kind = next((kind.__name__ for kind in (bool, float, list, dict) if isinstance(value, kind)), type(value).__name__)
        return [f"{key} must be a string or an integer, not {kind}: quote it in YAML"]
    if isinstance(value, int) and _typed_text(value) not in (None, str(value)):
        return [f"{key} is not read back as it was typed (YAML reads leading zeros as octal, 1:30 as 90, 1_000 as 1000): quote it"]
    text = str(value)
    if required and not text.strip():
        return [f"{key} is required but empty: set a value in the inventory (secrets: the vault)"]
    if any(char in text for char in "\n\r\0"):
        return [f"{key} holds a line break or NUL byte, which an env file cannot carry"]
    glued = sorted(other for other in entries if other != key and f"{other}=" in text)
    if glued:
        return [f"{key} has another assignment glued on ({', '.join(glued)}=...): split it into its own key"]
    if dialect == "compose_v1" and "${" in text:
        return [f"{key} holds '${{', which docker-compose v1 expands: install the compose v2 plugin"]
    if dialect == "compose_v1" and text.endswith("\\"):
        return [f"{key} ends with a backslash, which docker-compose v1 cannot read back: install the compose v2 plugin"]
    return []


def _typed_text(value):
    """The text a YAML scalar was typed as, read back from its origin (file, line, column) where
    Ansible recorded one; None where it did not (a value from another source, ansible-core < 2.19)."""
    origin = Origin.get_tag(value) if Origin else None
    if origin is None or not (origin.path and origin.line_num and origin.col_num):
        return None
    try:
        line = Path(origin.path).read_text().splitlines()[origin.line_num - 1]
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    # A plain scalar ends at a flow delimiter, a comment or the end of the line.
    return re.split(r"[,\]}]|\s#", line[origin.col_num - 1:])[0].strip()


def env_file_redact(text, secrets):
    """Replace every secret value in a text by <redacted:KEY>, longest values first."""
    redacted = str(text)
    for key, value in sorted(secrets.items(), key=lambda item: -len(str(item[1]))):
        if str(value):
            redacted = redacted.replace(str(value), f"<redacted:{key}>")
    return redacted


class FilterModule:
    def filters(self):
        return {
            "env_file_quote": env_file_quote,
            "env_file_problems": env_file_problems,
            "env_file_redact": env_file_redact,
        }
