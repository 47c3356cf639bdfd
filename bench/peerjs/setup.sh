#!/usr/bin/env bash
# Installs the PeerJS server (npm package "peer", pinned in package.json)
# under bench/peerjs/node_modules for khadga-bench --target peerjs. Needs node
# and npm (Debian: apt-get install nodejs npm). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
	echo "setup: npm not found; install Node.js (Debian: apt-get install nodejs npm)" >&2
	exit 1
fi
if [ -f node_modules/peer/package.json ]; then
	exit 0
fi
npm ci --no-audit --no-fund --omit=dev
