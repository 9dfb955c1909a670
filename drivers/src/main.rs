//! The `openflume` command: see `openflume --help`.

fn main() {
    std::process::exit(openflume::cli::main());
}
