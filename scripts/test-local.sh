#!/usr/bin/env bash
# Run the test suite for some backends against local services, without Docker.
#
#   scripts/test-local.sh BACKEND... [-p] [-w N] [-k]
#
#   BACKEND   memory, pickle, redis, mongo, sql or all
#   -p        run in parallel with pytest-xdist (-n auto, or -w N workers)
#   -w N      number of xdist workers (implies -p)
#   -k        keep services this script started running afterwards
#
# Before running, each needed service is checked; one that does not answer but is
# installed locally (redis-server, PostgreSQL's initdb/pg_ctl, mariadbd) is started as a
# throwaway instance on a free port in a temporary directory, and the tests are pointed
# at it through the CACHIER_LIKE_TEST_*_URL variables. MongoDB tests use mongomock
# unless CACHIER_LIKE_TEST_MONGO_URI names a server. Prints a per-backend summary.
set -uo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

backends=()
parallel=0
workers=auto
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -p) parallel=1 ;;
    -w) shift; [ $# -gt 0 ] || { echo "test-local: -w needs a number" >&2; exit 2; }
        workers="$1"; parallel=1 ;;
    -k) keep=1 ;;
    memory|pickle|redis|mongo|sql) backends+=("$1") ;;
    all) backends+=(memory pickle redis mongo sql) ;;
    *) echo "test-local: unknown backend or option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#backends[@]} -gt 0 ] || { usage >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cachier-like-services.XXXXXX")"
started=()   # "kind:pid-or-datadir" of what this script started

free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_until() {  # wait_until SECONDS COMMAND...: poll a readiness check
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

url_port() {  # the port of a URL like scheme://user@host:PORT/db
  "$PYTHON" -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).port or "")' "$1"
}

stop_started() {
  if [ $keep -eq 1 ] && [ ${#started[@]} -gt 0 ]; then
    echo "test-local: keeping ${started[*]} (temporary files in $WORK)"
    return
  fi
  for item in "${started[@]}"; do
    case "$item" in
      redis:*) kill "${item#redis:}" 2>/dev/null ;;
      postgres:*) "$PG_BIN/pg_ctl" -D "${item#postgres:}" -m fast stop >/dev/null 2>&1 ;;
      mariadb:*) kill "${item#mariadb:}" 2>/dev/null ;;
    esac
  done
  rm -rf "$WORK"
}
trap stop_started EXIT

redis_ok() { "$PYTHON" -c 'import redis, sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()' "$1"; }

ensure_redis() {
  local url="${CACHIER_LIKE_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
  redis_ok "$url" 2>/dev/null && { echo "test-local: redis answers at $url"; return 0; }
  command -v redis-server >/dev/null || { echo "test-local: redis is down at $url and redis-server is not installed" >&2; return 1; }
  local port; port="$(free_port)"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    --daemonize no >"$WORK/redis.log" 2>&1 &
  started+=("redis:$!")
  export CACHIER_LIKE_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
  wait_until 15 redis_ok "$CACHIER_LIKE_TEST_REDIS_URL" || { echo "test-local: redis did not start" >&2; return 1; }
  echo "test-local: started a throwaway redis at $CACHIER_LIKE_TEST_REDIS_URL"
}

PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
postgres_ok() { "$PYTHON" -c 'import sqlalchemy as s, sys; s.create_engine(sys.argv[1], connect_args={"connect_timeout": 2}).connect().close()' "$1"; }

ensure_postgres() {
  local url="${CACHIER_LIKE_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
  postgres_ok "$url" 2>/dev/null && { echo "test-local: postgres answers at $url"; return 0; }
  [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || { echo "test-local: postgres is down at $url and initdb is not installed" >&2; return 1; }
  local port data="$WORK/pgdata" as=()
  port="$(free_port)"
  # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
  [ "$(id -u)" -eq 0 ] && { as=(runuser -u postgres --); chown postgres "$WORK"; chmod 755 "$WORK"; }
  "${as[@]}" "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust >"$WORK/initdb.log" 2>&1 \
    || { echo "test-local: initdb failed (see $WORK/initdb.log)" >&2; return 1; }
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$data" -l "$WORK/postgres.log" -w \
    -o "-p $port -k $WORK -h 127.0.0.1" start >/dev/null \
    || { echo "test-local: postgres did not start (see $WORK/postgres.log)" >&2; return 1; }
  started+=("postgres:$data")
  "${as[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres test
  export CACHIER_LIKE_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/test"
  echo "test-local: started a throwaway postgres at $CACHIER_LIKE_TEST_POSTGRES_URL"
}

mariadb_ok() { "$PYTHON" -c 'import sqlalchemy as s, sys; s.create_engine(sys.argv[1], connect_args={"connect_timeout": 2}).connect().close()' "$1"; }

ensure_mariadb() {
  local url="${CACHIER_LIKE_TEST_MYSQL_URL:-mysql+pymysql://root@127.0.0.1:3306/test}"
  mariadb_ok "$url" 2>/dev/null && { echo "test-local: mariadb answers at $url"; return 0; }
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || { echo "test-local: mariadb is down at $url and mariadbd is not installed" >&2; return 1; }
  local port data="$WORK/mariadb" user=()
  port="$(free_port)"
  [ "$(id -u)" -eq 0 ] && user=(--user=root)
  mariadb-install-db --no-defaults --datadir="$data" --auth-root-authentication-method=normal \
    "${user[@]}" >"$WORK/mariadb-install.log" 2>&1 \
    || { echo "test-local: mariadb-install-db failed (see $WORK/mariadb-install.log)" >&2; return 1; }
  /usr/sbin/mariadbd --no-defaults --datadir="$data" --port="$port" --bind-address=127.0.0.1 \
    --socket="$WORK/mariadb.sock" --skip-networking=0 "${user[@]}" >"$WORK/mariadb.log" 2>&1 &
  started+=("mariadb:$!")
  local root_url="mysql+pymysql://root@127.0.0.1:$port/mysql"
  wait_until 30 mariadb_ok "$root_url" || { echo "test-local: mariadb did not start (see $WORK/mariadb.log)" >&2; return 1; }
  "$PYTHON" -c 'import sqlalchemy as s, sys; e = s.create_engine(sys.argv[1]); c = e.connect(); c.exec_driver_sql("CREATE DATABASE IF NOT EXISTS test"); c.close()' "$root_url"
  export CACHIER_LIKE_TEST_MYSQL_URL="mysql+pymysql://root@127.0.0.1:$port/test"
  echo "test-local: started a throwaway mariadb at $CACHIER_LIKE_TEST_MYSQL_URL"
}

ensure_mongo() {
  if [ -n "${CACHIER_LIKE_TEST_MONGO_URI:-}" ]; then
    "$PYTHON" -c 'import pymongo, sys; pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=2000).admin.command("ping")' "$CACHIER_LIKE_TEST_MONGO_URI" \
      || { echo "test-local: no MongoDB answers at $CACHIER_LIKE_TEST_MONGO_URI" >&2; return 1; }
    echo "test-local: mongo tests run against $CACHIER_LIKE_TEST_MONGO_URI"
  else
    echo "test-local: mongo tests run on mongomock (set CACHIER_LIKE_TEST_MONGO_URI for a server)"
  fi
}

declare -A summary
order=()
status=0
for backend in "${backends[@]}"; do
  [ -n "${summary[$backend]:-}" ] && continue
  order+=("$backend")
  ready=0
  case "$backend" in
    redis) ensure_redis || ready=1 ;;
    sql) { ensure_postgres && ensure_mariadb; } || ready=1 ;;
    mongo) ensure_mongo || ready=1 ;;
  esac
  if [ $ready -ne 0 ]; then
    summary[$backend]="service unavailable"; status=1; continue
  fi
  args=(-m "$backend" -p no:cacheprovider)
  [ $parallel -eq 1 ] && args+=(-n "$workers")
  echo "test-local: == $backend: pytest ${args[*]}"
  log="$WORK/pytest-$backend.log"
  (cd "$ROOT" && "$PYTHON" -m pytest "${args[@]}") 2>&1 | tee "$log"
  code=${PIPESTATUS[0]}
  line="$(grep -E '[0-9]+ (passed|failed|errors?|deselected)' "$log" | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')"
  summary[$backend]="${line:-pytest exited $code}"
  # pytest's 5 means "no tests selected": reported in the summary, not a failure.
  [ "$code" -eq 0 ] || [ "$code" -eq 5 ] || status=1
done

echo
echo "test-local: summary"
for backend in "${order[@]}"; do
  printf '  %-7s %s\n' "$backend" "${summary[$backend]}"
done
exit $status
