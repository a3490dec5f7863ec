"""The published JSON Schema of run.json, applied to documents in the tests."""

import json

import jsonschema

from i2m_ops.report import SCHEMA, SCHEMA_FILE


def assert_matches_schema(document: dict) -> None:
    """Fails the test with the first violation when document does not match schema/run-1.json."""
    schema = json.loads(SCHEMA_FILE.read_text())
    assert document["schema"] == SCHEMA == schema["properties"]["schema"]["const"]
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    assert error is None, f"run {document.get('run_id')}: {'/'.join(map(str, error.absolute_path))}: {error.message}"
