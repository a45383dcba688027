//! Links the skiff executable as position-dependent (non-PIE).
//!
//! Why: every running container has a monitor, a re-exec of this binary. In a PIE the
//! dynamic loader must relocate hundreds of kilobytes of vtables and static tables at
//! start-up, which turns them into private dirty (anonymous) memory in every monitor.
//! Linked at a fixed address those pages stay clean and shared with the page cache, which
//! keeps a monitor within conmon's footprint. The libraries (libc) are still randomised.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
