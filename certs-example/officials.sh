#!/usr/bin/env bash
# Issues the EXAMPLE officials of the remote-signing sandboxes (SmartCA, MySign, CSC) from the
# example intermediate CA of this directory. EXAMPLE KEYS: NEVER USE IN PRODUCTION.
#
# Needs only `openssl` (tested with 3.0) and the intermediate CA written by generate.sh (which
# calls this script at its end). Every output is committed so tests never generate at runtime.
# Run from anywhere: ./certs-example/officials.sh
set -euo pipefail

cd "$(dirname "$0")"
EX="$(pwd)"
OUT="$EX/officials"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
SUBJ_BASE="/C=VN/O=Example Province Gateway (EXAMPLE ONLY)/OU=Example Commune Officials"

mkdir -p "$OUT" "$WORK/ca/newcerts"
rm -f "$OUT"/*.pem "$OUT"/*.key
: > "$WORK/ca/index.txt"
# Serials of their own (5000 hex up), apart from generate.sh's (1000 up): officials are pinned
# by serial in the gateway's configuration, so two certificates must never share one.
echo 5000 > "$WORK/ca/serial"
cp "$EX/intermediate-ca.pem" "$WORK/ca/ca.pem"
cp "$EX/intermediate-ca.key" "$WORK/ca/ca.key"

cat > "$WORK/ca.cnf" <<'CNF'
[ ca ]
default_ca = the_ca
[ the_ca ]
dir               = $ENV::CA_DIR
database          = $dir/index.txt
serial            = $dir/serial
new_certs_dir     = $dir/newcerts
certificate       = $dir/ca.pem
private_key       = $dir/ca.key
default_md        = sha256
default_days      = 7300
policy            = policy_any
unique_subject    = no
copy_extensions   = none
email_in_dn       = no
[ policy_any ]
countryName            = optional
organizationName       = optional
organizationalUnitName = optional
commonName             = supplied
[ req ]
distinguished_name = dn
prompt             = no
[ dn ]
CN = placeholder
# An official's signing certificate: what remote signing services issue.
[ v3_official ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, nonRepudiation
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
# A certificate an official must not sign with: encipherment only.
[ v3_no_signing ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, keyEncipherment, dataEncipherment
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
CNF
export CA_DIR="$WORK/ca"

rsa_key() { openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }
ec_key()  { openssl genpkey -quiet -algorithm EC -pkeyopt "ec_paramgen_curve:$2" -pkeyopt ec_param_enc:named_curve -out "$1"; }

# issue NAME CN EXT [extra `openssl ca` args...]
issue() {
    local name=$1 cn=$2 ext=$3
    shift 3
    openssl req -new -config "$WORK/ca.cnf" -key "$OUT/$name.key" -subj "$SUBJ_BASE/CN=$cn" -out "$WORK/$name.csr"
    openssl ca -batch -notext -config "$WORK/ca.cnf" -extensions "$ext" \
        -in "$WORK/$name.csr" -out "$OUT/$name.pem" "$@" 2>/dev/null
}

rsa_key "$OUT/official-rsa.key";        issue official-rsa      "Example Official Nguyen Van A (RSA)"   v3_official
ec_key  "$OUT/official-ec.key" P-256;   issue official-ec       "Example Official Tran Thi B (P-256)"   v3_official
ec_key  "$OUT/official-ec384.key" P-384; issue official-ec384   "Example Official Le Van C (P-384)"    v3_official
rsa_key "$OUT/official-other.key";      issue official-other    "Example Official Pham Thi D (RSA)"     v3_official
rsa_key "$OUT/official-expired.key"
issue official-expired "Example Official Hoang Van E (expired)" v3_official -startdate 20200101000000Z -enddate 20210101000000Z
rsa_key "$OUT/official-nousage.key";    issue official-nousage  "Example Official Vu Thi F (no signing usage)" v3_no_signing

chmod 600 "$OUT"/*.key
echo "Example officials written to $OUT (EXAMPLE KEYS, NEVER FOR PRODUCTION)"
