#!/usr/bin/env python3
"""Draws the Markdown tables of a benchmark's output as one SVG chart (stdlib only).

    scripts/chart.py [--transpose] [--title TEXT] [-o OUT.svg] [REPORT.md]   (stdin without one)

Every table in the input becomes a panel, titled by the line before it (or by its first header
cell when the line before it is another table's). A row is a group of
bars, one per server column (each row scaled to its own largest value, since rows have
different units), the value written at the end of each bar. Ratio columns (a header that is
"ratio" or contains " / ") are not bars: each ratio is written beside the bar it belongs to (the
column just left of a "ratio", unless that is the last server column, as in "switchyard | kernel
bridge | ratio"; else the first server column), a "ratio" against the last server column
unless the cell names its peer ("0.94 (dhcpd)"), green when it favours switchyard, orange when not. A row whose label or panel title says it is lower-is-better (a latency, a delay, CPU per
unit of work) is marked so, and its ratio judged that way.

--transpose reads tables whose rows are the servers and whose columns are the measures (the DNS
benchmark's), a row labelled "... / best peer" holding the ratios.
"""
import argparse
import html
import re
import sys

LOWER = re.compile(r"lower is better|\b(ms|µs|us|p50|p99|delay|latency|loss)\b|CPU s/", re.I)
PALETTE = ["#1f6fb4", "#8fb8de", "#e08a2e", "#5aa05a", "#9467bd", "#8c564b", "#7f7f7f"]
LABEL_W, BAR_W, VALUE_W, RATIO_W = 300, 380, 90, 130
BAR_H, BAR_GAP, GROUP_GAP = 13, 2, 10
WIDTH = LABEL_W + BAR_W + VALUE_W + RATIO_W + 20


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def clean(text):
    """A cell without Markdown emphasis or code marks."""
    return re.sub(r"(?<!\d)\*", "", text.replace("**", "").replace("`", "")).strip()


def number(text):
    """The value a cell shows: '1,234' 1234, '54.4*' 54.4, '18.96-19.33' their middle, '77%' 77;
    None for '-', '–', '' or words."""
    t = text.replace(",", "").replace("*", "").replace("%", "").replace("×", "").strip()
    t = re.sub(r"x$", "", t)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)", t)
    if m:
        return (float(m.group(1)) + float(m.group(2))) / 2
    try:
        return float(t)
    except ValueError:
        return None


def is_ratio(header):
    return header.lower() == "ratio" or " / " in header


def tables(text):
    """(title, header, rows) for every Markdown table in text."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            header, rows = cells(lines[i]), []
            title = next((l.strip() for l in reversed(lines[:i]) if l.strip()), "")
            if title.startswith("|"):  # two tables in a row: the second is named by its corner
                title = clean(header[0])
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            out.append((title.rstrip(":"), header, rows))
        else:
            i += 1
    return out


def transpose(header, rows):
    """Servers as rows -> measures as rows; a '... / best peer' row becomes the ratio column."""
    series = [r for r in rows if not is_ratio(clean(r[0]))]
    ratios = [r for r in rows if is_ratio(clean(r[0]))]
    new_header = [header[0]] + [clean(r[0]) for r in series] + ["switchyard / best peer" for _ in ratios[:1]]
    new_rows = []
    for j, measure in enumerate(header[1:], start=1):
        row = [measure] + [r[j] if j < len(r) else "" for r in series]
        if ratios:
            row.append(ratios[0][j] if j < len(ratios[0]) else "")
        new_rows.append(row)
    return new_header, new_rows


def owners(header):
    """For each ratio column, the index of the server column it belongs to."""
    series = [j for j in range(1, len(header)) if not is_ratio(header[j])]
    out = {}
    for j in range(1, len(header)):
        if is_ratio(header[j]):
            left = j - 1
            out[j] = left if left in series and left != series[-1] else series[0]
    return series, out


def ratio_text(cell):
    """'0.94 (dhcpd)' -> ('0.94× vs dhcpd', 0.94); '5.0×' -> ('5.0×', 5.0)."""
    c = clean(cell)
    m = re.match(r"^([\d.]+)\s*[×x]?\s*(?:\((.+)\))?$", c)
    if not m:
        return None
    value = float(m.group(1))
    return (f"{m.group(1)}×" + (f" vs {m.group(2)}" if m.group(2) else ""), value)


def panel(title, header, rows, y, svg):
    series, ratio_of = owners(header)
    panel_lower = bool(re.search(r"lower is better", title, re.I)) or bool(LOWER.search(clean(header[0])))
    esc = lambda s: html.escape(s, quote=True)
    svg.append(f'<text x="10" y="{y + 16}" class="title">{esc(clean(title))}</text>')
    y += 26
    x = 10
    for k, j in enumerate(series):
        name = clean(header[j])
        if x + 16 + 7 * len(name) > WIDTH - 10:
            x, y = 10, y + 18
        svg.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{PALETTE[k % len(PALETTE)]}"/>')
        svg.append(f'<text x="{x + 16}" y="{y + 10}" class="legend">{esc(name)}</text>')
        x += 16 + 7 * len(name) + 24
    y += 22
    for row in rows:
        label = clean(row[0])
        corner = clean(header[0])
        if re.fullmatch(r"\d+( \w+)?", label) and re.fullmatch(r"\w+", corner):
            # "1000 renew" in a "clients" column: "1000 clients renew"
            first = label.split()[0]
            label = f"{first} {corner}{label[len(first):]}"
        lower = panel_lower or bool(LOWER.search(label))
        values = {j: number(row[j]) if j < len(row) else None for j in series}
        # A starred value (a server that did not keep up) does not set the scale: its bar may
        # run off the edge, cut there and marked.
        plain_values = [values[j] for j in series if values[j] is not None and not row[j].strip().endswith("*")]
        top = max(plain_values or [v for v in values.values() if v is not None] or [0])
        notes = {}
        for j, owner in ratio_of.items():
            if j < len(row) and ratio_text(row[j]):
                text, r = ratio_text(row[j])
                if " vs " not in text and header[j].lower() == "ratio" and owner != series[-1]:
                    text += f" vs {clean(header[series[-1]])}"
                notes[owner] = (text, r)
        height = len(series) * (BAR_H + BAR_GAP)
        svg.append(f'<text x="10" y="{y + 12}" class="label">{esc(label)}</text>')
        if lower:
            svg.append(f'<text x="10" y="{y + 26}" class="note">lower is better</text>')
        for k, j in enumerate(series):
            by = y + k * (BAR_H + BAR_GAP)
            v, cell = values[j], clean(row[j]) if j < len(row) else ""
            if v is not None and top > 0:
                w = max(1.0, BAR_W * v / top)
                if w > BAR_W:
                    w, cell = BAR_W, cell + " (off scale)"
                svg.append(f'<rect x="{LABEL_W}" y="{by}" width="{w:.1f}" height="{BAR_H}" fill="{PALETTE[k % len(PALETTE)]}"/>')
                svg.append(f'<text x="{LABEL_W + w + 4:.1f}" y="{by + 10}" class="value">{esc(cell)}</text>')
            else:
                svg.append(f'<text x="{LABEL_W + 4}" y="{by + 10}" class="value">{esc(cell or "–")}</text>')
            if j in notes:
                text, r = notes[j]
                good = r <= 1 if lower else r >= 1
                svg.append(f'<text x="{LABEL_W + BAR_W + VALUE_W}" y="{by + 10}" class="ratio" style="fill:{"#2a7d2a" if good else "#c05a00"}">{esc(text)}</text>')
        y += max(height, 30) + GROUP_GAP
        svg.append(f'<line x1="10" x2="{WIDTH - 10}" y1="{y - GROUP_GAP / 2}" y2="{y - GROUP_GAP / 2}" class="rule"/>')
    return y + 10


def render(text, title=None, flip=False):
    found = tables(text)
    if not found:
        raise SystemExit("chart.py: no Markdown table in the input")
    svg, y = [], 10
    if title:
        svg.append(f'<text x="10" y="{y + 18}" class="heading">{html.escape(title)}</text>')
        y += 32
    for t, header, rows in found:
        if flip:
            header, rows = transpose(header, rows)
        y = panel(t, header, rows, y, svg)
    style = ("text{font-family:DejaVu Sans,Verdana,sans-serif;font-size:11px;fill:#222}"
             ".heading{font-size:15px;font-weight:bold}.title{font-size:13px;font-weight:bold}"
             ".note{font-size:9px;fill:#777;font-style:italic}.ratio{font-weight:bold}"
             ".rule{stroke:#ddd;stroke-width:1}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" viewBox="0 0 {WIDTH} {y}">\n'
            f'<style>{style}</style>\n<rect width="100%" height="100%" fill="white"/>\n'
            + "\n".join(svg) + "\n</svg>\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", nargs="?", help="the benchmark's output (default: stdin)")
    ap.add_argument("-o", "--output", help="the SVG file (default: stdout)")
    ap.add_argument("--title", help="a heading above the panels")
    ap.add_argument("--transpose", action="store_true", help="rows are servers, columns measures")
    args = ap.parse_args()
    text = open(args.input, encoding="utf-8").read() if args.input else sys.stdin.read()
    svg = render(text, args.title, args.transpose)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(svg)
    else:
        sys.stdout.write(svg)


if __name__ == "__main__":
    main()
