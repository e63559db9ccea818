#!/usr/bin/env bash
# Build the lab's OpenTelemetry Collector with the Collector Builder (ocb) from Go modules,
# once: the binary is kept under $HOPSCOPE_CACHE_DIR/otelcol/ and reused by every later run.
#
#   deploy/reference/otelcol/build-collector.sh [--print-path]
#
# Inputs (environment):
#   HOPSCOPE_CACHE_DIR        cache root (default ~/.cache/hopscope); the binary, ocb and the Go
#                             module cache (GOMODCACHE, unless set) live under it.
#   HOPSCOPE_OTELCOL_MANIFEST ocb manifest (default: builder-manifest.yaml next to this script,
#                             the one in /work/shared/peers/otelcol/ when present, same pins).
#   HOPSCOPE_OTELCOL_BIN      an already built collector to use instead (nothing is built).
#   GO                        the go command (default: go, or /usr/local/go/bin/go).
# Output: the path of the collector binary on stdout (last line); progress on stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'otelcol-build: %s\n' "$*" >&2; }

if [[ -n "${HOPSCOPE_OTELCOL_BIN:-}" ]]; then
  [[ -x "$HOPSCOPE_OTELCOL_BIN" ]] || { log "HOPSCOPE_OTELCOL_BIN=$HOPSCOPE_OTELCOL_BIN is not executable"; exit 2; }
  echo "$HOPSCOPE_OTELCOL_BIN"; exit 0
fi

manifest="${HOPSCOPE_OTELCOL_MANIFEST:-}"
if [[ -z "$manifest" ]]; then
  if [[ -r /work/shared/peers/otelcol/builder-manifest.yaml ]]; then
    manifest=/work/shared/peers/otelcol/builder-manifest.yaml
  else
    manifest="$here/builder-manifest.yaml"
  fi
fi
# The collector core version the manifest pins (its receivers' versions).
version="$(sed -n 's#^ *- gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v\([0-9.]*\).*#\1#p' "$manifest" | head -1)"
[[ -n "$version" ]] || { log "cannot read the otlpreceiver version from $manifest"; exit 2; }
name="$(sed -n 's#^  name: *\(.*\)#\1#p' "$manifest" | head -1)"
name="${name:-otelcol-custom}"

cache="${HOPSCOPE_CACHE_DIR:-$HOME/.cache/hopscope}/otelcol"
digest="$(sha256sum "$manifest" | cut -c1-12)"
dir="$cache/v$version-$digest"
bin="$dir/$name"
if [[ -x "$bin" ]]; then
  log "cached: $bin"
  echo "$bin"; exit 0
fi

go="${GO:-}"
if [[ -z "$go" ]]; then
  if command -v go >/dev/null; then go=go
  elif [[ -x /usr/local/go/bin/go ]]; then go=/usr/local/go/bin/go
  else log "no Go toolchain: install Go >= 1.25 (https://go.dev/dl) or set GO"; exit 2
  fi
fi
export GOMODCACHE="${GOMODCACHE:-$cache/gomod}"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
mkdir -p "$dir"

ocb="$cache/ocb-v$version/builder"
if [[ ! -x "$ocb" ]]; then
  log "installing ocb v$version (go install go.opentelemetry.io/collector/cmd/builder)"
  GOBIN="$cache/ocb-v$version" "$go" install "go.opentelemetry.io/collector/cmd/builder@v$version"
fi

# The manifest as given, its output path pointed into the cache (ocb writes sources and the
# binary there). Built into a temporary name, renamed when complete: a killed build leaves no
# half binary behind.
work="$dir/src"
sed "s#^  output_path: .*#  output_path: $work#" "$manifest" >"$dir/manifest.yaml"
start=$(date +%s)
log "building $name v$version from $manifest (several minutes on 2 cores)"
(cd "$dir" && "$ocb" --config "$dir/manifest.yaml" >&2)
cp "$work/$name" "$bin.tmp" && mv "$bin.tmp" "$bin"
log "built in $(( $(date +%s) - start ))s: $bin"
echo "$bin"
