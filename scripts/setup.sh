#!/usr/bin/env bash
# Install everything biovita-field needs on a fresh Debian machine, idempotently:
# the Debian packages, a venv, PyTorch from the build on this disk, and the package with extras.
# Usage: scripts/setup.sh [EXTRAS]   (default: train,export,device,server,bench,dev)
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${1:-train,export,device,server,bench,dev}"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
DEBS=(mosquitto mosquitto-clients libportaudio2 libsndfile1 flac postgresql chromium openssl)

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

missing=()
for pkg in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  step "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packaged services must not hold the ports or data the tests start their own copies on.
# Said out loud, and skipped with BIOVITA_KEEP_SERVICES=1 (README, "Set up and go").
if [ -z "${BIOVITA_KEEP_SERVICES:-}" ]; then
  for svc in mosquitto postgresql; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      step "stopping the system's $svc service (set BIOVITA_KEEP_SERVICES=1 to keep it running)"
      systemctl stop "$svc" || true
    fi
  done
fi

if [ ! -x "$VENV/bin/python" ]; then
  step "creating the virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi

stamp="$VENV/.biovita-installed-$EXTRAS"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi

if [[ ",$EXTRAS," == *",train,"* || ",$EXTRAS," == *",export,"* ]]; then
  if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
    # Pinned first so the project's torch>=2.3 range is already met. PyPI's build is the CUDA
    # one (about 3.2 GB of wheels) unless a wheel cache or local index holds it; install the CPU
    # build into the venv beforehand to avoid that (README). open_clip needs torchvision, which
    # only imports beside this exact torch build.
    step "installing PyTorch (torch==2.14.1, torchvision==0.29.1; PyPI's CUDA build is ~3.2 GB)"
    "$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
  fi
fi

step "installing biovita-field[$EXTRAS]"
"$VENV/bin/pip" install -q -e ".[$EXTRAS]"
touch "$stamp"
