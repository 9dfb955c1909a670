//! `openflume` as a library is the drivers and the Flume API: without the default `cli` feature
//! neither the argument parser, the signal handling, the CLI writer's `rustix` nor the simulators
//! are its dependencies.

// Test helpers fail the test by panicking: that is their job.
#![allow(clippy::expect_used)]

/// The crate names in `cargo tree -p openflume` with these extra arguments.
fn tree(extra: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args([
            "tree",
            "-p",
            "openflume",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .arg("--offline")
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// What only the command line needs.
const CLI_ONLY: &[&str] = &["clap", "async-signal", "rustix", "openflume-sim"];

#[test]
fn the_library_alone_leaves_out_the_cli_and_the_simulators() {
    // Direct dependencies only: smol itself pulls in async-signal and rustix further down.
    let direct = tree(&["--no-default-features", "--depth", "1"]);
    assert!(
        direct.iter().any(|name| name == "openflume-proto"),
        "unexpected cargo tree output: {direct:?}"
    );
    for name in CLI_ONLY {
        assert!(
            !direct.iter().any(|n| n == name),
            "{name} is a dependency of openflume without the cli feature"
        );
    }
    let whole = tree(&["--no-default-features"]);
    for name in ["clap", "openflume-sim"] {
        assert!(
            !whole.iter().any(|n| n == name),
            "{name} is in openflume's dependency tree without the cli feature"
        );
    }
}

#[test]
fn the_cli_feature_brings_them_in() {
    let direct = tree(&["--depth", "1"]);
    for name in CLI_ONLY {
        assert!(
            direct.iter().any(|n| n == name),
            "{name} is not a dependency of openflume with the cli feature: {direct:?}"
        );
    }
}
