#!/usr/bin/env bash
# Checks every relative markdown link in README.md and docs/: the file it names must exist in
# the repository, a #fragment must be a heading of that file (GitHub's anchor rules), and every
# page under docs/ must be linked from README.md or another page. Images (![alt](file)) must exist too.
# External links (http, https, mailto) are not followed: no network. Exits non-zero on the first
# run that finds a problem, listing each (file:line: link).
#
#   ./scripts/check-links.sh            # README.md and docs/**/*.md
#   ./scripts/check-links.sh FILE...    # those files only
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
  set -- README.md $(find docs -name '*.md' | sort)
fi
exec python3 - "$@" <<'PY'
import os, re, sys

LINK = re.compile(r'!?\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')

def anchors(path):
    out, seen, fence = set(), {}, False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fence = not fence
            continue
        m = None if fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out

bad = 0
linked = set()
for src in sys.argv[1:]:
    fence = False
    for no, line in enumerate(open(src, encoding="utf-8"), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            path, _, frag = target.partition("#")
            full = os.path.normpath(os.path.join(os.path.dirname(src), path)) if path else src
            if src != full:
                linked.add(full)
            if not os.path.exists(full):
                print(f"{src}:{no}: {target}: no such file ({full})")
                bad += 1
            elif frag and full.endswith(".md") and frag not in anchors(full):
                print(f"{src}:{no}: {target}: no heading #{frag} in {full}")
                bad += 1
# Every docs page is reachable: linked from README.md or another page (when all are checked).
if "README.md" in sys.argv[1:]:
    for page in sys.argv[1:]:
        if page.startswith("docs/") and page not in linked:
            print(f"{page}: not linked from README.md or any other page")
            bad += 1
print(f"check-links: {len(sys.argv) - 1} files, {bad} problems")
sys.exit(1 if bad else 0)
PY
