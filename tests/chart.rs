//! scripts/chart.py draws what each benchmark script prints: a sample table in each script's own
//! format becomes a well-formed SVG with a bar and a value for every cell, the ratios written
//! beside the bars they belong to, favourable ones green and the others orange.

use std::io::Write;
use std::process::{Command, Stdio};

/// `scripts/chart.py ARGS` with `input` on stdin; the SVG it writes on stdout.
fn chart(args: &[&str], input: &str) -> String {
    let mut child = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/chart.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chart.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8(out.stdout).unwrap();
    well_formed(&svg);
    svg
}

/// Python's own XML parser reads it, and the root is an <svg>.
fn well_formed(svg: &str) {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; r = E.fromstring(sys.stdin.read()); \
             assert r.tag == '{http://www.w3.org/2000/svg}svg', r.tag",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(svg.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "not well-formed XML");
}

fn count(svg: &str, needle: &str) -> usize {
    svg.matches(needle).count()
}

#[test]
fn forward_table() {
    // bench-forward.sh's report: the ratio column is switchyard / the bridge.
    let report = "\
switchyard vs kernel bridge, medians of 3 runs of 3s (ratio: switchyard / bridge)

| workload                               |   switchyard | kernel bridge |  ratio |
|----------------------------------------|--------------|--------------|--------|
| TCP 1 stream, MTU 1500 (Gbit/s)        |        13.82 |        19.10 |  0.72x |
| ping p50 (us)                          |           50 |           10 |  5.00x |
| CPU s/GB, TCP 1 stream, switchyard only |         0.31 |            - |      - |
";
    let svg = chart(&["--title", "Forwarding"], report);
    assert!(svg.contains(">Forwarding</text>"));
    assert!(
        svg.contains("switchyard vs kernel bridge"),
        "the panel's title"
    );
    for value in ["13.82", "19.10", "50", "10", "0.31"] {
        assert!(svg.contains(&format!(">{value}</text>")), "{value}");
    }
    // 2 bars a row where both were measured, 1 where only switchyard was; 2 legend squares.
    assert_eq!(count(&svg, "<rect x=\"300\""), 5);
    assert!(
        svg.contains("fill:#c05a00\">0.72× vs kernel bridge<"),
        "below 1: orange"
    );
    assert!(
        svg.contains("fill:#c05a00\">5.00× vs kernel bridge<"),
        "a latency 5x the bridge's is not good"
    );
    assert_eq!(count(&svg, "lower is better"), 2, "ping and CPU rows");
}

#[test]
fn dhcp_tables() {
    // bench-dhcp.sh's tables: the last column is switchyard / the best peer, named.
    let report = "\
Completed DORA exchanges per second (median of 3 runs per cell):

| clients | switchyard | dnsmasq | kea | switchyard / best peer |
|---:|---:|---:|---:|---:|
| 100 | 8332 | 8065 | 8325 | 1.00 |
| 1000 | 8291 | 1017 | 7891 | 1.05 |

Median REQUEST-ACK delay in ms at -r 2000, lower is better (median of 3 runs per cell):

| clients | switchyard | dnsmasq | kea | switchyard / best peer |
|---:|---:|---:|---:|---:|
| 1000 | 0.211 | 48.8* | 0.160 | 1.32 |
";
    let svg = chart(&[], report);
    assert!(svg.contains(">1000 clients</text>"));
    assert!(
        svg.contains("fill:#2a7d2a\">1.05×<"),
        "more leases a second: green"
    );
    assert!(
        svg.contains("fill:#c05a00\">1.32×<"),
        "a longer delay: orange"
    );
    assert!(
        svg.contains(">48.8* (off scale)</text>"),
        "a starred value sets no scale"
    );
}

#[test]
fn dns_tables_transposed() {
    // bench-dns.sh's tables: a row per server, a ratio row last.
    let report = "\
local names (50 A, 2 PTR, 5 NXDOMAIN):

| server | queries/s | queries / server CPU s | server CPU |
|---|---:|---:|---:|
| switchyard 0.1.0 | 144,211 | 181,027 | 77% |
| dnsmasq 2.90 | 100,924 | 127,950 | 79% |
| nsd 4.6.1 | 113,950 | 140,902 | 81% |
| switchyard / best peer | 1.27 (nsd) | 1.28 (nsd) | |
";
    let svg = chart(&["--transpose"], report);
    for legend in ["switchyard 0.1.0", "dnsmasq 2.90", "nsd 4.6.1"] {
        assert!(svg.contains(&format!(">{legend}</text>")), "{legend}");
    }
    assert!(
        svg.contains(">queries / server CPU s</text>"),
        "measures are the groups"
    );
    assert!(svg.contains(">144,211</text>") && svg.contains(">81%</text>"));
    assert!(svg.contains("fill:#2a7d2a\">1.27× vs nsd<"));
    assert!(
        !svg.contains("best peer</text>"),
        "the ratio row is no series"
    );
}

#[test]
fn no_table_is_an_error() {
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/chart.py"))
        .arg("/dev/null")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Markdown table"));
}
