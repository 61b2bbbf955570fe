#!/usr/bin/env bash
# Idempotent set-up of a Debian machine for onecard, as root: system packages, extra vpcd
# reader slots, the virtualenv at .venv with the project installed, and a running pcscd.
# Each step checks first and does nothing when its work is already done.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*"; }

# chromium: the browser tests and the demo's screenshots of the holder screen (driven by
# Playwright with the system browser: nothing is downloaded); espeak-ng: spoken prompts;
# fonts-wqy-microhei: a CJK font, without which Chinese renders as empty boxes.
SYSTEM_PACKAGES=(pcscd vsmartcard-vpcd libpcsclite-dev swig postgresql chromium espeak-ng fonts-wqy-microhei)

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# vpcd's own config gives slots 0-1 (ports 35963-35964); a second vpcd reader gives slots 2-3
# (ports 35965-35966): contact, contactless and PSAM readers at least. vpcd keeps its slot
# state in static variables indexed by the slot within a reader, so a second reader entry
# needs its own copy of the driver library (its own statics), not the same file again.
VPCD_LIB=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
VPCD_LIB_B=/usr/lib/pcsc/drivers/serial/libifdvpcd-onecard-b.so
VPCD_CONF=/etc/reader.conf.d/onecard-vpcd
VPCD_WANT="FRIENDLYNAME \"Virtual PCD B\"
DEVICENAME   /dev/null:0x8C7D
LIBPATH      $VPCD_LIB_B
CHANNELID    0x8C7D"
conf_changed=0
if ! cmp -s "$(readlink -f $VPCD_LIB)" "$VPCD_LIB_B"; then
    log "copying the vpcd driver for the second vpcd reader"
    cp "$(readlink -f $VPCD_LIB)" "$VPCD_LIB_B"
    conf_changed=1
fi
if [[ ! -f $VPCD_CONF ]] || [[ "$(cat "$VPCD_CONF")" != "$VPCD_WANT" ]]; then
    log "registering vpcd slots 2-3 in $VPCD_CONF"
    printf '%s\n' "$VPCD_WANT" >"$VPCD_CONF"
    conf_changed=1
fi

# The virtualenv, with the project installed editable so .venv/bin/onecard exists.
STAMP=.venv/.onecard-installed
if [[ ! -x .venv/bin/python ]]; then
    log "creating virtualenv .venv"
    if ! "$PY" -m venv .venv 2>/dev/null; then
        log "python venv module missing: installing python3-venv"
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        rm -rf .venv && "$PY" -m venv .venv
    fi
fi
if [[ ! -f $STAMP || pyproject.toml -nt $STAMP || ! -x .venv/bin/onecard ]]; then
    log "installing onecard and its dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e "$ROOT[test]"
    touch "$STAMP"
fi

# libonecard_sscard.so, the LD/T 33 reader library hospital systems load
# (docs/his-integration.md): built with the system compiler into build/sscard when missing
# or older than its source (make compares the times).
if ! command -v cc >/dev/null; then
    log "installing a C compiler for libonecard_sscard.so"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev make >/dev/null
fi
if ! make -s -q -C native/sscard 2>/dev/null; then
    log "building libonecard_sscard.so"
    make -s -C native/sscard >/dev/null
fi

# pcscd: start it when it is not running; restart it when its reader config changed.
if pgrep -x pcscd >/dev/null && ((conf_changed)); then
    log "restarting pcscd for the new reader slots"
    pkill -x pcscd || true
    for _ in $(seq 100); do pgrep -x pcscd >/dev/null || break; sleep 0.1; done
fi
if ! pgrep -x pcscd >/dev/null; then
    log "starting pcscd"
    pcscd
fi
for _ in $(seq 100); do
    [[ -S /run/pcscd/pcscd.comm ]] && break
    sleep 0.1
done
[[ -S /run/pcscd/pcscd.comm ]] || { log "pcscd did not come up"; exit 1; }
# PostgreSQL for the back office's second storage: a local cluster, the database
# onecard_test, and a superuser role for root reached by peer authentication over the unix
# socket - so no password exists anywhere.
if [[ ${ONECARD_SKIP_POSTGRES:-0} != 1 ]]; then
    if ! pg_lsclusters -h 2>/dev/null | grep -q online; then
        cluster=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1" "$2}')
        if [[ -z $cluster ]]; then
            version=$(ls /usr/lib/postgresql | sort -V | tail -1)
            log "creating PostgreSQL $version cluster"
            pg_createcluster "$version" main >/dev/null
            cluster="$version main"
        fi
        log "starting PostgreSQL ($cluster)"
        # shellcheck disable=SC2086
        pg_ctlcluster $cluster start
    fi
    if ! su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='root'\"" | grep -q 1; then
        su postgres -c "createuser --superuser root"
    fi
    if ! psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='onecard_test'" | grep -q 1; then
        createdb onecard_test
    fi
fi

log "ready: $(.venv/bin/onecard readers 2>&1 | tr '\n' ';')"
