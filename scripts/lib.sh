# Shared by the scripts in this directory: sourced, never run.

# A daemon started by a script never takes the machine's resolvers as its DNS upstreams (a
# config without `upstreams` would: src/control/resolv.rs): no query leaves the lab.
export SWITCHYARD_RESOLV_CONF=

# install_missing [PACKAGE...]: installs, in one apt-get run, the Debian package of every command
# in the caller's associative array `need` (command -> package) that is not on PATH, plus the
# PACKAGEs given. Does nothing (and needs no network) when everything is there.
install_missing() {
  local cmd missing=("$@")
  for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL; reaps it. An empty PID is fine.
stop_pid() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# remove_lab DIR NS...: deletes each namespace that exists, then DIR, unless KEEP_LOGS=1 (then
# says where the logs are). What a script's exit trap does last.
remove_lab() {
  local dir=$1 ns
  shift
  for ns in "$@"; do
    [ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null || true
  done
  if [ "${KEEP_LOGS:-0}" = 1 ]; then
    echo "logs kept in $dir" >&2
  else
    rm -rf "$dir"
  fi
}

# write_chart TABLES SVG TITLE [chart.py options]: draws the Markdown tables in the file TABLES
# (what the benchmark printed) as an SVG chart at SVG (scripts/chart.py, Python's stdlib only),
# and says where. A chart that cannot be drawn is a warning, never a failed benchmark.
write_chart() {
  local tables=$1 svg=$2 title=$3
  shift 3
  mkdir -p "$(dirname "$svg")"
  if python3 scripts/chart.py --title "$title" "$@" -o "$svg" "$tables"; then
    echo "chart: $svg"
  else
    echo "warning: no chart drawn from $tables" >&2
  fi
}
