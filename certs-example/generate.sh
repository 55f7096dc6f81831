#!/usr/bin/env bash
# Regenerates the EXAMPLE PKI in this directory. EXAMPLE KEYS: NEVER USE IN PRODUCTION.
#
# Needs only `openssl` (tested with 3.0). Every output is committed so tests never generate at runtime.
# Run from anywhere: ./certs-example/generate.sh
set -euo pipefail

cd "$(dirname "$0")"
OUT="$(pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export CA_DIR="$WORK/root"  # `openssl req` also reads ca.cnf, which needs the variable set

DAYS=7300           # 20 years
PASS=example        # PKCS#12 password
# The CAs predate the expired signer (2020), so "valid at signing time" can be tested with it.
CA_START=20190101000000Z
SUBJ_BASE="/C=VN/O=Example Province Gateway (EXAMPLE ONLY)"

rm -f ./*.pem ./*.key ./*.p12 ./*.crl ./tsa.cnf

# --- one `openssl ca` config used for both CAs; the CA's directory is passed as $ENV::CA_DIR ---
cat > "$WORK/ca.cnf" <<'CNF'
[ ca ]
default_ca = the_ca

[ the_ca ]
dir               = $ENV::CA_DIR
database          = $dir/index.txt
serial            = $dir/serial
crlnumber         = $dir/crlnumber
new_certs_dir     = $dir/newcerts
certificate       = $dir/ca.pem
private_key       = $dir/ca.key
default_md        = sha256
default_days      = 7300
default_crl_days  = 7300
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

[ v3_root ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ v3_intermediate ]
basicConstraints       = critical, CA:TRUE, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ v3_server ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, keyEncipherment
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ v3_client ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ v3_signing ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, nonRepudiation
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ v3_tsa ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, nonRepudiation
extendedKeyUsage       = critical, timeStamping
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ crl_ext ]
authorityKeyIdentifier = keyid:always
CNF

init_ca() { # $1 = dir
    mkdir -p "$1/newcerts"
    : > "$1/index.txt"
    echo 1000 > "$1/serial"
    echo 1000 > "$1/crlnumber"
}

rsa_key() { openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }
ec_key()  { openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out "$1"; }

# issue NAME CN EXT [extra `openssl ca` args...]: issues $OUT/NAME.pem from $OUT/NAME.key with the intermediate
issue() {
    local name=$1 cn=$2 ext=$3
    shift 3
    openssl req -new -config "$WORK/ca.cnf" -key "$OUT/$name.key" -subj "$SUBJ_BASE/CN=$cn" -out "$WORK/$name.csr"
    CA_DIR="$WORK/int" openssl ca -batch -notext -config "$WORK/ca.cnf" -extensions "$ext" \
        -in "$WORK/$name.csr" -out "$OUT/$name.pem" "$@" 2>/dev/null
}

# --- root CA (self-signed via `openssl ca -selfsign` so it appears in its own CRL database) ---
init_ca "$WORK/root"
rsa_key root-ca.key
cp root-ca.key "$WORK/root/ca.key"
openssl req -new -config "$WORK/ca.cnf" -key root-ca.key -subj "$SUBJ_BASE/CN=Example Root CA" -out "$WORK/root.csr"
CA_DIR="$WORK/root" openssl ca -batch -notext -selfsign -config "$WORK/ca.cnf" -keyfile root-ca.key \
    -startdate "$CA_START" -extensions v3_root -in "$WORK/root.csr" -out root-ca.pem 2>/dev/null
cp root-ca.pem "$WORK/root/ca.pem"

# --- an unrelated root CA, certificate only (its key is thrown away): the "wrong CA" of the
# TLS tests (a server certificate of this PKI must not chain to it) ---
init_ca "$WORK/other"
rsa_key "$WORK/other-root-ca.key"
openssl req -new -config "$WORK/ca.cnf" -key "$WORK/other-root-ca.key" \
    -subj "$SUBJ_BASE/CN=Example Unrelated Root CA" -out "$WORK/other.csr"
CA_DIR="$WORK/other" openssl ca -batch -notext -selfsign -config "$WORK/ca.cnf" -keyfile "$WORK/other-root-ca.key" \
    -startdate "$CA_START" -extensions v3_root -in "$WORK/other.csr" -out other-root-ca.pem 2>/dev/null

# --- intermediate CA ---
init_ca "$WORK/int"
rsa_key intermediate-ca.key
openssl req -new -config "$WORK/ca.cnf" -key intermediate-ca.key -subj "$SUBJ_BASE/CN=Example Intermediate CA" \
    -out "$WORK/int.csr"
CA_DIR="$WORK/root" openssl ca -batch -notext -config "$WORK/ca.cnf" -extensions v3_intermediate \
    -startdate "$CA_START" -in "$WORK/int.csr" -out intermediate-ca.pem 2>/dev/null
cp intermediate-ca.key "$WORK/int/ca.key"
cp intermediate-ca.pem "$WORK/int/ca.pem"
cat intermediate-ca.pem root-ca.pem > chain.pem

# --- TLS server and client (mTLS) ---
rsa_key server.key;  issue server  localhost              v3_server
rsa_key client.key;  issue client  "Example mTLS Client"  v3_client

# --- signing certificates ---
rsa_key sign-rsa.key;  issue sign-rsa  "Example RSA Signer"    v3_signing
ec_key  sign-ec.key;   issue sign-ec   "Example ECDSA Signer"  v3_signing
rsa_key sign-expired.key
issue sign-expired "Example Expired Signer" v3_signing -startdate 20200101000000Z -enddate 20210101000000Z
rsa_key sign-revoked.key; issue sign-revoked "Example Revoked Signer" v3_signing

# --- time-stamp authority ---
rsa_key tsa.key; issue tsa "Example TSA" v3_tsa

# --- revocation and CRLs ---
CA_DIR="$WORK/int" openssl ca -batch -config "$WORK/ca.cnf" -revoke sign-revoked.pem -crl_reason keyCompromise 2>/dev/null
CA_DIR="$WORK/int" openssl ca -batch -config "$WORK/ca.cnf" -gencrl -crlexts crl_ext -out intermediate-ca.crl.pem 2>/dev/null
CA_DIR="$WORK/root" openssl ca -batch -config "$WORK/ca.cnf" -gencrl -crlexts crl_ext -out root-ca.crl.pem 2>/dev/null

# --- PKCS#12 bundles of the signing keys (password "example") ---
for name in sign-rsa sign-ec; do
    openssl pkcs12 -export -inkey "$name.key" -in "$name.pem" -certfile chain.pem -name "$name" \
        -passout "pass:$PASS" -out "$name.p12"
done

# --- `openssl ts` config for a local TSA; run it from a copy of this directory (it writes tsaserial) ---
cat > tsa.cnf <<'CNF'
# EXAMPLE local time-stamp authority for tests: openssl ts -reply -config tsa.cnf -queryfile req.tsq -out resp.tsr
# Relative paths: run from a directory holding tsa.pem, tsa.key and chain.pem (tests copy them to a temp dir).
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir                    = .
serial                 = $dir/tsaserial
crypto_device          = builtin
signer_cert            = $dir/tsa.pem
certs                  = $dir/chain.pem
signer_key             = $dir/tsa.key
signer_digest          = sha256
default_policy         = 1.3.6.1.4.1.99999.1.1
other_policies         = 1.3.6.1.4.1.99999.1.2
digests                = sha256, sha384, sha512
accuracy               = secs:1
ordering               = yes
tsa_name               = yes
ess_cert_id_chain      = no
ess_cert_id_alg        = sha256
CNF

# --- the remote-signing officials, issued by the new intermediate (certs-example/officials/) ---
"$OUT/officials.sh"

chmod 600 ./*.key
echo "Example PKI written to $OUT (EXAMPLE KEYS, NEVER FOR PRODUCTION)"
