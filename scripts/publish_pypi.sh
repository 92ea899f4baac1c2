#!/usr/bin/env bash
# Builds the sglangmux Python sdist and wheel, checks them with twine, uploads them to PyPI.
# Run `scripts/publish_pypi.sh --help` for the details; docs/packaging.md has the release steps.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/publish_pypi.sh [--testpypi] [--dry-run]

Builds the sdist and the wheel of the sglangmux Python package into dist/ (beside the
esbuild bundle dist/sglangmux.mjs), checks them with `twine check --strict`, and uploads
them with `twine upload`. Stops at the first failure.

  --testpypi   upload to TestPyPI (twine's `--repository testpypi`) instead of PyPI
  --dry-run    do everything but the upload
  -h, --help   show this help

It refuses to run when:
  - the git tree is dirty (modified or untracked files). SGLANGMUX_ALLOW_DIRTY=1 skips
    this check; the test suite uses it. Never publish a release with it.
  - dist/ already holds an sdist or wheel of another version: delete those files first.

Environment:
  PYTHON                   the Python that runs `-m build` and twine; it needs hatchling,
                           build and twine installed (the build runs with --no-isolation).
                           Default: /usr/bin/python3 when it exists, else python3.
  TWINE                    the twine command. Default: "$PYTHON -m twine".
  SGLANGMUX_ALLOW_DIRTY=1  skip the clean git tree check.

Credentials are twine's own: a ~/.pypirc, or TWINE_USERNAME=__token__ and
TWINE_PASSWORD=<an API token>.
EOF
}

log() { printf 'publish_pypi: %s\n' "$*" >&2; }
uploading=0
die() {
  printf 'publish_pypi: error: %s\n' "$*" >&2
  ((uploading)) || printf 'publish_pypi: nothing was uploaded.\n' >&2
  exit 1
}

testpypi=0
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --testpypi) testpypi=1 ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON is not an executable"
read -r -a twine <<<"${TWINE:-$PYTHON -m twine}"

# 1. Tools.
"$PYTHON" -c 'import build, hatchling' 2>/dev/null \
  || die "$PYTHON lacks the 'build' and 'hatchling' modules (on Debian: apt-get install python3-build python3-hatchling; or set PYTHON)"
"${twine[@]}" --version >/dev/null 2>&1 \
  || die "twine does not run (${twine[*]} --version failed; on Debian: apt-get install twine; or set TWINE)"

# 2. A clean tree: what is uploaded must be what is committed.
if [[ "${SGLANGMUX_ALLOW_DIRTY:-}" == 1 ]]; then
  log "SGLANGMUX_ALLOW_DIRTY=1: not checking that the git tree is clean"
else
  git rev-parse --is-inside-work-tree >/dev/null 2>&1 \
    || die "$root is not a git checkout (set SGLANGMUX_ALLOW_DIRTY=1 to skip this check)"
  dirty="$(git status --porcelain --untracked-files=normal)"
  if [[ -n "$dirty" ]]; then
    printf '%s\n' "$dirty" >&2
    die "the git tree is dirty (above); commit or stash first"
  fi
fi

# 3. The version: package.json's, as Python spells it (PEP 440 normal form).
version="$("$PYTHON" - <<'EOF'
import json
raw = json.load(open("package.json", encoding="utf-8"))["version"]
try:
    from packaging.version import Version
    print(Version(raw))
except Exception:
    print(raw)
EOF
)" || die "cannot read the version from package.json"
log "sglangmux $version"

# 4. dist/ must not hold Python artifacts of another version.
shopt -s nullglob
others=()
for f in dist/sglangmux-*.tar.gz dist/sglangmux-*.whl; do
  name="${f#dist/sglangmux-}"
  name="${name%.tar.gz}"
  name="${name%%-py*.whl}"
  [[ "$name" == "$version" ]] || others+=("$f")
done
shopt -u nullglob
if ((${#others[@]})); then
  die "dist/ holds files of another version than $version: ${others[*]} (delete them first)"
fi

sdist="dist/sglangmux-$version.tar.gz"
wheel="dist/sglangmux-$version-py3-none-any.whl"
rm -f "$sdist" "$wheel"

# 5. Build: the sdist, then the wheel from the sdist (so the sdist is known to build).
# --skip-dependency-check: Debian 12's hatchling declares a dependency on `editables`, which
# Debian does not package; only editable installs need it (and ours do not: dev-mode-dirs).
log "building the sdist and the wheel (python -m build --no-isolation)"
"$PYTHON" -m build --no-isolation --skip-dependency-check --outdir dist . || die "the build failed (above)"
for f in "$sdist" "$wheel"; do
  [[ -f "$f" ]] || die "the build did not produce $f"
done
"$PYTHON" - "$wheel" <<'EOF' || die "$wheel lacks the daemon bundle or its licences"
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = {"sglangmux/_bundle/sglangmux.mjs", "sglangmux/_bundle/THIRD_PARTY_LICENSES.txt"}
sys.exit(0 if need <= names else 1)
EOF

# 6. Check the metadata as the index will.
log "twine check --strict"
"${twine[@]}" check --strict "$sdist" "$wheel" || die "twine check failed (above)"

# 7. Upload.
upload=("${twine[@]}" upload)
target=PyPI
if ((testpypi)); then
  upload+=(--repository testpypi)
  target=TestPyPI
fi
upload+=("$sdist" "$wheel")
if ((dry_run)); then
  log "dry run: not uploading to $target; would run: ${upload[*]}"
  exit 0
fi
log "uploading sglangmux $version to $target"
uploading=1
"${upload[@]}" || die "twine upload failed (above); some files may have reached $target"
log "uploaded sglangmux $version to $target"
