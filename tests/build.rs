//! Exports nanochat-kernels' compiler-runtime shims from this package's binaries and tests, so
//! cubecl's CPU JIT finds them (nanochat-kernels/src/libcalls.rs).
fn main() {
    println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol=__truncsfbf2");
}
