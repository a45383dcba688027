//! `alias docker=skiff`: what docker/podman scripts rely on, checked through the real
//! binary (flags, exit codes, formats).

use crate::images;

/// Push the fixtures to `SKIFF_TEST_REGISTRY` (for comparing by hand with podman).
#[test]
#[ignore]
fn playground_push_fixtures() {
    let fx = images::fixtures();
    eprintln!("busybox: {}", fx.busybox.reference);
}
