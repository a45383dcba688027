//! Entry points for the fuzz targets in fuzz/: each takes arbitrary bytes, runs one of
//! the parsers that see input from outside (image references, manifests and configs,
//! layer tars, the -p/-v/--mount flags) and panics only on a broken invariant. Hidden
//! from the docs; nothing else calls them.
#![doc(hidden)]

use std::path::Path;

/// Image references: parsing must not panic, and whatever parses must print back to
/// a string that parses to the same reference.
pub fn reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    use crate::image::reference::{parse_normalized, parse_short, ShortOrFull};
    if let Ok(r) = parse_normalized(s) {
        let again = parse_normalized(&r.to_string())
            .unwrap_or_else(|e| panic!("{s:?} parsed as {r} which does not parse: {e}"));
        assert_eq!(again, r, "{s:?} does not round-trip");
    }
    if let Ok(ShortOrFull::Short(n)) = parse_short(s) {
        let printed = n.to_string();
        assert!(
            matches!(parse_short(&printed), Ok(ShortOrFull::Short(_))),
            "{s:?}: short name {printed} no longer parses as short"
        );
    }
}

/// What a pull does with a registry's manifest, index and config bytes.
pub fn manifest(data: &[u8]) {
    crate::image::pull::parse_untrusted(data);
}

/// Unpacks a layer (any compression, sniffed) into a fresh directory next to a
/// sentinel file; nothing but the layer directory may change. `scratch` must be an
/// empty directory the caller owns (a tmpfs keeps it fast).
pub fn layer(data: &[u8], scratch: &Path) {
    use crate::storage::unpack::{unpack_layer, Compression, UnpackOptions};
    let dest = scratch.join("layer");
    let sentinel = scratch.join("sentinel");
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::create_dir(&dest).expect("create the layer dir");
    std::fs::write(&sentinel, b"untouched").expect("write the sentinel");
    let opts = UnpackOptions {
        max_uncompressed: Some(64 << 20),
        ..UnpackOptions::default()
    };
    let _ = unpack_layer(data, Compression::sniff(data), &dest, &opts);
    let mut names: Vec<String> = std::fs::read_dir(scratch)
        .expect("read the scratch dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["layer", "sentinel"],
        "the unpack wrote outside its dir"
    );
    assert_eq!(
        std::fs::read(&sentinel).expect("read the sentinel"),
        b"untouched",
        "the unpack changed the sentinel"
    );
    let _ = std::fs::remove_dir_all(&dest);
}

/// The `-p`, `-v` and `--mount` parsers.
pub fn flags(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reqs) = crate::network::portspec::parse(s) {
        for r in reqs {
            assert!(r.container_port > 0, "{s:?}: container port 0 accepted");
        }
    }
    let _ = crate::runtime::spec_mounts::parse_volume(s);
    let _ = crate::runtime::mount_flag::parse_mount(s);
}
