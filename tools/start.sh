#!/usr/bin/env bash
# Sets up what is missing, then runs the engine in the foreground with its
# embedded defaults (root /var/lib/ctr, state /run/ctr, an embedded NATS).
# Flags pass through to ctrd: --root, --state, --instance, --events-url, --config.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/tools/setup.sh"
exec "$ROOT/tools/bin/ctrd" "$@"
