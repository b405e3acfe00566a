#!/usr/bin/env bash
# The reference high-availability PostgreSQL for tokensmith (README "High availability"):
# a pg_auto_failover monitor, a primary and a synchronous standby, all on loopback.
#
#   deploy/ha/cluster.sh start DIR [sync|async]   create and run the cluster; prints the URL
#   deploy/ha/cluster.sh url DIR                  the multi-host URL tokensmith connects with
#   deploy/ha/cluster.sh status DIR               the monitor's view of the nodes
#   deploy/ha/cluster.sh primary DIR              the port of the node that is primary now
#   deploy/ha/cluster.sh wait-primary DIR SECONDS wait until a primary accepts writes
#   deploy/ha/cluster.sh kill-primary DIR         SIGKILL the primary node (keeper + postgres)
#   deploy/ha/cluster.sh stop DIR                 stop everything and delete DIR
#
# Ports: HA_PORT_BASE (default 26000, below Linux's ephemeral range) for the monitor, +1 and
# +2 for the two data nodes.
# PostgreSQL refuses to run as root: as root, everything runs as the postgres user.
#
# Manager timeouts (the monitor's pgautofailover.* settings; pg_auto_failover's defaults in
# brackets): health check every 1 s [5 s] with a 5 s connect timeout [5 s], 2 retries [2]
# 1 s apart [2 s]; a node is unhealthy after 5 s [20 s]; a primary that stops reporting is
# demoted after 5 s [30 s]. A killed node refuses connections at once, so with these a
# killed primary is replaced in about 10 s; with the defaults it takes about 50 s. Shorter
# connect timeouts made a busy standby look unhealthy too, and the failover stalled.
set -euo pipefail

cmd=${1:?usage: cluster.sh start|url|status|primary|wait-primary|kill-primary|stop DIR}
dir=${2:?the cluster directory}
base=${HA_PORT_BASE:-26000}
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
export PATH="$pgbin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
# pg_autoctl keeps its config and state under XDG directories: this cluster's own.
export XDG_CONFIG_HOME="$dir/xdg/config" XDG_DATA_HOME="$dir/xdg/data" XDG_RUNTIME_DIR="$dir/xdg/run"
monitor_url="postgres://autoctl_node@127.0.0.1:$base/pg_auto_failover?sslmode=disable"

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- env PATH="$PATH" XDG_CONFIG_HOME="$XDG_CONFIG_HOME" \
      XDG_DATA_HOME="$XDG_DATA_HOME" XDG_RUNTIME_DIR="$XDG_RUNTIME_DIR" "$@"
  else
    "$@"
  fi
}

monitor_sql() {
  as_pg psql -X -qAt -h 127.0.0.1 -p "$base" -U autoctl_node -d pg_auto_failover -c "$1"
}

# Run one pg_autoctl service in the background, in its own process group (kill-primary
# kills the group), logging to DIR/NAME.log.
run_node() {
  local name=$1
  shift
  # The session leader writes its pid (= the group id) before it becomes pg_autoctl.
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$dir/$name.pid" \
    "$0" as-pg "$dir" pg_autoctl "$@" --run >"$dir/$name.log" 2>&1 &
  wait_for 5 "$name starting" test -s "$dir/$name.pid"
}

wait_for() {
  local seconds=$1 what=$2
  shift 2
  local end=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      echo "cluster.sh: $what did not happen within ${seconds}s (logs in $dir)" >&2
      exit 1
    fi
    sleep 0.5
  done
}

# The manager timeouts of the header, on the monitor (retried: it restarts once at first).
tune_monitor() {
  as_pg psql -X -qAt -h 127.0.0.1 -p "$base" -U postgres -d pg_auto_failover \
    -c "alter system set pgautofailover.health_check_period = 1000" \
    -c "alter system set pgautofailover.health_check_timeout = 5000" \
    -c "alter system set pgautofailover.health_check_max_retries = 2" \
    -c "alter system set pgautofailover.health_check_retry_delay = 1000" \
    -c "alter system set pgautofailover.node_considered_unhealthy_timeout = 5000" \
    -c "alter system set pgautofailover.primary_demote_timeout = 5000" \
    -c "select pg_reload_conf()"
}

nodes_in_state() {
  [ "$(monitor_sql "select count(*) from pgautofailover.node where reportedstate = '$1' and goalstate = '$1'")" = "$2" ]
}

# pg_basebackup asks for a spread checkpoint (minutes on an idle server): an immediate one
# requested meanwhile ends it at once.
standby_ready() {
  as_pg psql -X -qAt -h 127.0.0.1 -p "$((base + 1))" -U postgres -d tokensmith -c checkpoint >/dev/null 2>&1 || true
  nodes_in_state secondary 1
}

primary_port() {
  monitor_sql "select nodeport from pgautofailover.node where reportedstate in ('primary', 'wait_primary', 'single') and goalstate in ('primary', 'wait_primary', 'single') limit 1"
}

url() {
  echo "postgresql+psycopg://postgres@/tokensmith?host=127.0.0.1:$((base + 1))&host=127.0.0.1:$((base + 2))&target_session_attrs=read-write"
}

writable() {
  as_pg psql -X -qAt "host=127.0.0.1,127.0.0.1 port=$((base + 1)),$((base + 2)) user=postgres dbname=tokensmith target_session_attrs=read-write connect_timeout=2" -c "select 1"
}

start() {
  local mode=${1:-sync}
  mkdir -p "$dir/xdg/config" "$dir/xdg/data" "$dir/xdg/run"
  chmod 700 "$dir/xdg/run"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
  local common=(--hostname 127.0.0.1 --auth trust --no-ssl)
  run_node monitor create monitor --pgdata "$dir/monitor" --pgport "$base" "${common[@]}"
  wait_for 60 "the monitor start" monitor_sql "select 1"
  wait_for 30 "the monitor's settings" tune_monitor
  local quorum=true
  [ "$mode" = async ] && quorum=false
  for n in 1 2; do
    run_node "node$n" create postgres --pgdata "$dir/node$n" --pgport "$((base + n))" \
      --name "node$n" --dbname tokensmith --monitor "$monitor_url" --replication-quorum "$quorum" \
      "${common[@]}"
    # One at a time: the first becomes the primary, the second its standby.
    if [ "$n" = 1 ]; then wait_for 90 "node1 becoming primary" nodes_in_state single 1; fi
  done
  wait_for 120 "the standby catching up" standby_ready
  wait_for 30 "a writable primary" writable
  url
}

kill_primary() {
  local port node
  port=$(primary_port)
  node="node$((port - base))"
  # The keeper would restart its postgres: the whole node goes, as when its machine dies.
  kill -KILL -- "-$(cat "$dir/$node.pid")" 2>/dev/null || true
  # Its backends and WAL sender too, in one go: orphaned, they would go on serving (and
  # acknowledging commits) for a while, which a dead machine does not.
  local postmaster
  postmaster=$(head -1 "$dir/$node/postmaster.pid" 2>/dev/null || true)
  if [ -n "$postmaster" ]; then
    # shellcheck disable=SC2046 # one pid a word
    kill -KILL "$postmaster" $(ps -o pid= --ppid "$postmaster") 2>/dev/null || true
  fi
  echo "$node"
}

stop() {
  [ -d "$dir" ] || return 0
  for name in node1 node2 monitor; do
    if [ -f "$dir/$name.pid" ]; then
      kill -TERM -- "-$(cat "$dir/$name.pid")" 2>/dev/null || true
    fi
  done
  sleep 1
  for name in node1 node2 monitor; do
    [ -f "$dir/$name.pid" ] && kill -KILL -- "-$(cat "$dir/$name.pid")" 2>/dev/null || true
    local postmaster
    postmaster=$(head -1 "$dir/$name/postmaster.pid" 2>/dev/null || true)
    [ -n "$postmaster" ] && kill -KILL "$postmaster" 2>/dev/null || true
  done
  rm -rf "$dir"
}

case "$cmd" in
  as-pg) shift 2; as_pg "$@" ;;
  start) start "${3:-sync}" ;;
  url) url ;;
  status) monitor_sql "select nodename, nodeport, reportedstate, goalstate from pgautofailover.node order by nodeid" ;;
  primary) primary_port ;;
  wait-primary) wait_for "${3:-60}" "a writable primary" writable ;;
  kill-primary) kill_primary ;;
  stop) stop ;;
  *) echo "cluster.sh: unknown command $cmd" >&2; exit 2 ;;
esac
