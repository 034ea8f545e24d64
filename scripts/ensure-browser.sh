#!/usr/bin/env bash
# Make sure headless Chromium is available for the dashboard's e2e tests (tests/e2e).
# Debian's package, never `playwright install` (that downloads browsers from the internet).
# Idempotent: silent when /usr/bin/chromium is already there.
set -eu

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

echo "ensure-browser: installing chromium (apt)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
/usr/bin/chromium --version
