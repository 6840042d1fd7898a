#!/usr/bin/env bash
# Install the pinned generator of the chart README's parameter tables,
# @bitnami/readme-generator-for-helm, into .tools/node/ with `npm ci` from
# scripts/chart_docs/package-lock.json (exact versions and integrity hashes of
# the package and its dependencies). Idempotent: a no-op when that lock file
# is already installed.
#
# Usage: bash scripts/install_chart_docs_tool.sh [--optional]
#   --optional: when node or npm is missing, say so and exit 0 (`make tools`
#               on a machine without Node.js; the README staleness test then
#               skips, or fails under CI=true).
# Env:    TOOLS_DIR (default <repo>/.tools).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$REPO_ROOT/.tools}"
NODE_DIR="$TOOLS_DIR/node"
LOCK_DIR="$REPO_ROOT/scripts/chart_docs"
GENERATOR="$NODE_DIR/node_modules/.bin/readme-generator"

log() { echo "install_chart_docs_tool: $*" >&2; }

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "$tool not found: install Node.js 18+ and npm (Debian: apt-get install nodejs npm)"
        [[ "${1:-}" == "--optional" ]] && exit 0
        exit 1
    fi
done

if [[ -x "$GENERATOR" ]] && cmp -s "$LOCK_DIR/package-lock.json" "$NODE_DIR/package-lock.json"; then
    log "readme-generator-for-helm in $NODE_DIR is up to date"
    exit 0
fi

# npm ci refuses a --prefix reached through a symbolic link ("Missing: node@
# from lock file"), e.g. a .tools linked to another checkout's.
mkdir -p "$NODE_DIR"
NODE_DIR="$(cd "$NODE_DIR" && pwd -P)"
cp "$LOCK_DIR/package.json" "$LOCK_DIR/package-lock.json" "$NODE_DIR/"
npm ci --prefix "$NODE_DIR" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
log "installed readme-generator-for-helm $("$GENERATOR" --version | sed "s/^Version: //") into $NODE_DIR"
