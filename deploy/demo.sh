#!/usr/bin/env bash
# deploy/demo.sh — `make demo`: a complete ferry migration on this machine.
#
# Starts two private PostgreSQL 15 servers (a logical-replication-ready
# source and a plain target) under ./.demo/, seeds the source with three
# tables (~155,000 rows), writes .demo/ferry.yaml, runs
#   bin/ferry migrate --config .demo/ferry.yaml
# (snapshot mode, embedded NATS JetStream), then checks that every table has
# the same row count and the same md5 of its rows in primary-key order on both
# sides. Exits non-zero if anything differs. The servers are always stopped.
#
# Environment:
#   FERRY=path     use this ferry binary instead of building bin/ferry
#   DEMO_KEEP=1    leave both servers running afterwards (to look around)
#
# Needs Debian's postgresql package (installed via apt-get when missing) and Go.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PGSH=$ROOT/e2e/scripts/pg.sh

say() { printf '\n==> %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

# Root runs apt-get directly; others need sudo.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) to run: $*"; fi
}

# --- prerequisites ---------------------------------------------------------
if [[ -z "${PG_BINDIR:-}" && ! -x /usr/lib/postgresql/15/bin/postgres ]]; then
  say "PostgreSQL 15 is missing: installing Debian's postgresql package"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
fi
BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PSQL=$BINDIR/psql

if [[ -z "${FERRY:-}" ]]; then
  if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    export PATH=/usr/local/go/bin:$PATH
  fi
  command -v go >/dev/null || die "Go is not installed (expected it on PATH or in /usr/local/go/bin)"
  say "Building ferry: go build -o bin/ferry ./cmd/ferry"
  go build -o bin/ferry ./cmd/ferry
  FERRY=$ROOT/bin/ferry
fi

# --- servers ---------------------------------------------------------------
mkdir -p .demo
# Each run migrates from scratch: stream state left by an earlier run would
# make ferry resume instead.
rm -rf .demo/nats

# The servers run as user postgres when we are root, so their directory must
# be reachable by it; a checkout under a private home (/root) is not, and
# then the servers live under /tmp instead.
WORK=$(mktemp -d "$ROOT/.demo/pg.XXXXXX")
chmod 755 "$WORK"
if [[ $(id -u) -eq 0 ]] && ! runuser -u postgres -- test -x "$WORK" 2>/dev/null; then
  rmdir "$WORK"
  WORK=$(mktemp -d /tmp/ferry-demo.XXXXXX)
  chmod 755 "$WORK"
fi

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ "${DEMO_KEEP:-}" == 1 && $rc -eq 0 ]]; then
    say "Servers left running (DEMO_KEEP=1); stop them with:"
    echo "  $PGSH stop $WORK/src; $PGSH stop $WORK/dst; rm -rf $WORK"
    exit 0
  fi
  say "Stopping the servers"
  "$PGSH" stop "$WORK/src" || rc=1
  "$PGSH" stop "$WORK/dst" || rc=1
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # exit runs the EXIT trap, which stops the servers

# start_pg NAME [logical]: start a server in $WORK/NAME on a free port and
# print the port. Retries with a new port if another process took it first.
start_pg() {
  local name=$1 port i
  shift
  for i in 1 2 3 4 5; do
    port=$("$PGSH" port)
    if "$PGSH" start "$WORK/$name" "$port" "$@" >&2; then
      echo "$port"
      return 0
    fi
    echo "demo: start on port $port failed, retrying" >&2
  done
  die "could not start the $name server"
}

# q PORT DB [psql args]: psql as postgres (trust auth, no password). PGTZ
# fixes the session time zone, so timestamptz text is the same on both sides.
q() {
  local port=$1 db=$2
  shift 2
  PGTZ=UTC "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"
}

say "Starting PostgreSQL servers in $WORK"
SRC_PORT=$(start_pg src logical)
DST_PORT=$(start_pg dst)

q "$SRC_PORT" postgres -c "CREATE DATABASE src"
q "$DST_PORT" postgres -c "CREATE DATABASE dst"

# The same tables on both sides; ferry's snapshot fills the target's. No
# foreign keys: an applier may load tables in any order.
SCHEMA='
CREATE TABLE public.customers (
  id    bigint PRIMARY KEY,
  name  text NOT NULL,
  email text
);
CREATE TABLE public.orders (
  id          bigserial PRIMARY KEY,
  customer_id bigint NOT NULL,
  amount      numeric(12,2) NOT NULL,
  placed_at   timestamptz NOT NULL,
  items       jsonb
);
CREATE TABLE public.order_lines (
  order_id bigint NOT NULL,
  line_no  int NOT NULL,
  sku      text NOT NULL,
  qty      int NOT NULL,
  price    numeric(10,2) NOT NULL,
  PRIMARY KEY (order_id, line_no)
);'
q "$SRC_PORT" src -c "$SCHEMA"
q "$DST_PORT" dst -c "$SCHEMA"

say "Seeding the source (deterministic data: NULLs, non-ASCII text, jsonb, negative amounts)"
q "$SRC_PORT" src <<'SQL'
INSERT INTO public.customers (id, name, email)
SELECT g,
       (ARRAY['Ada','Zoë','Björn','Łucja','李雷','Amélie'])[1 + g % 6] || ' #' || g,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'customer' || g || '@example.com' END
FROM generate_series(1, 5000) g;

INSERT INTO public.orders (customer_id, amount, placed_at, items)
SELECT 1 + (g * 7919) % 5000,
       CASE WHEN g % 50 = 0 THEN -((g % 1000) / 100.0) ELSE (g * 37 % 100000) / 100.0 END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '37 seconds',
       CASE WHEN g % 13 = 0 THEN NULL
            ELSE jsonb_build_object('sku', 'SKU-' || g % 500, 'qty', 1 + g % 5,
                                    'gift', g % 7 = 0, 'tags', jsonb_build_array('demo', g % 3)) END
FROM generate_series(1, 50000) g;

INSERT INTO public.order_lines (order_id, line_no, sku, qty, price)
SELECT o, l, 'SKU-' || (o * 3 + l) % 500, 1 + (o + l) % 4, ((o * l) % 5000) / 100.0
FROM generate_series(1, 50000) o, generate_series(1, 2) l;

ANALYZE;
SQL

# --- ferry -------------------------------------------------------------------
NATS_PORT=$("$PGSH" port)
say "Writing .demo/ferry.yaml"
# DSNs carry no password (trust auth on private servers), so the file and
# ferry's logs hold no secret.
cat > .demo/ferry.yaml <<EOF
# Written by deploy/demo.sh; ports change on every run.
nats:
  url: ""                 # empty: ferry runs an embedded NATS JetStream server
  listen: 127.0.0.1:$NATS_PORT
  dataDir: $ROOT/.demo/nats
sources:
  - name: pg
    type: postgres
    dsn: "postgres://postgres@127.0.0.1:$SRC_PORT/src?sslmode=disable"
    mode: snapshot
targets:
  - name: dst
    type: postgres
    dsn: "postgres://postgres@127.0.0.1:$DST_PORT/dst?sslmode=disable"
    from: pg
EOF
cat .demo/ferry.yaml

say "Running: ${FERRY#"$ROOT"/} migrate --config .demo/ferry.yaml"
start_ns=$(date +%s%N)
if ! "$FERRY" migrate --config .demo/ferry.yaml; then
  die "ferry migrate failed (config: .demo/ferry.yaml)"
fi
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))

# --- verification ------------------------------------------------------------
say "Comparing source and target"
# table:ordering key. md5 over all rows in key order catches any changed
# value, not only missing rows.
TABLES=(public.customers:id public.orders:id public.order_lines:order_id,line_no)
failed=0 total=0
printf '%-20s %12s %12s  %s\n' TABLE SOURCE_ROWS TARGET_ROWS CONTENT
for entry in "${TABLES[@]}"; do
  table=${entry%%:*} key=${entry#*:}
  sql="SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY $key)), '-') FROM $table t"
  IFS='|' read -r src_n src_md5 < <(q "$SRC_PORT" src -At -c "$sql")
  IFS='|' read -r dst_n dst_md5 < <(q "$DST_PORT" dst -At -c "$sql")
  if [[ "$src_n" == "$dst_n" && "$src_md5" == "$dst_md5" ]]; then
    verdict="same (md5 $src_md5)"
  else
    verdict="DIFFERENT (md5 $src_md5 vs $dst_md5)"
    failed=1
  fi
  total=$(( total + src_n ))
  printf '%-20s %12s %12s  %s\n' "$table" "$src_n" "$dst_n" "$verdict"
done

secs=$(awk -v ms="$elapsed_ms" 'BEGIN { printf "%.1f", ms / 1000 }')
rate=$(awk -v n="$total" -v ms="$elapsed_ms" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }')
if (( failed )); then
  say "FAILED: the target differs from the source (ferry took ${secs}s)"
  exit 1
fi
say "OK: $total rows in ${#TABLES[@]} tables migrated in ${secs}s (~$rate rows/s, ferry start to finish)"
