//! The skiff executable: everything lives in the library (src/lib.rs).

fn main() {
    skiff::main()
}
