"""Page an agency's pull feed and verify every page's signature (Python 3, jwcrypto).

    FEED_TOKEN=... python3 agency_feed.py pull BASE_URL SUBSCRIPTION PROVINCE_KEY_PEM [AFTER] [PAGES]
    FEED_TOKEN=... python3 agency_feed.py since BASE_URL SUBSCRIPTION PROVINCE_KEY_PEM RFC3339_TIME
    python3 agency_feed.py verify PROVINCE_KEY_PEM BODY_FILE SIGNATURE

`pull` asks for pages after cursor AFTER (default 0), waiting up to 30 s for new entries,
at most PAGES pages (default: until a page comes back empty). It prints one JSON line per
entry and, last, `NEXT <cursor>`: keep that cursor and ask from it next time. `since`
prints the cursor from which every entry since the time follows. `verify` checks a page kept
on disk. The province's public key (PEM) comes from the gateway's operators with its key id.

Exit codes: 0 done; 1 a signature did not verify (or the page breaks the cursor rules):
discard the page and tell the operators; 3 the gateway refused (the answer's code is
printed; `cursor_gone` prints `OLDEST <cursor>`: page from there, what was before is gone).
"""
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from jwcrypto import jwk, jws
from jwcrypto.common import JWException

SIGNATURE_HEADER = "Feed-Signature"


class BadPage(Exception):
    pass


def verify(key, body, signature):
    """The page (parsed) when `signature` is the province's ES256 detached JWS of `body`."""
    token = jws.JWS()
    try:
        token.deserialize(signature)
        if token.jose_header.get("alg") != "ES256":
            raise BadPage("the page is not signed ES256")
        token.verify(key, detached_payload=body)
    except JWException as e:
        raise BadPage(f"the signature does not verify: {e}") from e
    return json.loads(body)


def fetch(url, token):
    """(status, body bytes, signature header) of a GET."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), r.headers.get(SIGNATURE_HEADER)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), None


def refused(status, body):
    err = json.loads(body).get("error", {})
    print(f"HTTP {status} {err.get('code')}: {err.get('message')}", file=sys.stderr)
    if err.get("oldest_cursor") is not None:
        print(f"OLDEST {err['oldest_cursor']}")
    return 3


def pull(base, subscription, key, after, pages, token):
    for _ in range(pages):
        query = urllib.parse.urlencode({"after": after, "wait": "30s"})
        status, body, signature = fetch(f"{base}/feeds/{subscription}?{query}", token)
        if status != 200:
            return refused(status, body)
        page = verify(key, body, signature or "")
        if page["subscription"] != subscription or page["after"] != after:
            raise BadPage("the page is not the one asked for")
        for i, entry in enumerate(page["entries"]):
            if entry["cursor"] != after + 1 + i:
                raise BadPage(f"cursor {entry['cursor']} breaks the sequence after {after}")
            print(json.dumps(entry, ensure_ascii=False))
        if not page["entries"]:
            break
        after = page["next"]
    print(f"NEXT {after}")
    return 0


def since(base, subscription, key, when, token):
    query = urllib.parse.urlencode({"since": when})
    status, body, signature = fetch(f"{base}/feeds/{subscription}?{query}", token)
    if status != 200:
        return refused(status, body)
    print(f"CURSOR {verify(key, body, signature or '')['cursor']}")
    return 0


def main(argv):
    try:
        if argv[1] == "verify":
            key = jwk.JWK.from_pem(open(argv[2], "rb").read())
            page = verify(key, open(argv[3], "rb").read(), argv[4])
            print(f"OK {len(page['entries'])} entries, next {page['next']}")
            return 0
        base, subscription = argv[2].rstrip("/"), argv[3]
        key = jwk.JWK.from_pem(open(argv[4], "rb").read())
        token = os.environ["FEED_TOKEN"]
        if argv[1] == "since":
            return since(base, subscription, key, argv[5], token)
        after = int(argv[5]) if len(argv) > 5 else 0
        pages = int(argv[6]) if len(argv) > 6 else 1_000_000
        return pull(base, subscription, key, after, pages, token)
    except BadPage as e:
        print(f"BAD PAGE: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
