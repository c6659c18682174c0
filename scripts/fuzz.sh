#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for FUZZ_SECONDS (default 20) with
# libFuzzer and AddressSanitizer; fails on the first crash, leak or timeout, printing the input
# that caused it (kept in fuzz/artifacts/<target>/). The test command runs it; a longer run:
#
#   FUZZ_SECONDS=3600 ./scripts/fuzz.sh            # an hour per target
#   FUZZ_SECONDS=600 ./scripts/fuzz.sh dhcp frame  # only these targets
#
# Corpora grow in fuzz/corpus/<target>/ (not committed), seeded from fuzz/seeds/<target>/.
# The machine has only a stable toolchain, and cargo-fuzz needs nightly flags (-Zsanitizer):
# RUSTC_BOOTSTRAP=1 lets the stable compiler accept them.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1
each=${FUZZ_SECONDS:-20}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -O

printf '%-10s %12s %10s %8s\n' target executions exec/s corpus
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  if [ -d "seeds/$t" ]; then
    cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  fi
  log=$(mktemp)
  if ! cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$each" -rss_limit_mb=2048 \
      -timeout=10 >"$log" 2>&1; then
    echo "fuzz target '$t' failed:" >&2
    grep -E "ERROR|panicked|SUMMARY|Test unit written|artifact_prefix" "$log" | head -20 >&2
    tail -30 "$log" >&2
    rm -f "$log"
    exit 1
  fi
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1)
  runs=$(awk '{print $2}' <<<"$done_line")
  secs=$(awk '{print $5}' <<<"$done_line")
  printf '%-10s %12s %10s %8s\n' "$t" "$runs" "$((runs / (secs > 0 ? secs : 1)))" \
    "$(ls "corpus/$t" | wc -l)"
  rm -f "$log"
done
