#!/usr/bin/env bash
# Cross-compiles the programs of recipes/multiarch.toml for every platform
# into build/<multiarch triplet>/ with Debian's cross compilers
# (gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf, gcc-riscv64-linux-gnu,
# gcc-i686-linux-gnu; the host's gcc for amd64). The recipe's
# src = "multiarch/build/{triplet}/..." picks each platform's outputs.
set -euo pipefail
cd "$(dirname "$0")"
# compiler prefix : Debian multiarch triplet ({triplet} in the recipe)
targets=(
  x86_64-linux-gnu:x86_64-linux-gnu
  aarch64-linux-gnu:aarch64-linux-gnu
  arm-linux-gnueabihf:arm-linux-gnueabihf
  riscv64-linux-gnu:riscv64-linux-gnu
  i686-linux-gnu:i386-linux-gnu
)
for t in "${targets[@]}"; do
  cc="${t%%:*}-gcc"; triplet="${t#*:}"
  command -v "$cc" >/dev/null || { echo "build.sh: $cc not found (apt-get install gcc-${t%%:*})" >&2; exit 1; }
  out="build/$triplet"
  rm -rf "$out"; mkdir -p "$out/greeter/bin" "$out/greeter/lib"
  "$cc" -O2 -o "$out/hello" src/hello.c
  "$cc" -O2 -pthread -o "$out/mathy" src/mathy.c -lm
  "$cc" -O2 -shared -fPIC -Wl,-soname,libgreet.so.1 -o "$out/greeter/lib/libgreet.so.1" src/greet.c
  "$cc" -O2 -o "$out/greeter/bin/greeter" src/greeter.c -L"$out/greeter/lib" -l:libgreet.so.1 \
    -Wl,--enable-new-dtags,-rpath,'$ORIGIN/../lib'
done
echo "build.sh: built ${#targets[@]} platforms into $(pwd)/build"
