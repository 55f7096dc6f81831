#!/usr/bin/env python3
"""Check deliveries against your subscription's JSON Schema (PyPI `jsonschema`).

Usage: validate_delivery.py SCHEMA.json BODY.json [BODY.json ...]
SCHEMA.json: your subscription's schema (`gateway agencies schema NAME`, or the province's copy
in docs/schemas/subscriptions/); each BODY.json: the exact body of one push, or one feed entry's
`event`. Prints `VALID <file>` or `INVALID <file>: <reason>` per body; exits 1 if any is invalid.
The schema is closed (`additionalProperties: false`): a field your subscription did not name is
refused, so this also checks that the province sent you no more than you are entitled to.
"""
import json
import sys

import jsonschema


def main(argv):
    with open(argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    bad = 0
    for path in argv[2:]:
        with open(path, "rb") as f:
            body = json.loads(f.read())
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            bad += 1
            # With anyOf, the branch errors say which field was refused.
            reasons = [c.message for e in errors for c in (e.context or [e])]
            print(f"INVALID {path}: {'; '.join(sorted(set(reasons)))}")
        else:
            print(f"VALID {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
