//! The `openflume` command.

fn main() {
    std::process::exit(2);
}
