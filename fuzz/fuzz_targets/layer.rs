#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

/// One scratch dir per fuzzing process, on a tmpfs when there is one.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("SKIFF_FUZZ_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/shm"));
        let dir = base.join(format!("skiff-fuzz-layer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the fuzz scratch dir");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff::fuzzing::layer(data, scratch()));
