//! `trib`: the Tributary command-line binary. Thin: parses arguments, installs
//! the tracing subscriber, calls `trib-node`, maps errors to exit codes.

fn main() {
    println!("trib {}", env!("CARGO_PKG_VERSION"));
}
