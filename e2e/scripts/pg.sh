#!/usr/bin/env bash
# pg.sh — a private, throw-away PostgreSQL server for humans and the demo.
# The shell twin of e2e/pgtest (same settings), so what the demo does is what
# the tests do.
#
#   pg.sh start DIR PORT [logical] [key=value ...]   init DIR if new, start on 127.0.0.1:PORT
#   pg.sh stop DIR                                   stop it (no-op if not running)
#   pg.sh status DIR                                 exit 0 if running
#   pg.sh port                                       print a port nothing listens on
#
# DIR holds data/ (the cluster), postgres.log and the unix socket. Connect with
#   psql -h 127.0.0.1 -p PORT -U postgres       (trust auth, no password)
# The server runs with fsync/full_page_writes/synchronous_commit off: fast,
# and unsafe for anything but test data. stop leaves DIR in place; remove it
# yourself when done.
#
# initdb refuses root, so as root every server command runs as user postgres
# (created by Debian's postgresql package) via runuser.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

bindir() {
  if [[ -n "${PG_BINDIR:-}" ]]; then echo "$PG_BINDIR"; return; fi
  if [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then echo /usr/lib/postgresql/15/bin; return; fi
  local d
  if d=$(pg_config --bindir 2>/dev/null) && [[ -x "$d/initdb" ]]; then echo "$d"; return; fi
  die "PostgreSQL server binaries not found; install them with: apt-get update && apt-get install -y postgresql"
}

# as_pg CMD...: run as user postgres when root, from / so that a cwd postgres
# cannot read causes no warnings. LC_ALL=C keeps server messages in English.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "user postgres missing (apt-get install -y postgresql creates it)"
    (cd / && LC_ALL=C runuser -u postgres -- "$@")
  else
    (cd / && LC_ALL=C "$@")
  fi
}

# sq WORD: single-quote for /bin/sh (pg_ctl -o is run through the shell).
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

absdir() { mkdir -p "$1" && (cd "$1" && pwd -P); }

running() { [[ -f "$1/data/postmaster.pid" ]] && as_pg "$(bindir)/pg_ctl" status -D "$1/data" >/dev/null 2>&1; }

cmd_start() {
  [[ $# -ge 2 ]] || die "usage: pg.sh start DIR PORT [logical] [key=value ...]"
  local dir port bin
  dir=$(absdir "$1"); port=$2; shift 2
  [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
  bin=$(bindir)
  local settings=(
    listen_addresses=127.0.0.1
    fsync=off synchronous_commit=off full_page_writes=off # disposable data only
    shared_buffers=128MB
  )
  if [[ "${1:-}" == logical ]]; then
    # pgoutput logical replication (ferry's CDC) needs wal_level=logical.
    settings+=(wal_level=logical max_replication_slots=10 max_wal_senders=10)
    shift
  fi
  settings+=("$@")

  if running "$dir"; then
    echo "pg.sh: $dir is already running"
    return 0
  fi
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres:postgres "$dir"
    as_pg test -w "$dir" ||
      die "user postgres cannot write $dir (is a parent directory private, like /root?); use a dir under /tmp"
  fi
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    # --no-sync: throw-away cluster, skip initdb's fsync pass.
    as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C --no-sync --no-instructions >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  # The unix socket path must fit in 107 bytes; past that, serve TCP only.
  local sockdir=$dir
  if (( ${#dir} + 20 > 107 )); then sockdir=""; fi
  local opts
  opts="-p $(sq "$port") -k $(sq "$sockdir")"
  local s
  for s in "${settings[@]}"; do opts+=" -c $(sq "$s")"; done
  if ! as_pg "$bin/pg_ctl" start -w -t 60 -D "$dir/data" -l "$dir/postgres.log" -o "$opts" >/dev/null; then
    echo "--- last lines of $dir/postgres.log ---" >&2
    tail -n 30 "$dir/postgres.log" >&2 || true
    die "could not start PostgreSQL in $dir on port $port"
  fi
  echo "pg.sh: PostgreSQL running in $dir on 127.0.0.1:$port"
}

cmd_stop() {
  [[ $# -eq 1 ]] || die "usage: pg.sh stop DIR"
  local dir=$1
  if [[ ! -f "$dir/data/postmaster.pid" ]]; then
    echo "pg.sh: $dir is not running"
    return 0
  fi
  local bin; bin=$(bindir)
  # fast: disconnect sessions and shut down cleanly; immediate if that hangs.
  as_pg "$bin/pg_ctl" stop -w -t 60 -m fast -D "$dir/data" >/dev/null 2>&1 ||
    as_pg "$bin/pg_ctl" stop -w -m immediate -D "$dir/data" >/dev/null 2>&1 || true
  if running "$dir"; then die "could not stop PostgreSQL in $dir"; fi
  echo "pg.sh: stopped $dir"
}

# A port nobody listens on now (another process may still take it before
# the server binds; callers retry with a new one).
cmd_port() {
  local p i
  for i in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free port found"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; [[ $# -eq 1 ]] || die "usage: pg.sh status DIR"; running "$1" ;;
  port) cmd_port ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
