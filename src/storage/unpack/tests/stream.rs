//! The stream around the entries: compression, diff_id, limits, corruption.

use std::fs;
use std::io::Write;

use super::super::{unpack_layer, Compression, UnpackError, UnpackOptions};
use super::{sha256_hex, Scratch, Tar};

fn sample() -> Vec<u8> {
    let mut tar = Tar::new()
        .dir("etc", 0o755)
        .file("etc/hostname", b"skiff\n", 0o644)
        .file("big", &vec![7u8; 300_000], 0o644)
        .build();
    // Blocking-factor padding after the end-of-archive blocks, as GNU tar
    // writes it: it belongs to the diff_id too.
    tar.resize(tar.len().div_ceil(10240) * 10240 + 10240, 0);
    tar
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn diff_id_matches_raw_tar_for_every_compression() {
    let tar = sample();
    let want = sha256_hex(&tar);
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let gz = gzip(&tar);
    for (c, blob) in [
        (Compression::None, tar.clone()),
        (Compression::Gzip, gz),
        (Compression::Zstd, zst),
    ] {
        assert_eq!(Compression::sniff(&blob), c);
        let s = Scratch::new();
        let sum = unpack_layer(&blob[..], c, &s.dest, &UnpackOptions::default()).unwrap();
        assert_eq!(sum.diff_id, want, "{c:?}");
        assert_eq!(sum.uncompressed_size, tar.len() as u64);
        assert_eq!(fs::read(s.p("etc/hostname")).unwrap(), b"skiff\n");
        assert_eq!(fs::read(s.p("big")).unwrap().len(), 300_000);
    }
}

#[test]
fn media_types_map_to_compression() {
    let m = Compression::from_media_type;
    assert_eq!(
        m("application/vnd.oci.image.layer.v1.tar+gzip"),
        Some(Compression::Gzip)
    );
    assert_eq!(
        m("application/vnd.oci.image.layer.v1.tar+zstd"),
        Some(Compression::Zstd)
    );
    assert_eq!(
        m("application/vnd.oci.image.layer.v1.tar"),
        Some(Compression::None)
    );
    assert_eq!(
        m("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        Some(Compression::Gzip)
    );
    assert_eq!(m("application/vnd.oci.image.config.v1+json"), None);
}

#[test]
fn corrupt_gzip_is_a_decompress_error() {
    let mut gz = gzip(&sample());
    let mid = gz.len() / 2;
    for b in &mut gz[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let s = Scratch::new();
    let err = unpack_layer(
        &gz[..],
        Compression::Gzip,
        &s.dest,
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, UnpackError::Decompress { .. }), "{err:?}");
    assert!(err.to_string().contains("gzip"), "{err}");
}

#[test]
fn truncated_gzip_is_an_error() {
    let gz = gzip(&sample());
    let s = Scratch::new();
    let cut = &gz[..gz.len() / 2];
    let err = unpack_layer(cut, Compression::Gzip, &s.dest, &UnpackOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::Decompress { .. } | UnpackError::Tar { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn not_gzip_at_all_is_a_decompress_error() {
    let s = Scratch::new();
    let err = unpack_layer(
        &b"plain text, not gzip"[..],
        Compression::Gzip,
        &s.dest,
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, UnpackError::Decompress { offset: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn truncated_tar_names_the_entry() {
    let tar = Tar::new().file("victim", &vec![1u8; 5000], 0o644).build();
    let s = Scratch::new();
    let err = s.unpack(&tar[..512 + 1000]).unwrap_err();
    match &err {
        UnpackError::Tar { entry, offset, .. } => {
            assert_eq!(entry.as_deref(), Some("victim"));
            assert_eq!(*offset, 0);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("victim"), "{err}");
}

#[test]
fn garbage_header_is_a_tar_error() {
    let mut tar = Tar::new()
        .file("a", b"x", 0o644)
        .file("b", b"y", 0o644)
        .build();
    tar[1024 + 148] ^= 0xff; // checksum of the second header
    let s = Scratch::new();
    let err = s.unpack(&tar).unwrap_err();
    match &err {
        UnpackError::Tar { entry, .. } => assert_eq!(entry.as_deref(), Some("after a")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn size_limit_stops_a_bomb() {
    let tar = Tar::new().file("bomb", &vec![0u8; 1 << 20], 0o644).build();
    let gz = gzip(&tar);
    assert!(gz.len() < 64 << 10);
    let s = Scratch::new();
    let opts = UnpackOptions {
        max_uncompressed: Some(256 << 10),
        ..UnpackOptions::default()
    };
    let err = unpack_layer(&gz[..], Compression::Gzip, &s.dest, &opts).unwrap_err();
    assert!(
        matches!(err, UnpackError::TooLarge { limit } if limit == 256 << 10),
        "{err:?}"
    );
    // Exactly at the limit is fine.
    let s = Scratch::new();
    let opts = UnpackOptions {
        max_uncompressed: Some(tar.len() as u64),
        ..UnpackOptions::default()
    };
    unpack_layer(&gz[..], Compression::Gzip, &s.dest, &opts).unwrap();
}

#[test]
fn many_files_reuse_the_parent_cache() {
    let mut t = Tar::new();
    for d in 0..20 {
        t = t.dir(&format!("d{d}"), 0o755);
        for f in 0..100 {
            t = t.file(&format!("d{d}/f{f}"), b"x", 0o644);
        }
    }
    let s = Scratch::new();
    s.unpack(&t.build()).unwrap();
    assert_eq!(fs::read_dir(s.p("d19")).unwrap().count(), 100);
}

/// One million tiny files (1000 dirs of 1000 empty files, a 512 MB tar of headers):
/// the unpacker's memory does not grow per entry and every file lands.
#[test]
fn one_million_tiny_files() {
    let mut t = Tar::new();
    for d in 0..1000 {
        t = t.dir(&format!("d{d}"), 0o755);
        for f in 0..1000 {
            t = t.file(&format!("d{d}/{f}"), b"", 0o644);
        }
    }
    let tar = t.build();
    let s = Scratch::new();
    let sum = unpack_layer(
        &tar[..],
        Compression::None,
        &s.dest,
        &UnpackOptions::default(),
    )
    .unwrap();
    assert_eq!(sum.uncompressed_size, tar.len() as u64);
    drop(tar);
    let files: usize = (0..1000)
        .map(|d| fs::read_dir(s.dest.join(format!("d{d}"))).unwrap().count())
        .sum();
    assert_eq!(files, 1_000_000);
}
