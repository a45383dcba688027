//! Slices of the subordinate ID range handed to `--userns=auto` containers, recorded so
//! two such containers never share IDs. A slice is freed with its container (trigger).

use rusqlite::params;

use super::images::db_err;
use super::{StorageError, Store};

/// Schema version 3: the allocation table and the trigger that frees a container's
/// slice when its record goes.
pub const MIGRATION_3: &str = "BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS userns_auto (
    container_id TEXT PRIMARY KEY,
    start INTEGER NOT NULL,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS userns_auto_release AFTER DELETE ON containers
BEGIN DELETE FROM userns_auto WHERE container_id = OLD.id; END;
PRAGMA user_version=3; COMMIT;";

/// A create that died between allocating and recording its container leaves a row
/// with no container; after this long it is free again.
const ORPHAN_SECS: i64 = 600;

/// No room left for another slice.
pub struct Full {
    pub used: u64,
}

impl Store {
    /// Allots `size` IDs in `[1, end)` of the intermediate ID space to `container_id`
    /// (first fit), atomically with respect to other creates.
    pub fn allocate_auto_range(
        &mut self,
        container_id: &str,
        size: u32,
        end: u64,
    ) -> Result<Result<u32, Full>, StorageError> {
        let now = super::now();
        self.write(|tx| {
            tx.execute(
                "DELETE FROM userns_auto WHERE created < ?1
                 AND container_id NOT IN (SELECT id FROM containers)",
                params![now - ORPHAN_SECS],
            )
            .map_err(|e| db_err(tx, e))?;
            let used: Vec<(i64, i64)> = {
                let mut st = tx
                    .prepare("SELECT start, size FROM userns_auto ORDER BY start")
                    .map_err(|e| db_err(tx, e))?;
                let v = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(|e| db_err(tx, e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| db_err(tx, e))?;
                v
            };
            let mut at: i64 = 1;
            for (s, n) in &used {
                if at + size as i64 <= *s {
                    break;
                }
                at = at.max(s + n);
            }
            if at + size as i64 > end as i64 {
                return Ok(Err(Full {
                    used: used.iter().map(|(_, n)| *n as u64).sum(),
                }));
            }
            tx.execute(
                "INSERT INTO userns_auto (container_id, start, size, created) VALUES (?1,?2,?3,?4)",
                params![container_id, at, size as i64, now],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(Ok(at as u32))
        })
    }

    /// Frees a slice whose container was never recorded (a failed create).
    pub fn release_auto_range(&mut self, container_id: &str) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM userns_auto WHERE container_id = ?1",
                params![container_id],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }
}
