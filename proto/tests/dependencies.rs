//! The sans-IO crate stays free of IO and runtime crates: no socket, executor or TLS library may
//! enter its normal dependency tree.

#[test]
fn no_io_or_runtime_crate_in_the_dependency_tree() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args([
            "tree",
            "-p",
            "openflume-proto",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"serde_json"),
        "unexpected cargo tree output:\n{tree}"
    );
    const FORBIDDEN: &[&str] = &[
        "smol",
        "async-io",
        "async-net",
        "async-executor",
        "futures-lite",
        "futures-util",
        "futures-core",
        "tungstenite",
        "async-tungstenite",
        "rustls",
        "tokio",
        "mio",
        "polling",
    ];
    for name in FORBIDDEN {
        assert!(
            !crates.contains(name),
            "{name} is in openflume-proto's dependency tree"
        );
    }
}
