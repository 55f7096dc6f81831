#!/usr/bin/env python3
"""Check a dossier's evidence bundle (`gateway evidence export`) offline, with hashlib alone.

Usage: python3 verify_evidence.py BUNDLE_DIR

It reads BUNDLE_DIR/proof.json and checks, exactly as `gateway evidence verify --bundle` does:
- each chain's link files follow each other: every file's SHA-256 is the next one's `prev` line
  and their `seq` lines count up by one;
- each exchange of the dossier is committed to by a link of its chain: a leaf text (first line
  gateway-evidence-leaf-v1) whose hash SHA-256(0x00 || leaf) leads through its audit path
  (node = SHA-256(0x01 || left || right), RFC 6962 / RFC 9162 2.1.3.2) to the link's `root`
  line, or, recorded before batch links, the link itself (gateway-evidence-v1);
- the leaf (or record) names the proof's dossier and the exchange.
The time-stamp token over each chain's last link is checked with OpenSSL (see the bundle's
README). Prints OK and exits 0, or prints REFUSED with the reason and exits 1.
"""

import hashlib
import json
import os
import sys

PROOF_FORMAT = "gateway-evidence-proof-v1"
LEAF_TAG = "gateway-evidence-leaf-v1"
BATCH_TAG = "gateway-evidence-batch-v1"
RECORD_TAG = "gateway-evidence-v1"


class Refused(Exception):
    pass


def read(bundle, name):
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise Refused(f"{name}: not a relative path inside the bundle")
    try:
        with open(os.path.join(bundle, *parts), "rb") as f:
            return f.read()
    except OSError as e:
        raise Refused(f"cannot read {name}: {e}")


def field(text, name):
    for line in text.split("\n"):
        if line.startswith(name + ": "):
            return line[len(name) + 2:]
    return None


def escaped(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(leaf, index, size, path):
    """RFC 9162 2.1.3.2: the root the path leads to, or None."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify(bundle):
    try:
        proof = json.loads(read(bundle, "proof.json"))
    except ValueError as e:
        raise Refused(f"proof.json: {e}")
    if proof.get("format") != PROOF_FORMAT:
        raise Refused(f"proof.json: format {proof.get('format')!r} is not {PROOF_FORMAT}")
    dossier = proof["dossier"]
    links = {}
    for c in proof["chains"]:
        chain = c["chain"]
        before = None
        for name in c["links"]:
            data = read(bundle, name)
            text = data.decode("utf-8")
            tag = text.split("\n", 1)[0]
            if tag not in (RECORD_TAG, BATCH_TAG):
                raise Refused(f"{name}: not a chain link")
            if field(text, "chain") != escaped(chain):
                raise Refused(f"{name}: belongs to another chain")
            seq = int(field(text, "seq") or "-1")
            if before is not None:
                prev_name, prev_seq, prev_hash = before
                if seq != prev_seq + 1:
                    raise Refused(f"chain {chain}: {prev_name} is not committed to by the next link (next seq is {seq})")
                if field(text, "prev") != prev_hash:
                    raise Refused(f"chain {chain}: {prev_name} is not committed to by the next link ({name}'s prev is not its SHA-256)")
            before = (name, seq, hashlib.sha256(data).hexdigest())
            links[(chain, name)] = text
    for x in proof["exchanges"]:
        exchange = x["exchange"]
        link = links.get((x["chain"], x["link"]))
        if link is None:
            raise Refused(f"exchange {exchange}: its link {x['link']} is not in chain {x['chain']}'s links")
        leaf = x.get("leaf")
        if leaf is None:
            if not link.startswith(RECORD_TAG + "\n"):
                raise Refused(f"{x['link']}: not a per-event record")
            named, named_file = link, x["link"]
        else:
            data = read(bundle, leaf["file"])
            named, named_file = data.decode("utf-8"), leaf["file"]
            if not named.startswith(LEAF_TAG + "\n"):
                raise Refused(f"{leaf['file']}: not a leaf")
        if field(named, "dossier") != escaped(dossier):
            raise Refused(f"exchange {exchange}: {named_file} is not of dossier {dossier}")
        if field(named, "exchange") != escaped(exchange):
            raise Refused(f"exchange {exchange}: {named_file} is another exchange")
        if leaf is not None:
            wrong = f"exchange {exchange}: the leaf and its path do not lead to the root of {x['link']} (leaf, path or link modified)"
            if not link.startswith(BATCH_TAG + "\n") or field(link, "leaves") != str(leaf["size"]):
                raise Refused(wrong)
            try:
                path = [bytes.fromhex(p) for p in leaf["path"]]
            except ValueError:
                raise Refused(wrong)
            if any(len(p) != 32 for p in path):
                raise Refused(wrong)
            h = hashlib.sha256(b"\x00" + data).digest()
            root = root_from_path(h, leaf["index"], leaf["size"], path)
            if root is None or field(link, "root") != root.hex():
                raise Refused(wrong)
    return len(proof["exchanges"]), len(links)


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().split("\n\n")[1])
        return 2
    try:
        exchanges, links = verify(sys.argv[1])
    except (Refused, KeyError, TypeError) as e:
        print(f"REFUSED: {e}")
        return 1
    print(f"OK: {exchanges} exchange(s) of the dossier, {links} chain link(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
