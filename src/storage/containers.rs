//! Container records. The configuration is stored as an opaque JSON document owned by the
//! runtime; this module keeps names unique and states consistent.

use rusqlite::{params, OptionalExtension};

use super::images::db_err;
use super::{StorageError, Store};

/// Lifecycle states, named as podman shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    /// Running but frozen by `pause` (cgroup freezer).
    Paused,
    Exited,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Exited => "exited",
        }
    }
    fn parse(s: &str) -> State {
        match s {
            "running" => State::Running,
            "paused" => State::Paused,
            "exited" => State::Exited,
            _ => State::Created,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub image_name: String,
    pub command: Vec<String>,
    pub created: i64,
    pub state: State,
    pub exit_code: Option<i32>,
    pub started: Option<i64>,
    pub finished: Option<i64>,
    pub monitor_pid: Option<i32>,
    pub monitor_start: Option<u64>,
    pub pid: Option<i32>,
    /// The runtime's JSON description of how to run the container.
    pub config: String,
    /// How often the restart policy restarted it.
    pub restarts: i64,
    /// `stop`/`kill` asked it to stop: the restart policy must not bring it back.
    pub stop_requested: bool,
}

const COLS: &str = "id, name, image_id, image_name, command, created, state, exit_code, started, finished, monitor_pid, monitor_start, pid, config, restarts, stop_requested";

fn row(r: &rusqlite::Row) -> rusqlite::Result<ContainerRecord> {
    let cmd: String = r.get(4)?;
    let state: String = r.get(6)?;
    let ms: Option<i64> = r.get(11)?;
    Ok(ContainerRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        image_id: r.get(2)?,
        image_name: r.get(3)?,
        command: serde_json::from_str(&cmd).unwrap_or_default(),
        created: r.get(5)?,
        state: State::parse(&state),
        exit_code: r.get(7)?,
        started: r.get(8)?,
        finished: r.get(9)?,
        monitor_pid: r.get(10)?,
        monitor_start: ms.map(|v| v as u64),
        pid: r.get(12)?,
        config: r.get(13)?,
        restarts: r.get(14)?,
        stop_requested: r.get::<_, i64>(15)? != 0,
    })
}

impl Store {
    /// Inserts a new container; fails with NameInUse when the name is taken.
    pub fn insert_container(&mut self, c: &ContainerRecord) -> Result<(), StorageError> {
        let cmd = serde_json::to_string(&c.command).unwrap_or_else(|_| "[]".into());
        self.write(|tx| {
            let existing: Option<String> = tx
                .query_row("SELECT id FROM containers WHERE name = ?1", [&c.name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| db_err(tx, e))?;
            if let Some(id) = existing {
                return Err(StorageError::NameInUse {
                    name: c.name.clone(),
                    id,
                });
            }
            // Checked in the same transaction as the insert: an `rmi` that won the race
            // has removed the image (and may collect its layers), so the container
            // must not be created on top of them.
            let image: Option<String> = tx
                .query_row("SELECT id FROM images WHERE id = ?1", [&c.image_id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| db_err(tx, e))?;
            if image.is_none() {
                return Err(StorageError::ImageNotKnown(format!(
                    "{} (removed while the container was being created)",
                    c.image_name
                )));
            }
            tx.execute(
                &format!("INSERT INTO containers ({COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"),
                params![
                    c.id,
                    c.name,
                    c.image_id,
                    c.image_name,
                    cmd,
                    c.created,
                    c.state.as_str(),
                    c.exit_code,
                    c.started,
                    c.finished,
                    c.monitor_pid,
                    c.monitor_start.map(|v| v as i64),
                    c.pid,
                    c.config,
                    c.restarts,
                    c.stop_requested as i64
                ],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }

    /// Looks a container up by exact name, full ID, or unique ID prefix.
    pub fn find_container(&self, key: &str) -> Result<ContainerRecord, StorageError> {
        let by_name = self
            .conn
            .query_row(
                &format!("SELECT {COLS} FROM containers WHERE name = ?1 OR id = ?1"),
                [key],
                row,
            )
            .optional()
            .map_err(self.err())?;
        if let Some(c) = by_name {
            return Ok(c);
        }
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut st = self
                .conn
                .prepare(&format!(
                    "SELECT {COLS} FROM containers WHERE id >= ?1 AND id < ?2 LIMIT 2"
                ))
                .map_err(self.err())?;
            let upper = format!("{key}\u{7f}");
            let v: Vec<ContainerRecord> = st
                .query_map(params![key, upper], row)
                .map_err(self.err())?
                .collect::<Result<_, _>>()
                .map_err(self.err())?;
            match v.len() {
                1 => return Ok(v.into_iter().next().expect("one element")),
                0 => {}
                _ => return Err(StorageError::Ambiguous(key.to_string())),
            }
        }
        Err(StorageError::NoSuchContainer(key.to_string()))
    }

    /// All containers, newest first.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>, StorageError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {COLS} FROM containers ORDER BY created DESC, id"
            ))
            .map_err(self.err())?;
        let v = st
            .query_map([], row)
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        Ok(v)
    }

    /// Marks a container running under a monitor.
    pub fn set_running(
        &mut self,
        id: &str,
        monitor_pid: i32,
        monitor_start: u64,
        pid: i32,
    ) -> Result<(), StorageError> {
        let now = super::now();
        self.write(|tx| {
            tx.execute(
                "UPDATE containers SET state='running', started=?2, finished=NULL, exit_code=NULL, monitor_pid=?3, monitor_start=?4, pid=?5, stop_requested=0 WHERE id=?1",
                params![id, now, monitor_pid, monitor_start as i64, pid],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }

    /// Records an exit (code, time) and forgets the monitor.
    pub fn set_exited(&mut self, id: &str, code: i32, finished: i64) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE containers SET state='exited', exit_code=?2, finished=?3, monitor_pid=NULL, monitor_start=NULL, pid=NULL WHERE id=?1",
                params![id, code, finished],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }

    pub fn delete_container(&mut self, id: &str) -> Result<(), StorageError> {
        // Its addresses go with it (trigger); the networks' members files follow.
        let networks = self.network_names_of(id);
        self.write(|tx| {
            tx.execute("DELETE FROM containers WHERE id = ?1", [id])
                .map_err(|e| db_err(tx, e))?;
            Ok(())
        })?;
        self.sync_member_files_by_name(&networks);
        Ok(())
    }

    /// Marks (or clears) a user's request to stop, which the restart policy honours.
    pub fn set_stop_requested(&mut self, id: &str, requested: bool) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE containers SET stop_requested=?2 WHERE id=?1",
                params![id, requested as i64],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }

    /// Counts one restart by the restart policy.
    pub fn add_restart(&mut self, id: &str) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE containers SET restarts=restarts+1 WHERE id=?1",
                [id],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }

    /// Marks a running container paused, or a paused one running again. Only changes a
    /// record in the expected state, so a container that exited meanwhile stays exited;
    /// returns whether the record changed.
    pub fn set_paused(&mut self, id: &str, paused: bool) -> Result<bool, StorageError> {
        let (from, to) = if paused {
            ("running", "paused")
        } else {
            ("paused", "running")
        };
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE containers SET state=?3 WHERE id=?1 AND state=?2",
                    params![id, from, to],
                )
                .map_err(|e| db_err(tx, e))?;
            Ok(n == 1)
        })
    }

    pub fn rename_container(&mut self, id: &str, name: &str) -> Result<(), StorageError> {
        self.write(|tx| {
            let existing: Option<String> = tx
                .query_row("SELECT id FROM containers WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| db_err(tx, e))?;
            if let Some(other) = existing {
                return Err(StorageError::NameInUse {
                    name: name.to_string(),
                    id: other,
                });
            }
            tx.execute(
                "UPDATE containers SET name=?2 WHERE id=?1",
                params![id, name],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }
}
