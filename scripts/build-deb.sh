#!/usr/bin/env bash
# make deb: build the Debian package from a copy of the checkout (this tree stays clean).
#   DEB_OUT=DIR   where the .deb goes (default dist/); the last line printed is its path.
# As root on Debian, installs what the build needs first (dpkg-dev, then the Build-Depends of
# debian/control: debhelper, dh-virtualenv, python3-venv) with apt-get; the build itself fetches the
# project's Python dependencies from PyPI (the versions in debian/constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=$(mkdir -p "${DEB_OUT:-dist}" && cd "${DEB_OUT:-dist}" && pwd)
log=${TMPDIR:-/var/tmp}/hotsync-deb-apt.log

apt_install() {   # apt_install WHAT... : quiet, with one `apt-get update` retry; the log on failure
  export DEBIAN_FRONTEND=noninteractive
  ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -qq >/dev/null
  "$@" >"$log" 2>&1 || { apt-get update -qq >/dev/null 2>&1; "$@" >"$log" 2>&1; } || {
    echo "make deb: '$*' failed, see $log"; tail -n 5 "$log"; exit 1; }
}

if ! command -v dpkg-checkbuilddeps >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "make deb: dpkg-dev is missing (run as root to install it)"; exit 1; }
  echo "installing Debian packages: dpkg-dev"
  apt_install apt-get install -y -qq --no-install-recommends dpkg-dev
fi

version=$(dpkg-parsechangelog -l debian/changelog -S Version)
stage=$(mktemp -d "${TMPDIR:-/var/tmp}/hotsync-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
src=$stage/hotsync-events-$version
mkdir -p "$src"
# the files of the checkout: tracked and new ones, not what .gitignore keeps out (venv, build, dist)
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$top" ls-files -z -co --exclude-standard | (cd "$top" && xargs -0 cp --parents -t "$src" --)
else
  tar -C "$top" --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.egg-info' -cf - . | tar -C "$src" -xf -
fi

if ! (cd "$src" && dpkg-checkbuilddeps >/dev/null 2>&1); then
  [ "$(id -u)" = 0 ] || { (cd "$src" && dpkg-checkbuilddeps) || true; echo "make deb: run as root to install them"; exit 1; }
  echo "installing the build dependencies of debian/control"
  apt_install apt-get build-dep -y -qq --no-install-recommends "$src"
fi

echo "building hotsync-events $version in $stage (log: $stage/build.log)"
if ! (cd "$src" && dpkg-buildpackage -b -us -uc) >"$stage/build.log" 2>&1; then
  tail -n 40 "$stage/build.log"
  cp "$stage/build.log" "$out/hotsync-deb-build.log"
  echo "make deb: dpkg-buildpackage failed; the whole log: $out/hotsync-deb-build.log"
  exit 1
fi
deb=$(ls "$stage"/hotsync-events_"$version"_*.deb)
mv "$deb" "$out/"
echo "$out/$(basename "$deb")"
