//! Rebuild the kernel programs when the `bpf-linker` binary changes.
//!
//! Building this crate depends on the `bpf-linker` executable, which cargo cannot track as a
//! dependency; keying the build on its path (and so its mtime) is the usual approximation.

fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => {
            println!("cargo:warning=bpf-linker not found on PATH ({err}); run `cargo xtask setup`");
        }
    }
}
