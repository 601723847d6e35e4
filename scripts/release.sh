#!/usr/bin/env bash
# Builds the release binaries as shipped: rcni statically linked (no dynamic loader
# at each plugin start, no dependency on the node's libc) and cnitool. Prints the
# directory that holds them.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps the static flag off build scripts and proc-macros.
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" cargo build --release --locked -q --target "$host" -p rcni -p cnitool
echo "$PWD/target/$host/release"
