//! Image records and names. An image is identified by its config digest (as podman and
//! docker do); names (tags) point at images and move when a newer image takes the name.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{StorageError, Store};

/// One layer of an image as the manifest and config describe it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRef {
    /// Digest of the compressed blob, as pulled.
    pub digest: String,
    /// Digest of the uncompressed tar (the config's rootfs.diff_ids entry).
    pub diff_id: String,
    pub media_type: String,
    /// Compressed size in bytes.
    pub size: i64,
}

#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// Config digest hex, without `sha256:`.
    pub id: String,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    /// The `created` time from the image config, RFC 3339.
    pub created: Option<String>,
    pub pulled: i64,
    /// Sum of the uncompressed layer sizes.
    pub size: i64,
    pub layers: Vec<LayerRef>,
    pub os: String,
    pub arch: String,
    /// Fully qualified names (`registry/repo:tag`) pointing at this image.
    pub names: Vec<String>,
}

impl ImageRecord {
    pub fn config_digest(&self) -> String {
        format!("sha256:{}", self.id)
    }
}

const COLS: &str =
    "id, manifest_digest, manifest_media_type, created, pulled, size, layers, os, arch";

fn row_to_image(r: &rusqlite::Row) -> rusqlite::Result<(ImageRecord, String)> {
    let layers: String = r.get(6)?;
    Ok((
        ImageRecord {
            id: r.get(0)?,
            manifest_digest: r.get(1)?,
            manifest_media_type: r.get(2)?,
            created: r.get(3)?,
            pulled: r.get(4)?,
            size: r.get(5)?,
            layers: Vec::new(),
            os: r.get(7)?,
            arch: r.get(8)?,
            names: Vec::new(),
        },
        layers,
    ))
}

impl Store {
    fn finish_image(
        &self,
        (mut img, layers): (ImageRecord, String),
    ) -> Result<ImageRecord, StorageError> {
        img.layers = serde_json::from_str(&layers).map_err(|e| StorageError::Corrupt {
            what: format!("image {}", img.id),
            detail: e.to_string(),
        })?;
        let mut st = self
            .conn
            .prepare_cached("SELECT name FROM tags WHERE image_id = ?1 ORDER BY name")
            .map_err(self.err())?;
        img.names = st
            .query_map([&img.id], |r| r.get(0))
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        Ok(img)
    }

    /// Records an image and points `name` at it (taking the name from any older image).
    pub fn put_image(&mut self, img: &ImageRecord, name: Option<&str>) -> Result<(), StorageError> {
        let layers = serde_json::to_string(&img.layers).map_err(|e| StorageError::Corrupt {
            what: format!("image {}", img.id),
            detail: e.to_string(),
        })?;
        self.write(|tx| {
            tx.execute(
                &format!(
                    "INSERT OR IGNORE INTO images ({COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"
                ),
                params![
                    img.id,
                    img.manifest_digest,
                    img.manifest_media_type,
                    img.created,
                    img.pulled,
                    img.size,
                    layers,
                    img.os,
                    img.arch
                ],
            )
            .map_err(|e| db_err(tx, e))?;
            if let Some(n) = name {
                tx.execute(
                    "INSERT OR REPLACE INTO tags (name, image_id) VALUES (?1, ?2)",
                    params![n, img.id],
                )
                .map_err(|e| db_err(tx, e))?;
            }
            Ok(())
        })
    }

    pub fn image_by_id(&self, id: &str) -> Result<Option<ImageRecord>, StorageError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {COLS} FROM images WHERE id = ?1"),
                [id],
                row_to_image,
            )
            .optional()
            .map_err(self.err())?;
        row.map(|r| self.finish_image(r)).transpose()
    }

    /// All images, newest pull first.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StorageError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {COLS} FROM images ORDER BY pulled DESC, id"
            ))
            .map_err(self.err())?;
        let rows: Vec<_> = st
            .query_map([], row_to_image)
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        rows.into_iter().map(|r| self.finish_image(r)).collect()
    }

    /// Finds an image the way podman does: by full ID or ID prefix, by one of the fully
    /// qualified `candidates` the caller resolved from a short name, or, for a short name,
    /// by any stored name ending in `/<input>`.
    pub fn find_image(
        &self,
        input: &str,
        candidates: &[String],
    ) -> Result<ImageRecord, StorageError> {
        let hexpart = input.strip_prefix("sha256:").unwrap_or(input);
        let looks_like_id = hexpart.len() >= 3
            && hexpart.len() <= 64
            && hexpart
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        for c in candidates {
            if let Some(id) = self.tag_target(c)? {
                if let Some(img) = self.image_by_id(&id)? {
                    return Ok(img);
                }
            }
        }
        if looks_like_id {
            let mut st = self
                .conn
                .prepare("SELECT id FROM images WHERE id >= ?1 AND id < ?2 LIMIT 2")
                .map_err(self.err())?;
            let upper = format!("{hexpart}\u{7f}");
            let ids: Vec<String> = st
                .query_map(params![hexpart, upper], |r| r.get(0))
                .map_err(self.err())?
                .collect::<Result<_, _>>()
                .map_err(self.err())?;
            match ids.len() {
                1 => {
                    if let Some(img) = self.image_by_id(&ids[0])? {
                        return Ok(img);
                    }
                }
                0 => {}
                _ => return Err(StorageError::Ambiguous(input.to_string())),
            }
        }
        if !input.contains('/') || !input.split('/').next().unwrap_or("").contains(['.', ':']) {
            let with_tag = if input.contains(':') || input.contains('@') {
                input.to_string()
            } else {
                format!("{input}:latest")
            };
            let suffix = format!("/{with_tag}");
            let mut st = self
                .conn
                .prepare("SELECT t.name, t.image_id FROM tags t JOIN images i ON i.id = t.image_id ORDER BY i.pulled DESC")
                .map_err(self.err())?;
            let rows: Vec<(String, String)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(self.err())?
                .collect::<Result<_, _>>()
                .map_err(self.err())?;
            if let Some((_, id)) = rows.iter().find(|(n, _)| n.ends_with(&suffix)) {
                if let Some(img) = self.image_by_id(id)? {
                    return Ok(img);
                }
            }
        }
        Err(StorageError::ImageNotKnown(input.to_string()))
    }

    pub fn tag_target(&self, name: &str) -> Result<Option<String>, StorageError> {
        self.conn
            .query_row("SELECT image_id FROM tags WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())
    }

    pub fn tag_image(&mut self, id: &str, name: &str) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO tags (name, image_id) VALUES (?1, ?2)",
                params![name, id],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }

    /// Removes one name; returns false when the name did not exist.
    pub fn untag(&mut self, name: &str) -> Result<bool, StorageError> {
        self.write(|tx| {
            let n = tx
                .execute("DELETE FROM tags WHERE name = ?1", [name])
                .map_err(|e| db_err(tx, e))?;
            Ok(n > 0)
        })
    }

    /// Deletes an image record (and its names) unless a container uses it. Layer
    /// directories are reclaimed separately by `prune_layers`.
    pub fn remove_image(&mut self, id: &str, force: bool) -> Result<(), StorageError> {
        self.write(|tx| {
            if !force {
                let user: Option<String> = tx
                    .query_row(
                        "SELECT name FROM containers WHERE image_id = ?1 LIMIT 1",
                        [id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| db_err(tx, e))?;
                if let Some(c) = user {
                    return Err(StorageError::ImageInUse {
                        image: id[..12.min(id.len())].to_string(),
                        container: c,
                    });
                }
            }
            tx.execute("DELETE FROM tags WHERE image_id = ?1", [id])
                .map_err(|e| db_err(tx, e))?;
            tx.execute("DELETE FROM images WHERE id = ?1", [id])
                .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }
}

pub(super) fn db_err(tx: &rusqlite::Transaction, source: rusqlite::Error) -> StorageError {
    StorageError::Db {
        path: tx.path().map(Into::into).unwrap_or_default(),
        source,
    }
}
