#!/usr/bin/env bash
# Installs the PM2 baseline locally into bench/node_modules (pinned in bench/package.json).
# Usage: bash bench/setup.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
if ! command -v npm >/dev/null 2>&1; then
  echo "setup.sh: npm not found; install Node.js (>= 18) first" >&2
  exit 1
fi
npm install --no-audit --no-fund --loglevel=error
# Read the version from package.json: `pm2 --version` would spawn a PM2 daemon.
ver="$(node -p "require('./node_modules/pm2/package.json').version")"
echo "pm2 $ver installed at $here/node_modules/.bin/pm2"
