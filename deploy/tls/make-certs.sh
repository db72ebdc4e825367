#!/bin/sh
# A private CA and the certificates deploy/compose.yaml mounts (for trying TLS to the stores on one
# machine; in production your PKI issues them): run it once in deploy/tls.
#   ca.pem                       the CA aam trusts for both stores (AAM_DATABASE_CA_FILE, AAM_REDIS_CA_FILE)
#   postgres.crt/.key, redis.crt/.key   the servers' certificates, named as aam reaches them
#   aam-client.crt/.key          aam's client certificate; CN=aam, the PostgreSQL role it logs in as
set -eu
cd "$(dirname "$0")"
ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "$@"; }
ec -x509 -days 365 -subj "/CN=aam stores CA" -keyout ca.key -out ca.pem
sign() { # name CN extension
  ec -subj "/CN=$2" -keyout "$1.key" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -extfile "$1.ext" -out "$1.crt"
  rm -f "$1.csr" "$1.ext"
}
sign postgres postgres "subjectAltName=DNS:postgres"
sign redis redis "subjectAltName=DNS:redis"
sign aam-client aam "extendedKeyUsage=clientAuth"
# The containers run as other users than yours: they must be able to read the files they mount.
chmod 644 ca.pem ./*.crt postgres.key redis.key aam-client.key
chmod 600 ca.key
