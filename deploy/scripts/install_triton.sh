#!/usr/bin/env bash
# Install tritonserver (CPU, python backend only) under .liftstream/tritonserver/; nothing is started.
#
#   bash deploy/scripts/install_triton.sh            # idempotent, ~0.1 s once installed
#   FORCE=1 bash deploy/scripts/install_triton.sh    # re-extract from the cached wheel
#
# Where it comes from: PyPI's `tritonserver` is a placeholder; the nvidia-pytriton wheel bundles a
# real tritonserver 2.51.0 with the python backend. We only *download* the wheel (its Python package
# pins numpy<2, the project needs numpy>=2) and unzip the parts the server needs:
#
#   .liftstream/cache/nvidia_pytriton-0.7.0-*.whl          the downloaded wheel (kept: re-extract offline)
#   .liftstream/tritonserver/pytriton/tritonserver/bin/tritonserver
#   .liftstream/tritonserver/pytriton/tritonserver/backends/python/   = BK/python: libtriton_python.so,
#       triton_python_backend_utils.py and the Python 3.11 triton_python_backend_stub copied beside them
#   .liftstream/tritonserver/nvidia_pytriton.libs/          the bundled shared libraries
#
# The wheel's own relative layout is kept on purpose: the binaries' RPATHs ($ORIGIN/../../../..)
# point at nvidia_pytriton.libs from exactly these places. inference/triton_server.py starts the
# server with --backend-directory=.liftstream/tritonserver/pytriton/tritonserver/backends and the
# LD_LIBRARY_PATH the stub needs (the interpreter's LIBDIR for libpython3.11.so.1.0).
# Environment: VENV (default .venv) is the virtualenv whose pip downloads the wheel and whose
# interpreter (3.11) the stub must match.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
PYTRITON_VERSION="0.7.0"
CACHE="$ROOT/.liftstream/cache"
DEST="$ROOT/.liftstream/tritonserver"
STAMP="$DEST/.installed"
PY_MINOR="3.11"

say() { printf 'install_triton: %s\n' "$*"; }

[ -x "$VENV/bin/python" ] || { say "no virtualenv at $VENV (run make install first)" >&2; exit 1; }
have_minor="$("$VENV/bin/python" -c 'import sys;print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
[ "$have_minor" = "$PY_MINOR" ] || { say "the stub installed here is for Python $PY_MINOR, $VENV has $have_minor" >&2; exit 1; }

want="nvidia-pytriton==$PYTRITON_VERSION python-stub=$PY_MINOR"
if [ -z "${FORCE:-}" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
  && [ -x "$DEST/pytriton/tritonserver/bin/tritonserver" ] \
  && [ -x "$DEST/pytriton/tritonserver/backends/python/triton_python_backend_stub" ]; then
  say "tritonserver already installed ($DEST, $want)"
  exit 0
fi

mkdir -p "$CACHE"
WHEEL="$(ls "$CACHE"/nvidia_pytriton-"$PYTRITON_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$WHEEL" ]; then
  say "downloading nvidia-pytriton==$PYTRITON_VERSION (wheel only, no dependencies) into $CACHE"
  "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: \
    --platform manylinux_2_35_x86_64 --python-version "$PY_MINOR" \
    "nvidia-pytriton==$PYTRITON_VERSION" -d "$CACHE"
  WHEEL="$(ls "$CACHE"/nvidia_pytriton-"$PYTRITON_VERSION"-*.whl | head -n1)"
fi
say "extracting tritonserver from $(basename "$WHEEL")"

# extract into a temp dir beside DEST, then swap it in: a half-written install is never used
TMP="$(mktemp -d "$ROOT/.liftstream/tritonserver.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
"$VENV/bin/python" - "$WHEEL" "$TMP" "$PY_MINOR" <<'PYEOF'
import os, stat, sys, zipfile

wheel, dest, minor = sys.argv[1], sys.argv[2], sys.argv[3]
keep = (
    "pytriton/tritonserver/bin/tritonserver",
    "pytriton/tritonserver/backends/python/",
    f"pytriton/tritonserver/python_backend_stubs/{minor}/",
    "nvidia_pytriton.libs/",
)
skip = ("nvidia_pytriton.libs/libpython3-",)  # the embedded libpython of the 3.13 stub: not used
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if info.is_dir() or not name.startswith(keep) or name.startswith(skip):
            continue
        z.extract(info, dest)
        path = os.path.join(dest, name)
        if name.endswith((".so", "tritonserver", "_stub")) or ".so." in name:
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        n += 1
print(f"install_triton: extracted {n} files", flush=True)
PYEOF
# BK/python = the python backend plus the stub for this interpreter (tritonserver looks for the
# stub next to libtriton_python.so)
cp "$TMP/pytriton/tritonserver/python_backend_stubs/$PY_MINOR/triton_python_backend_stub" \
  "$TMP/pytriton/tritonserver/backends/python/"
rm -rf "$TMP/pytriton/tritonserver/python_backend_stubs"
# every shared library of the server and the python backend resolves (their RPATHs point into
# nvidia_pytriton.libs; the stub's libpython comes from LD_LIBRARY_PATH at run time, see above)
for bin in "$TMP/pytriton/tritonserver/bin/tritonserver" "$TMP/pytriton/tritonserver/backends/python/libtriton_python.so"; do
  if ldd "$bin" | grep -q "not found"; then
    say "unresolved shared libraries of $bin:" >&2
    ldd "$bin" | grep "not found" >&2
    exit 1
  fi
done
echo "$want" >"$TMP/.installed"
rm -rf "$DEST"
mv "$TMP" "$DEST"
trap - EXIT
say "installed tritonserver into $DEST ($(du -sh "$DEST" | cut -f1))"
