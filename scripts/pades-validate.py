#!/usr/bin/env python3
"""Validate the last signature of a PDF with pyHanko (an independent PAdES validator).

Usage: scripts/pades-validate.py SIGNED.pdf ROOT.pem [INTERMEDIATE.pem ...]

Prints key=value lines (intact, valid, trusted, coverage, subfilter, timestamp) and exits 0
only when the signature is intact, valid, trusted and covers the entire file, and its
signature time-stamp (if any) is intact, valid and trusted. Nothing is fetched from the
network: trust comes from the given PEM files only.
"""
import sys

from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    root = load_cert_from_pemder(sys.argv[2])
    others = [load_cert_from_pemder(p) for p in sys.argv[3:]]
    vc = ValidationContext(
        trust_roots=[root], other_certs=others, allow_fetching=False, revocation_mode="soft-fail"
    )
    with open(sys.argv[1], "rb") as f:
        reader = PdfFileReader(f)
        if not reader.embedded_signatures:
            print("error=no signature in the PDF")
            return 1
        sig = reader.embedded_signatures[-1]
        st = validate_pdf_signature(sig, vc, ts_validation_context=vc)
        tv = st.timestamp_validity
        ts_ok = None if tv is None else bool(tv.intact and tv.valid and tv.trusted)
        print("intact=%s" % st.intact)
        print("valid=%s" % st.valid)
        print("trusted=%s" % st.trusted)
        print("coverage=%s" % st.coverage.name)
        print("subfilter=%s" % sig.sig_object["/SubFilter"])
        print("timestamp=%s" % ts_ok)
        ok = st.intact and st.valid and st.trusted and st.coverage.name == "ENTIRE_FILE"
        return 0 if ok and ts_ok is not False else 1


if __name__ == "__main__":
    sys.exit(main())
