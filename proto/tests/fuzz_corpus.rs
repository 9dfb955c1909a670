//! Replays every saved fuzz input (`fuzz/corpus/<target>/*`) through its target once, so a crash
//! the fuzzer found stays fixed, and runs each target over seeded random inputs as a smoke test.

use openflume_proto::fuzzing::TARGETS;
use std::path::Path;

#[test]
fn corpus_inputs_pass_every_invariant() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut inputs = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "{name}: {} fails", path.display());
            inputs += 1;
        }
        // Every target has seeds: a new one without them would pass here untested.
        assert!(inputs > 0, "{name}: the corpus is empty");
        replayed += inputs;
    }
    assert!(replayed > 0, "the corpus is empty");
}

#[test]
fn seeded_random_inputs_pass_every_invariant() {
    let mut rng = fastrand::Rng::with_seed(0x0f1u64);
    for (name, target) in TARGETS {
        for round in 0..150 {
            let len = rng.usize(0..2048);
            let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "{name}: seeded round {round} fails");
        }
    }
}
