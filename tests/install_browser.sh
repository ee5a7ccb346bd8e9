#!/usr/bin/env bash
# Installs Debian's chromium for the real-browser tests when it is missing and we may install (root + apt).
# Never fails the test run by itself: the browser tests skip with a clear reason when no chromium is found.
set -u
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian chromium for the browser tests (once per machine)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will be skipped"
fi
exit 0
