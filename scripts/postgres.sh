#!/usr/bin/env bash
# A throwaway PostgreSQL for tests and local scale-out trials.
#
#   scripts/postgres.sh start   install (Debian package) if missing, init, start, create the
#                               database; prints the URL on the last line. Idempotent.
#   scripts/postgres.sh stop    stop it (the data stays).
#   scripts/postgres.sh url     print the URL.
#   scripts/postgres.sh reset   drop and recreate the database (removes test schemas).
#
# Settings: GRIDSYNC_PG_DIR (default /tmp/gridsync-pg), GRIDSYNC_PG_PORT (default 5433),
# GRIDSYNC_PG_DB (default gridsync_test). Listens on 127.0.0.1 only, trust authentication:
# for tests, never for production (see docs/deployment.md).
set -euo pipefail

DIR="${GRIDSYNC_PG_DIR:-/tmp/gridsync-pg}"
PORT="${GRIDSYNC_PG_PORT:-5433}"
DB="${GRIDSYNC_PG_DB:-gridsync_test}"
URL="postgres://postgres@127.0.0.1:${PORT}/${DB}"

log() { echo "postgres.sh: $*" >&2; }

bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then
        echo "$d"
    fi
}

install_if_missing() {
    if [ -n "$(bindir)" ]; then
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        log "PostgreSQL is not installed and this is not root: install the Debian package 'postgresql'"
        exit 1
    fi
    log "installing PostgreSQL (Debian package postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q postgresql >/dev/null 2>&1; then
        apt-get update -q >/dev/null
        apt-get install -y -q postgresql >/dev/null
    fi
    if [ -z "$(bindir)" ]; then
        log "the postgresql package installed no server binaries"
        exit 1
    fi
}

# Runs a command as the cluster owner: the postgres user when we are root.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() {
    local bin
    bin=$(bindir)
    [ -n "$bin" ] && [ -f "$DIR/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$DIR" status >/dev/null 2>&1
}

psql_q() {
    "$(bindir)/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
}

ensure_db() {
    if [ "$(psql_q -tAc "SELECT 1 FROM pg_database WHERE datname = '${DB}'")" != 1 ]; then
        psql_q -c "CREATE DATABASE ${DB}"
        log "created database ${DB}"
    fi
}

start() {
    install_if_missing
    local bin
    bin=$(bindir)
    if ! running; then
        if [ ! -f "$DIR/PG_VERSION" ]; then
            mkdir -p "$DIR"
            if [ "$(id -u)" = 0 ]; then
                chown postgres:postgres "$DIR"
            fi
            chmod 700 "$DIR"
            log "initialising a cluster in $DIR"
            as_owner "$bin/initdb" -D "$DIR" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
        fi
        log "starting PostgreSQL on 127.0.0.1:${PORT}"
        as_owner "$bin/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 \
            -o "-p ${PORT} -c listen_addresses=127.0.0.1 -k ${DIR} -c max_connections=500 -c shared_buffers=128MB" \
            start >/dev/null
    fi
    for _ in $(seq 1 60); do
        if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
            break
        fi
        sleep 0.5
    done
    ensure_db
    echo "$URL"
}

stop() {
    local bin
    bin=$(bindir)
    if running; then
        as_owner "$bin/pg_ctl" -D "$DIR" -w -m fast stop >/dev/null
        log "stopped"
    else
        log "not running"
    fi
}

reset() {
    start >/dev/null
    psql_q -c "DROP DATABASE IF EXISTS ${DB} WITH (FORCE)"
    ensure_db
    echo "$URL"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) echo "$URL" ;;
    reset) reset ;;
    *)
        echo "usage: $0 start|stop|url|reset" >&2
        exit 2
        ;;
esac
