//! The shipped config files, loaded from disk the way `switchyard run --config` and
//! `switchyard check` load them.

use std::path::{Path, PathBuf};

use switchyard::control::config::{self, ConfigError};

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

#[test]
fn default_file_on_disk_is_the_embedded_default() {
    let path = config_dir().join("default.toml");
    let from_disk = config::load(&path).unwrap();
    let embedded = config::load_default().unwrap();
    assert_eq!(from_disk.source, path.display().to_string());
    assert_eq!(embedded.source, "<embedded default>");
    assert_eq!(
        (
            from_disk.network,
            from_disk.switch,
            from_disk.hosts,
            from_disk.ports,
            from_disk.dhcp
        ),
        (
            embedded.network,
            embedded.switch,
            embedded.hosts,
            embedded.ports,
            embedded.dhcp
        )
    );
}

#[test]
fn every_example_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(config_dir().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = config::load(&path) {
                panic!("{e}");
            }
            seen += 1;
        }
    }
    assert!(seen >= 1, "no examples found");
}

#[test]
fn errors_name_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("switchyard-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lab.toml");
    let text = config::DEFAULT_CONFIG.replacen("host = \"vm3\"", "host = \"vm9\"", 1);
    std::fs::write(&path, &text).unwrap();
    let result = config::load(&path);
    std::fs::remove_dir_all(&dir).unwrap();

    let line = text.lines().position(|l| l == "host = \"vm9\"").unwrap() + 1;
    match result {
        Err(ConfigError::Invalid { location, message }) => {
            assert_eq!(location, format!("{}:{line}", path.display()));
            assert_eq!(
                message,
                "port 'vm3': host 'vm9' is not defined in [[host]] (define it or remove the key)"
            );
        }
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn a_missing_file_is_a_read_error() {
    let err = config::load(Path::new("/nonexistent/switchyard.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}
