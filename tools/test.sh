#!/usr/bin/env bash
# Sets up what is missing, then builds, lints and runs every test of every
# project (unit, real-kernel integration, e2e), one project at a time. Ends
# with the line `N passed, N failed`.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
rm -rf .reports && mkdir -p .reports .nx
failed_step() { echo "$1" >>.reports/failed-steps; }

bash tools/setup.sh || failed_step "setup"
if [ ! -f .reports/failed-steps ]; then
  nx run-many -t lint --outputStyle=stream || failed_step "lint"
  nx run-many -t test --parallel=1 --outputStyle=stream || true
  # The chaos soak: a target of its own (random daemon kills under parallel lifecycles), bounded by CHAOS_SECONDS.
  nx run e2e:chaos --outputStyle=stream || true
  # And again with containers sharing shims (shim.group 4).
  nx run e2e:chaos-grouped --outputStyle=stream || true
fi
node tools/test/summary.mjs
