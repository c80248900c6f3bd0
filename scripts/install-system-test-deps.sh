#!/usr/bin/env bash
# Installs the Debian packages the browser and Postgres tests drive (chromium, chromedriver,
# postgresql) when they are missing. Needs root or sudo; without either it says what to install
# and exits 0, and those tests then skip locally (under CI=true they fail instead).
set -uo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "medgraph: browser/Postgres tests need: apt-get install ${missing[*]} (no root here; they will skip)" >&2
  exit 0
fi
echo "medgraph: installing ${missing[*]} for the browser and Postgres tests" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
  || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } \
  || echo "medgraph: could not install ${missing[*]}" >&2
exit 0
