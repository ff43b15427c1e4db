# Sourced by the tools scripts: the project's Node 24 first on PATH, nx kept local and offline.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/node_modules/.bin:$PATH"
export NX_DAEMON=false NX_NO_CLOUD=true NX_TUI=false NX_SKIP_NX_CACHE=${NX_SKIP_NX_CACHE:-false}
export NX_NATIVE_FILE_CACHE_DIRECTORY="$ROOT/.nx/native" NX_SOCKET_DIR="$ROOT/.nx/sock"
