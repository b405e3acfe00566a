#!/usr/bin/env bash
# Start a throw-away PostgreSQL cluster on loopback and print its URL.
# Usage: .ci/pg.sh start DIR PORT | .ci/pg.sh stop DIR
set -euo pipefail
cmd=$1 dir=$2
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "PostgreSQL is not installed (apt-get install -y postgresql)" >&2
  exit 1
fi
case "$cmd" in
  start)
    port=$3
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    if [ ! -d "$dir/data" ]; then
      runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log"
    fi
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on" start >/dev/null
    runuser -u postgres -- "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc \
      "SELECT 1 FROM pg_database WHERE datname='tokensmith_test'" -tA | grep -q 1 \
      || runuser -u postgres -- "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres tokensmith_test
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/tokensmith_test"
    ;;
  stop)
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null
    ;;
esac
