#!/usr/bin/env bash
# Makes the certificates of the TLS tests with the openssl command, in DIR (issue 17):
#   ca            a CA (CN "nodecoord test CA")
#   other-ca      another CA: what "the wrong CA" signs
#   server        CN localhost, SAN DNS:localhost and IP:127.0.0.1, signed by ca
#   server2       the same names with another key (certificate rotation)
#   expired       like server, but valid only on 2020-01-01, signed by ca
#   node-a        a client certificate, CN node-a (SAN DNS:node-a), signed by ca
#   wrong-cn      a client certificate, CN intruder, signed by ca
#   rogue         a client certificate, CN node-a, signed by other-ca
#   expired-node-a  node-a's client certificate, valid only on 2020-01-01, signed by ca
# Each as NAME.crt and NAME.key (EC P-256).
#   tests/support/make_certs.sh DIR
set -euo pipefail
dir=${1:?usage: make_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

make_ca() { # NAME CN
  key "$1"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 3650 -out "$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

make_leaf() { # NAME CN SAN ISSUER USAGE
  key "$1"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" "$5" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$4.crt" -CAkey "$4.key" -CAcreateserial -days 825 -extfile "$1.ext" \
    -out "$1.crt" 2>/dev/null
}

make_ca ca "nodecoord test CA"
make_ca other-ca "someone else's CA"
make_leaf server localhost "DNS:localhost,IP:127.0.0.1" ca serverAuth
make_leaf server2 localhost "DNS:localhost,IP:127.0.0.1" ca serverAuth
make_leaf node-a node-a "DNS:node-a" ca clientAuth
make_leaf wrong-cn intruder "DNS:intruder" ca clientAuth
make_leaf rogue node-a "DNS:node-a" other-ca clientAuth

# An expired certificate: `openssl x509` cannot date a certificate in the past, `openssl ca` can.
mkdir -p ca-db
: >ca-db/index.txt
echo 1000 >ca-db/serial
cat >ca.cnf <<'CNF'
[ca]
default_ca = test_ca
[test_ca]
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
default_md = sha256
policy = any
copy_extensions = copy
[any]
commonName = supplied
CNF
key expired
openssl req -new -key expired.key -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -out expired.csr 2>/dev/null
openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -startdate 20200101000000Z -enddate 20200102000000Z \
  -in expired.csr -out expired.crt -notext 2>/dev/null

# An expired client certificate of node-a (mutual TLS), from the same CA.
key expired-node-a
openssl req -new -key expired-node-a.key -subj "/CN=node-a" -addext "subjectAltName=DNS:node-a" \
  -addext "extendedKeyUsage=clientAuth" -out expired-node-a.csr 2>/dev/null
openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -startdate 20200101000000Z -enddate 20200102000000Z \
  -in expired-node-a.csr -out expired-node-a.crt -notext 2>/dev/null
