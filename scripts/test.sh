#!/usr/bin/env bash
# The full test suite: makes sure PostgreSQL and Redis run (starting or
# installing them), the sandbox's programs and the headless browser of the
# dashboard's tests are installed, then runs every test of the workspace
# against them.
# Tests fail instead of skipping when a service is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh postgres redis
bash scripts/sandbox-deps.sh
bash scripts/browser-deps.sh
export PROJECTENGINE_REQUIRE_SERVICES=1
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
cargo test --workspace --all-features --locked "$@"
