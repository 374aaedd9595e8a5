# Sourced by the scripts in .ci: finds PostgreSQL's server binaries,
# installing them with apt-get only when initdb is nowhere to be found, and
# defines pg_as_user to run a command as an unprivileged user when root
# (PostgreSQL refuses to run as root).

find_pg_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
    return 1
}

if ! PG_BINDIR=$(find_pg_bindir); then
    echo "PostgreSQL server binaries not found: installing with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql-15 >/dev/null 2>&1 || apt-get install -y -qq postgresql >/dev/null
    PG_BINDIR=$(find_pg_bindir)
fi
export PG_BINDIR

PG_RUN_USER=""
if [ "$(id -u)" = 0 ]; then
    if id postgres >/dev/null 2>&1; then PG_RUN_USER=postgres; else PG_RUN_USER=nobody; fi
fi

pg_as_user() {
    if [ -n "$PG_RUN_USER" ]; then
        runuser -u "$PG_RUN_USER" -- "$@"
    else
        "$@"
    fi
}
