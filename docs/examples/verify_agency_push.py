#!/usr/bin/env python3
"""Verify a push from the gateway as an agency would, with independent libraries:
PyPI `standardwebhooks` (the webhook-signature header) and PyPI `http-message-signatures`
(RFC 9421, when the agency asked for it), plus the RFC 9530 Content-Digest.

Usage: verify_agency_push.py REQUEST.json
REQUEST.json: {"url", "headers": [[name, value], ...], "body_b64", "secret" (whsec_...),
"public_key_pem" (optional: the province's public key for RFC 9421)}.
Prints the verified event's type and key; exits 1 with the reason if anything fails.
"""
import base64
import datetime
import hashlib
import json
import sys

import requests
import standardwebhooks
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms


def verify(req: dict) -> dict:
    headers = {name.lower(): value for name, value in req["headers"]}
    body = base64.b64decode(req["body_b64"])

    # 1. Standard Webhooks: id, timestamp (5 minutes), HMAC-SHA256 with the shared secret.
    event = standardwebhooks.Webhook(req["secret"]).verify(body, headers)

    # 2. RFC 9421 with the province's public key, when the agency configured one.
    if req.get("public_key_pem"):
        digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
        if headers.get("content-digest") != digest:
            raise ValueError("content-digest does not match the body")

        class Keys(HTTPSignatureKeyResolver):
            def resolve_public_key(self, key_id):
                return req["public_key_pem"].encode()

        prepared = requests.Request("POST", req["url"], headers=headers, data=body).prepare()
        verifier = HTTPMessageVerifier(
            signature_algorithm=algorithms.ECDSA_P256_SHA256, key_resolver=Keys()
        )
        results = verifier.verify(prepared, max_age=datetime.timedelta(minutes=5))
        covered = [str(getattr(c, "value", c)).strip('"') for c in results[0].covered_components]
        for needed in ("@method", "@target-uri", "content-digest"):
            if needed not in covered:
                raise ValueError(f"the signature does not cover {needed}")
        params = results[0].parameters
        for p in ("created", "keyid", "nonce"):
            if p not in params:
                raise ValueError(f"the signature has no {p}")
    return event


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        request = json.load(f)
    try:
        e = verify(request)
    except Exception as exc:  # noqa: BLE001 - the reason is the output
        print(f"REFUSED: {type(exc).__name__}: {exc}")
        sys.exit(1)
    print(f"VERIFIED {e['type']} {e['key']} fields={sorted(e['data'])}")
