#!/usr/bin/env bash
# Fails if any function in the given Rust files (default: src/control/config/) is longer than
# MAX lines (default 80), counted from its `fn` line to its closing brace. Braces are counted
# outside of `//` comments, string and char literals; good enough for rustfmt-formatted code.
# Usage: scripts/fn-length.sh [MAX] [FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."
max=${1:-80}
shift || true
if [ $# -eq 0 ]; then
  set -- src/control/config/*.rs src/control/config.rs
fi
awk -v max="$max" '
  function strip(s) {
    gsub(/\\\\/, "", s); gsub(/\\"/, "", s); gsub(/"[^"]*"/, "\"\"", s)
    gsub(/\047.\047/, "", s); sub(/\/\/.*/, "", s); return s
  }
  FNR == 1 { depth = 0; infn = 0 }
  {
    line = strip($0)
    if (!infn && line ~ /^[ \t]*(pub(\([a-z]+\))? )?(const )?(unsafe )?fn [a-z_0-9]+/) {
      infn = 1; start = FNR; base = depth; name = line
      sub(/^.*fn /, "", name); sub(/[(<].*/, "", name)
      opened = 0
    }
    n = gsub(/\{/, "{", line); c = gsub(/\}/, "}", line)
    depth += n - c
    if (infn && n > 0) opened = 1
    if (infn && ((opened && depth == base) || (!opened && line ~ /;[ \t]*$/))) {
      len = FNR - start + 1
      if (opened && len > max) { printf "%s:%d: %s is %d lines (max %d)\n", FILENAME, start, name, len, max; bad = 1 }
      infn = 0
    }
  }
  END { exit bad }
' "$@"
