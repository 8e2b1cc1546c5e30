//! Exports nanochat-kernels' compiler-runtime shims from the examples, so cubecl's CPU JIT finds
//! them (nanochat-kernels/src/libcalls.rs; `__truncsfbf2` is missing on hosts without AVX-512).
fn main() {
    println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol=__truncsfbf2");
}
