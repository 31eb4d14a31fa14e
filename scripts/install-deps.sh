#!/usr/bin/env bash
# Install the Debian packages whose commands are missing (arguments: command:package ...).
# As root on Debian: apt-get. Otherwise: say what is missing; the tests that need it skip.
set -u
missing=()
for cp in "$@"; do
  cmd=${cp%%:*}; pkg=${cp#*:}
  found=""
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] && found=1
  # PostgreSQL's server programs live in /usr/lib/postgresql/<version>/bin, whatever the version installed
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/$cmd" ] && found=1; done
  [ -n "$found" ] || missing+=("$pkg")
done
# python3 -m venv needs ensurepip, which Debian ships apart
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv python3-pip)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/hotsync-apt.log 2>&1 || {
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/hotsync-apt.log 2>&1 || {
      echo "apt-get install failed, see /tmp/hotsync-apt.log"; tail -n 5 /tmp/hotsync-apt.log; exit 1; }
  }
else
  echo "missing Debian packages (run as root to install them): ${missing[*]}"
fi
