#!/bin/sh
# airpack's tool/install.sh: install airpack from this bundle alone, with no network (docs/bundle-format.md).
#
#   sh tool/install.sh --key PUB --prefix DIR [--python PATH] [--upgrade]
#
# Run it from the bundle folder or from volume 1 of a split bundle (the bundle is the folder above this
# script). Before any Python runs it checks the signature over SHA256SUMS with openssl, with the key given
# here (never one found in the bundle), then every tool/ file with sha256sum: any mismatch exits 3 and
# creates nothing at DIR. Then it finds a Python >= 3.11 (or --python), makes a venv at DIR, installs with
# pip from tool/wheels only (no index, no configuration file, no cache) and ends by running
# DIR/bin/airpack verify on this bundle. A DIR that holds an airpack already is refused unless --upgrade.
# This script checks itself as one of the tool/ files; against a swapped script, check the bundle first
# with the openssl + sha256sum recipe in the README (it covers tool/install.sh too).
# Exit status: 0 ok, 1 error, 2 usage, 3 verification failed (POSIX sh: dash, busybox ash, bash).

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
  code=$1
  shift
  say "error: $*"
  exit "$code"
}
usage="usage: sh tool/install.sh --key PUB --prefix DIR [--python PATH] [--upgrade]"

key="" prefix="" python="" upgrade="" tmp="" made="" done="" top=""
while [ $# -gt 0 ]; do
  case $1 in
    --key | --prefix | --python)
      [ $# -ge 2 ] || die 2 "$1 needs a value ($usage)"
      case $1 in --key) key=$2 ;; --prefix) prefix=$2 ;; --python) python=$2 ;; esac
      shift 2
      ;;
    --key=*) key=${1#--key=}; shift ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --python=*) python=${1#--python=}; shift ;;
    --upgrade) upgrade=1; shift ;;
    -h | --help) printf '%s\n' "$usage"; exit 0 ;;
    *) die 2 "unknown argument '$1' ($usage)" ;;
  esac
done
[ -n "$key" ] || die 2 "give the trusted public key with --key PUB (carried out of band, never the bundle's own)"
[ -n "$prefix" ] || die 2 "give the folder to install into with --prefix DIR"
{ [ -f "$key" ] && [ -r "$key" ]; } || die 2 "$key: no such readable key file"
case $key in /*) ;; *) key=$PWD/$key ;; esac
case $prefix in /*) ;; *) prefix=$PWD/$prefix ;; esac

here=$(cd "$(dirname "$0")" && pwd -P) || die 1 "cannot find the folder of $0"
[ "$(basename "$here")" = tool ] || die 2 "$0 is not in a bundle's tool/ folder"
root=$(dirname "$here")

for t in openssl:openssl sha256sum:coreutils base64:coreutils awk:awk find:findutils mktemp:coreutils; do
  command -v "${t%%:*}" >/dev/null 2>&1 || die 1 "${t%%:*} not found: install the ${t#*:} package"
done

cleanup() {
  [ -n "$tmp" ] && rm -rf "$tmp"
  if [ -z "$done" ] && [ "$made" = new ]; then
    rm -rf "$top"
    say "removed $top (the install did not complete)"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
tmp=$(mktemp -d "${TMPDIR:-/tmp}/airpack-install.XXXXXX") || die 1 "cannot make a temporary folder"

# ---- 1. the signature over SHA256SUMS, with the key from the command line --------------------------------
sums=$root/SHA256SUMS
sig=$root/SHA256SUMS.sig
{ [ -f "$sums" ] && [ ! -L "$sums" ]; } || die 3 "$sums is missing: $root is not an airpack bundle or volume"
{ [ -f "$sig" ] && [ ! -L "$sig" ]; } || die 3 "$sig is missing: the bundle is not signed (run 'airpack sign')"
base64 -d <"$sig" >"$tmp/sig" 2>/dev/null || die 3 "$sig is not base64: the signature was damaged"
keytext=$(openssl pkey -pubin -in "$key" -noout -text 2>/dev/null) || die 2 "$key: not a PEM public key"
case $keytext in
  *ED25519*) openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in "$sums" -sigfile "$tmp/sig" >/dev/null 2>&1 ;;
  *prime256v1* | *P-256*) openssl dgst -sha256 -verify "$key" -signature "$tmp/sig" "$sums" >/dev/null 2>&1 ;;
  *) die 2 "$key: neither an ECDSA P-256 nor an Ed25519 public key" ;;
esac || die 3 "the signature over SHA256SUMS does not verify with $key: the bundle was changed, or signed with another key"

# ---- 2. every tool/ file against its signed line; nothing unlisted, nothing but regular files ------------
awk 'length($1) == 64 && NF == 2 && index($2, "tool/") == 1' "$sums" >"$tmp/tool.sums"
[ -s "$tmp/tool.sums" ] || die 3 "SHA256SUMS lists no tool/ files: this bundle was built with --no-tool"
[ -L "$root/tool" ] && die 3 "$root/tool is a symbolic link"
bad=0
while read -r hash path; do
  f=$root/$path
  if [ ! -f "$f" ] || [ -L "$f" ]; then
    say "$path: missing (run this from the bundle or from volume 1)"
    bad=$((bad + 1))
  elif [ "$(sha256sum <"$f" | cut -c1-64)" != "$hash" ]; then
    say "$path: does not match the signed SHA256SUMS"
    bad=$((bad + 1))
  fi
done <"$tmp/tool.sums"
(cd "$root" && find tool ! -type d) >"$tmp/found" || die 1 "cannot list $root/tool"
(cd "$root" && find tool ! -type d ! -type f) >"$tmp/odd"
while read -r path; do
  say "$path: not a regular file"
  bad=$((bad + 1))
done <"$tmp/odd"
awk 'NR == FNR { listed[$2] = 1; next } !($0 in listed)' "$tmp/tool.sums" "$tmp/found" >"$tmp/extra"
while read -r path; do
  say "$path: not listed in SHA256SUMS"
  bad=$((bad + 1))
done <"$tmp/extra"
[ "$bad" -eq 0 ] || die 3 "$bad problem(s) in tool/: nothing was installed"
say "signature and every tool/ file verified with $key"

# ---- 3. what the tool is for: airpack's version, the platform and the Pythons (from the verified tool.conf)
version="" platform="" pythons=""
while IFS='=' read -r k v; do
  case $k in airpack) version=$v ;; platform) platform=$v ;; pythons) pythons=$v ;; esac
done <"$root/tool/tool.conf"
{ [ -n "$version" ] && [ -n "$platform" ] && [ -n "$pythons" ]; } || die 3 "tool/tool.conf does not say what the tool is"
machine=$(uname -m)
case $machine in x86_64 | amd64) host=linux/amd64 ;; aarch64 | arm64) host=linux/arm64 ;; *) host=linux/$machine ;; esac
[ "$(uname -s)" = Linux ] || die 1 "this is $(uname -s), not Linux: airpack installs on Linux hosts"
[ "$host" = "$platform" ] || die 1 "the bundle's tool is for $platform, this machine is $machine ($host): carry a bundle built with target.platform: $host"

pyver() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
carried() { case " $pythons " in *" $1 "*) return 0 ;; esac; return 1; }
old() { case $1 in 2.* | 3.[0-9] | 3.10) return 0 ;; esac; return 1; }
if [ -n "$upgrade" ] && [ -x "$prefix/bin/python" ] && [ -z "$python" ]; then
  python=$prefix/bin/python
fi
if [ -n "$python" ]; then
  case $python in */*) ;; *) python=$(command -v "$python") || die 1 "--python $python: not found on PATH" ;; esac
  pv=$(pyver "$python") || die 1 "--python $python: does not run as Python"
  old "$pv" && die 1 "$python is Python $pv; airpack needs 3.11 or newer"
  carried "$pv" || die 1 "no wheels for Python $pv in this bundle (it carries $pythons): use --python with one of those"
else
  seen=""
  for c in python3.13 python3.12 python3.11 python3; do
    p=$(command -v "$c") || continue
    pv=$(pyver "$p") || continue
    if carried "$pv"; then python=$p; break; fi
    seen="$seen $c=$pv"
  done
  [ -n "$python" ] || die 1 "no usable Python: the tool needs CPython $pythons (found:${seen:- none}); install python3.11 (RHEL 9, Ubuntu 22.04) or python3 (Debian 12, Ubuntu 24.04), or pass --python PATH"
fi

# ---- 4. the prefix: a new venv, or --upgrade of an airpack already there -------------------------------
if [ -e "$prefix/bin/airpack" ] || [ -e "$prefix/pyvenv.cfg" ]; then
  [ -n "$upgrade" ] || die 1 "$prefix already holds an airpack: pass --upgrade to replace it, or choose another --prefix"
  [ -w "$prefix" ] || die 1 "$prefix is not writable"
  vpy=$prefix/bin/python
  [ "$(pyver "$vpy")" = "$pv" ] || die 1 "$prefix runs Python $(pyver "$vpy" || echo '?'), not $pv: give --python $vpy"
  upgrade_args="--upgrade --force-reinstall"
else
  if [ -e "$prefix" ]; then
    { [ -d "$prefix" ] && [ -z "$(ls -A "$prefix")" ]; } || die 1 "$prefix exists and is not an empty folder: choose another --prefix"
    [ -w "$prefix" ] || die 1 "$prefix is not writable"
  else
    top=$prefix # the first folder this script creates: what a failure removes
    while [ ! -e "$(dirname "$top")" ]; do top=$(dirname "$top"); done
    parent=$(dirname "$top")
    { [ -d "$parent" ] && [ -w "$parent" ]; } || die 1 "$parent is not a writable folder: cannot make $prefix"
    mkdir -p "$prefix" 2>/dev/null || die 1 "$prefix: cannot create it (read-only or not writable?)"
    made=new
  fi
  say "making a venv at $prefix with $python (Python $pv)"
  "$python" -m venv --without-pip "$prefix" || die 1 "$python -m venv failed at $prefix"
  vpy=$prefix/bin/python
  upgrade_args=""
fi

# ---- 5. pip from the bundle's own pip wheel, tool/wheels only ------------------------------------------
pipwhl=""
for w in "$root"/tool/wheels/pip-*.whl; do [ -f "$w" ] && pipwhl=$w; done
[ -n "$pipwhl" ] || die 1 "tool/wheels has no pip wheel"
say "installing airpack $version from tool/wheels (no index, no network)"
# shellcheck disable=SC2086 # upgrade_args is a list of flags or empty
PIP_CONFIG_FILE=/dev/null "$vpy" "$pipwhl/pip" install --isolated --no-index --no-cache-dir \
  --disable-pip-version-check --no-input --only-binary=:all: --find-links "$root/tool/wheels" \
  $upgrade_args "airpack==$version" pip >"$tmp/pip.log" 2>&1 || {
  tail -n 5 "$tmp/pip.log" >&2
  die 1 "pip could not install airpack $version for Python $pv from tool/wheels (is a wheel missing for this Python?)"
}
done=1

# ---- 6. the installed airpack verifies the whole bundle (or this volume) -------------------------------
say "installed airpack $version at $prefix; now: $prefix/bin/airpack verify $root"
"$prefix/bin/airpack" verify "$root" --key "$key" || {
  code=$?
  say "airpack is installed at $prefix, but $root did not verify (exit $code)"
  exit "$code"
}
say "done: $prefix/bin/airpack is ready (Python $pv)"
