#!/bin/sh
# Rebuilds recipes/hello/hello from hello.S (static, no libc, stripped).
set -eu
cd "$(dirname "$0")"
as --64 -o hello.o hello.S
ld -static -nostdlib --build-id=none -s -o hello hello.o
rm -f hello.o
