"""JWS interop helper driven by tests/jws_interop.rs (needs: pip install jwcrypto).

  verify PUBLIC_KEY_PEM TOKEN [DETACHED_PAYLOAD_FILE]    exit 0 and print OK when the signature verifies
  sign ALG PRIVATE_KEY_PEM KID PAYLOAD_FILE [detached]   print a compact (or RFC 7797 detached) JWS
"""
import sys

from jwcrypto import jwk, jws
from jwcrypto.common import json_encode


def main():
    mode = sys.argv[1]
    if mode == "verify":
        key = jwk.JWK.from_pem(open(sys.argv[2], "rb").read())
        token = sys.argv[3]
        detached = open(sys.argv[4], "rb").read() if len(sys.argv) > 4 else None
        obj = jws.JWS()
        obj.deserialize(token)
        obj.verify(key, detached_payload=detached)
        print("OK")
    elif mode == "sign":
        alg, key_path, kid, payload_path = sys.argv[2:6]
        detached = len(sys.argv) > 6 and sys.argv[6] == "detached"
        key = jwk.JWK.from_pem(open(key_path, "rb").read())
        payload = open(payload_path, "rb").read()
        header = {"alg": alg, "kid": kid}
        if detached:
            header.update({"b64": False, "crit": ["b64"]})
        obj = jws.JWS(payload)
        obj.add_signature(key, None, json_encode(header))
        if detached:
            obj.detach_payload()
        print(obj.serialize(compact=True))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
