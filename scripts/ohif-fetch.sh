#!/usr/bin/env bash
# Fetch the published OHIF Viewer build (@ohif/app, version and integrity pinned in
# tests/viewer/ohif/package.json) and unpack its dist/ into the user's cache, once:
#   ${XDG_CACHE_HOME:-~/.cache}/tessel/ohif/<version>/dist
# `npm pack` takes the tarball from the registry (or npm's own cache) and checks the registry's
# integrity; this script checks it again against the pinned one before unpacking. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
pin="$here/tests/viewer/ohif/package.json"
read -r name version integrity < <(node -e '
  const o = require(process.argv[1]).ohif; console.log(o.package, o.version, o.integrity)' "$pin")
dest="${XDG_CACHE_HOME:-$HOME/.cache}/tessel/ohif/$version"
if [ -f "$dest/dist/index.html" ] && [ "$(cat "$dest/integrity" 2>/dev/null)" = "$integrity" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "ohif-fetch: npm is needed to fetch $name@$version" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$name@$version" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$integrity" ]; then
  echo "ohif-fetch: $name@$version does not match the pinned integrity ($actual)" >&2
  exit 1
fi
mkdir -p "$work/unpacked"
tar -xzf "$tarball" -C "$work/unpacked" package/dist
rm -rf "$dest"
mkdir -p "$dest"
mv "$work/unpacked/package/dist" "$dest/dist"
echo "$integrity" > "$dest/integrity"
echo "ohif-fetch: $name@$version unpacked in $dest/dist"
