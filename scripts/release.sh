#!/usr/bin/env bash
# Builds the release binaries as shipped: rcni statically linked (no dynamic loader
# at each plugin start, no dependency on the node's libc) and cnitool. Prints the
# directory that holds them.
#
# musl is preferred when its standard library is installed (`rustup target add
# x86_64-unknown-linux-musl`): every plugin call is one exec, and glibc's static
# start-up probes the CPU with ~50 `cpuid` instructions (each a VM exit on a virtual
# machine), ~0.3 ms per exec that musl does not spend. Without it, glibc is used.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
target=$host
musl=${host%-gnu}-musl
if [[ $host == *-linux-gnu && -d $(rustc --print sysroot)/lib/rustlib/$musl ]]; then
  target=$musl
fi
# --target keeps the static flags off build scripts and proc-macros.
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" cargo build --release --locked -q --target "$target" -p rcni -p cnitool
echo "$PWD/target/$target/release"
