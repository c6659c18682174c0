#!/usr/bin/env bash
# Draws the charts of docs/benchmarks/ from the latest-result tables already on those pages
# (scripts/chart.py), without running a benchmark:
#
#   ./scripts/page-charts.sh        # writes docs/benchmarks/{forward,dhcp,dns}.svg
#
# A benchmark run writes its own chart of what it measured (CHART=..., see each script); when a
# page gets a new latest table, copy that chart over or run this again.
set -euo pipefail
cd "$(dirname "$0")/.."
B=docs/benchmarks

# table PAGE FIRST-HEADER-CELL: the first table on PAGE whose header starts with that cell.
table() {
  awk -v head="| $2 |" 'index($0, head) == 1 { on = 1 } on && !/^\|/ { exit } on' "$1"
}

{
  echo "Three [switch] settings against one kernel bridge (ratio: that column / the bridge's figure):"
  echo
  table $B/forward.md workload
} | python3 scripts/chart.py -o $B/forward.svg \
  --title "Forwarding: switchyard against the kernel bridge (2026-11-23, median of 3 rounds of 3 s)"

{
  echo "Completed DORA exchanges a second (base: the main before the priority and yield changes):"
  echo
  table $B/dhcp.md "completed DORA/s"
  echo
  echo "Median REQUEST-ACK delay in ms at -r 2000, lower is better (starred: that server did not keep up):"
  echo
  table $B/dhcp.md "median REQUEST-ACK, ms, \`-r 2000\`"
} | python3 scripts/chart.py -o $B/dhcp.svg \
  --title "DHCP: switchyard against dnsmasq, Kea and ISC dhcpd (2026-12-07, median of 3 runs of 5 s)"

{
  echo "Local and cached names (server CPU in % of one core):"
  echo
  table $B/dns.md load
} | python3 scripts/chart.py -o $B/dns.svg \
  --title "DNS: switchyard against dnsmasq, nsd and unbound (2026-11-23, median of 3 runs of 3 s)"

echo "page-charts: $B/forward.svg $B/dhcp.svg $B/dns.svg"
