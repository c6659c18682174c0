//! `switchyard gen man DIR` and `gen completions SHELL`: the pages and scripts are made from the
//! clap definitions, so every subcommand `--help` lists has a page and a completion, and the
//! pages are valid roff (groff, with every warning on, says nothing).

use std::path::Path;
use std::process::Command;

fn switchyard(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("run switchyard");
    assert!(
        out.status.success(),
        "switchyard {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The subcommands `switchyard --help` lists (a different path through clap than the pages).
fn subcommands(args: &[&str]) -> Vec<String> {
    let mut args = args.to_vec();
    args.push("--help");
    let help = switchyard(&args);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn man_pages_name_every_subcommand() {
    let dir = tempdir();
    let listed = switchyard(&["gen", "man", dir.to_str().unwrap()]);
    let top = std::fs::read_to_string(dir.join("man8/switchyard.8")).expect("switchyard.8");
    assert!(top.contains("\n.TH switchyard 8 "), "{}", &top[..80]);
    let subs = subcommands(&[]);
    assert!(subs.len() >= 13, "too few subcommands in --help: {subs:?}");
    assert!(!subs.iter().any(|s| s == "gen"), "gen is hidden");
    for sub in &subs {
        assert!(
            top.contains(&format!("switchyard\\-{}(8)", sub.replace('-', "\\-"))),
            "switchyard.8 does not name {sub}"
        );
        let page = dir.join(format!("man8/switchyard-{sub}.8"));
        assert!(page.is_file(), "no page {}", page.display());
        assert!(listed.contains(&page.display().to_string()));
    }
    for nested in ["host", "port"] {
        for sub in subcommands(&[nested]) {
            assert!(dir
                .join(format!("man8/switchyard-{nested}-{sub}.8"))
                .is_file());
        }
    }
    let toml = std::fs::read_to_string(dir.join("man5/switchyard.toml.5")).expect("toml.5");
    assert!(
        toml.contains("max_macs_per_port"),
        "the config keys are in the page"
    );
    let pages: Vec<_> = std::fs::read_dir(dir.join("man8"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .chain([dir.join("man5/switchyard.toml.5")])
        .collect();
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .args(&pages)
        .output()
        .expect("groff (Debian's groff-base, which man-db needs) runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warnings");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn completions_know_every_subcommand() {
    let subs = subcommands(&[]);
    for shell in ["bash", "zsh", "fish"] {
        let script = switchyard(&["gen", "completions", shell]);
        for sub in &subs {
            assert!(script.contains(sub.as_str()), "{shell}: {sub} missing");
        }
    }
    let bash = switchyard(&["gen", "completions", "bash"]);
    let out = Command::new("bash")
        .args(["-n", "-c", &bash])
        .output()
        .unwrap();
    assert!(out.status.success(), "the bash script does not parse");
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    assert!(Path::new(&dir).is_dir());
    dir
}
