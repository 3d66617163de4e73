#!/usr/bin/env bash
# make run: the sinkhole on unprivileged loopback ports with the built-in set.
set -euo pipefail
bin=${1:-bin/wormsink}
if "$bin" serve --help >/dev/null 2>&1; then
  exec "$bin" serve --dns-listen 127.0.0.1:5353 --tftp-listen 127.0.0.1:6969 \
    --upstream "${UPSTREAM:-}" --log "${LOG:--}"
fi
# Until serve lands: show the built-in set and what it exports.
"$bin" sigs check signatures/default.yaml
"$bin" sigs export --format rpz --sinkhole-ip 127.0.0.1
