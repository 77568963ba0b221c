#!/usr/bin/env bash
# Makes the certificates docker-compose.etcd-tls.yml mounts: a CA, etcd's server certificate
# (names etcd, localhost, 127.0.0.1) and the brokers' client certificate (CN=silt), PEM, in
# deploy/etcd-tls/ (or the directory given). Needs openssl. Existing files are kept.
set -euo pipefail
dir="${1:-$(dirname "$0")/etcd-tls}"
mkdir -p "$dir"
cd "$dir"
if [ -f ca.crt ] && [ -f server.crt ] && [ -f client.crt ]; then
  echo "certificates already in $PWD"
  exit 0
fi
days=825
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=silt etcd CA" -keyout ca.key -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
leaf() { # name subject extensions
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -out "$1.crt" -extfile <(printf '%s\n' "$3") 2>/dev/null
  rm -f "$1.csr"
}
leaf server "/CN=etcd" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:etcd,DNS:localhost,IP:127.0.0.1"
leaf client "/CN=silt" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
rm -f ca.srl
# The containers run as other users (etcd's, and silt's uid 10001): readable keys, in a
# directory that is for this compose project only.
chmod 0644 ./*.crt ./*.key
echo "wrote $PWD: ca.crt, server.crt/key (etcd), client.crt/key (CN=silt)"
