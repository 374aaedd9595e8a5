#!/usr/bin/env bash
# Quick start: build pgagroal and run it in the foreground in front of
# PostgreSQL. With PGPORT (and optionally PGHOST) set, it pools that server;
# otherwise it starts a throwaway PostgreSQL in a temporary directory and
# removes it on exit. Ctrl-C stops everything.
#
#   POOL_PORT   port pgagroal listens on (default 2345)
#   PGHOST      server host when PGPORT is given (default 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/postgres.sh

cargo build --release --bins
POOL_PORT=${POOL_PORT:-2345}
WORK=$(mktemp -d /tmp/pgagroal-quickstart.XXXXXX)
chmod 755 "$WORK"
PG_STARTED=""

cleanup() {
    if [ -n "$PG_STARTED" ]; then
        pg_as_user "$PG_BINDIR/pg_ctl" -D "$WORK/pgdata" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${PGPORT:-}" ]; then
    SERVER_HOST=127.0.0.1
    SERVER_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$WORK/pgdata" "$WORK/pgsock"
    [ -n "$PG_RUN_USER" ] && chown "$PG_RUN_USER" "$WORK/pgdata" "$WORK/pgsock"
    pg_as_user "$PG_BINDIR/initdb" -D "$WORK/pgdata" -A trust -U postgres --no-sync >/dev/null
    pg_as_user "$PG_BINDIR/pg_ctl" -D "$WORK/pgdata" -l "$WORK/pgdata/postgres.log" -w \
        -o "-p $SERVER_PORT -c listen_addresses=127.0.0.1 -k $WORK/pgsock" start >/dev/null
    PG_STARTED=yes
    echo "Started a throwaway PostgreSQL on 127.0.0.1:$SERVER_PORT (data in $WORK/pgdata)"
else
    SERVER_HOST=${PGHOST:-127.0.0.1}
    SERVER_PORT=$PGPORT
    echo "Pooling the PostgreSQL server at $SERVER_HOST:$SERVER_PORT"
fi

cat > "$WORK/pgagroal.conf" <<CONF
[pgagroal]
host = 127.0.0.1
port = $POOL_PORT
unix_socket_dir = $WORK
max_connections = 16
log_type = console
log_level = info

[primary]
host = $SERVER_HOST
port = $SERVER_PORT
CONF
echo "host all all all trust" > "$WORK/pgagroal_hba.conf"

cat <<MSG

pgagroal listens on 127.0.0.1:$POOL_PORT and on $WORK/.s.PGSQL.$POOL_PORT. Connect with:

    psql -h 127.0.0.1 -p $POOL_PORT -U postgres postgres

Management:

    target/release/pgagroal-cli -c $WORK/pgagroal.conf status

Ctrl-C stops pgagroal$( [ -n "$PG_STARTED" ] && echo " and the throwaway PostgreSQL" ).

MSG
# pgagroal refuses to run as root: as root, run a copy of the binary (the
# checkout may be in a home directory other accounts cannot enter) as the
# same unprivileged account as PostgreSQL.
if [ -n "$PG_RUN_USER" ]; then
    mkdir -p "$WORK/bin"
    cp target/release/pgagroal "$WORK/bin/pgagroal"
    chmod 755 "$WORK/bin" "$WORK/bin/pgagroal"
    chown "$PG_RUN_USER" "$WORK"
    pg_as_user env HOME="$WORK" "$WORK/bin/pgagroal" -c "$WORK/pgagroal.conf" -a "$WORK/pgagroal_hba.conf" &
else
    target/release/pgagroal -c "$WORK/pgagroal.conf" -a "$WORK/pgagroal_hba.conf" &
fi
POOLER=$!
# Ctrl-C reaches pgagroal itself; a TERM or HUP sent to this script alone is
# passed on, so that the clean-up (and the throwaway PostgreSQL's stop) runs.
stop_pooler() {
    kill -TERM "$(cat "$WORK/pgagroal.$POOL_PORT.pid" 2>/dev/null)" 2>/dev/null || kill -TERM "$POOLER" 2>/dev/null || true
}
trap stop_pooler TERM HUP INT
wait "$POOLER" || true
# A trapped signal ends the first wait early: wait for pgagroal to finish.
wait "$POOLER" 2>/dev/null || true
