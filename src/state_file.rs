//! The membership state file (`[admin] state_file`): the ring's members as the admin API,
//! reloads and discovery left them, so a restart does not shrink the ring back to the config
//! file and send a share of keys to cold caches.
//!
//! Written atomically (a temp file in the same directory, fsync, rename, fsync of the
//! directory) before a change is published, so the file never holds half a membership and
//! never lags behind what the proxy routes with. JSON, one object:
//! `{"format": 1, "backends": [{"id", "address", "weight", "draining", "origin", "ramp"}]}`,
//! where `origin` is `"static"` or `"dns:<name>"` for members found by discovery, and `ramp`
//! (only while one is in progress) is `{"direction": "up" | "down", "duration_ms",
//! "done_ms"}`: a warm-up or a drain with a ramp resumes where it stood, so a restart neither
//! gives a half-warm joiner its whole share at once nor forgets a drain under way.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{validate_address, validate_id, validate_weight};

/// The one format this build writes and reads.
const FORMAT: u32 = 1;

/// One member as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedBackend {
    /// Ring identity.
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// Units of vnodes.
    pub weight: u32,
    /// Drained by an operator.
    #[serde(default)]
    pub draining: bool,
    /// `"static"` (config or admin API) or `"dns:<name>"` (discovery).
    #[serde(default = "static_origin")]
    pub origin: String,
    /// A warm-up or ramp-down under way when saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<SavedRamp>,
}

/// A ramp as saved: its length and how far it had gone. Time the proxy is down does not
/// count (no traffic warms a joiner then), so a ramp resumes from `done_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedRamp {
    /// Points entering (`up`, a warm-up) or leaving (`down`, a drain with a ramp).
    pub direction: SavedDirection,
    /// The whole ramp.
    pub duration_ms: u64,
    /// Done when saved, at most `duration_ms`.
    pub done_ms: u64,
}

/// Which way a saved ramp goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavedDirection {
    /// A warm-up.
    Up,
    /// A drain with a ramp.
    Down,
}

fn static_origin() -> String {
    "static".into()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: u32,
    backends: Vec<SavedBackend>,
}

/// Why the state file cannot be used; always names the file.
#[derive(Debug, thiserror::Error)]
#[error("state file {path}: {reason}")]
pub struct StateError {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Where the membership is saved.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file at `path` (nothing is read or written yet).
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, reason: impl Into<String>) -> StateError {
        StateError {
            path: self.path.display().to_string(),
            reason: reason.into(),
        }
    }

    /// The saved membership, `None` if the file does not exist. A file that exists but cannot
    /// be read or is not a valid membership is an error: never a silent fallback to a smaller
    /// ring.
    pub fn load(&self) -> Result<Option<Vec<SavedBackend>>, StateError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(format!("cannot read: {e}"))),
        };
        let file: File =
            serde_json::from_slice(&text).map_err(|e| self.error(format!("corrupt: {e}")))?;
        if file.format != FORMAT {
            return Err(self.error(format!(
                "format {} is not supported (this build reads format {FORMAT})",
                file.format
            )));
        }
        for (i, b) in file.backends.iter().enumerate() {
            let bad = |m: String| self.error(format!("backends[{i}]: {m}"));
            validate_id(&b.id).map_err(|m| bad(format!("id: {m}")))?;
            validate_address(&b.address).map_err(|m| bad(format!("address: {m}")))?;
            validate_weight(i64::from(b.weight)).map_err(|m| bad(format!("weight: {m}")))?;
            if file.backends[..i].iter().any(|x| x.id == b.id) {
                return Err(bad(format!("duplicate id {:?}", b.id)));
            }
            if let Some(r) = b.ramp {
                if r.done_ms > r.duration_ms {
                    return Err(bad(format!(
                        "ramp: done_ms {} is over duration_ms {}",
                        r.done_ms, r.duration_ms
                    )));
                }
            }
        }
        Ok(Some(file.backends))
    }

    /// Replaces the file with `backends`, atomically and durably.
    pub fn save(&self, backends: Vec<SavedBackend>) -> Result<(), StateError> {
        let mut text = serde_json::to_vec_pretty(&File {
            format: FORMAT,
            backends,
        })
        .map_err(|e| self.error(e.to_string()))?;
        text.push(b'\n');
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // The rename itself is durable only once the directory is synced.
            std::fs::File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.error(format!("cannot write: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ringproxy-state-{}-{tag}.json", std::process::id()))
    }

    fn saved(id: &str) -> SavedBackend {
        SavedBackend {
            id: id.into(),
            address: "127.0.0.1:1".into(),
            weight: 2,
            draining: id == "b",
            origin: static_origin(),
            ramp: None,
        }
    }

    #[test]
    fn ramps_round_trip_and_files_without_them_still_load() {
        let path = temp("ramp");
        let f = StateFile::new(&path);
        let ramping = SavedBackend {
            ramp: Some(SavedRamp {
                direction: SavedDirection::Down,
                duration_ms: 60_000,
                done_ms: 12_345,
            }),
            ..saved("c")
        };
        f.save(vec![saved("a"), ramping.clone()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"direction\": \"down\""), "{text}");
        assert_eq!(
            text.matches("\"ramp\"").count(),
            1,
            "only while one runs: {text}"
        );
        assert_eq!(f.load().unwrap(), Some(vec![saved("a"), ramping]));
        // As written before ramps were saved.
        std::fs::write(
            &path,
            "{\"format\": 1, \"backends\": [{\"id\": \"a\", \"address\": \"127.0.0.1:1\", \"weight\": 2}]}",
        )
        .unwrap();
        assert_eq!(f.load().unwrap(), Some(vec![saved("a")]));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn round_trip_and_missing_file() {
        let path = temp("rt");
        let f = StateFile::new(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(f.load().unwrap(), None);
        f.save(vec![saved("a"), saved("b")]).unwrap();
        assert_eq!(f.load().unwrap(), Some(vec![saved("a"), saved("b")]));
        f.save(vec![saved("a")]).unwrap();
        assert_eq!(f.load().unwrap(), Some(vec![saved("a")]));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn corrupt_or_invalid_files_are_errors_naming_the_file() {
        let path = temp("bad");
        for text in [
            "{",
            "{\"format\": 2, \"backends\": []}",
            "{\"format\": 1, \"backends\": [{\"id\": \"a\", \"address\": \"nope\", \"weight\": 1}]}",
            "{\"format\": 1, \"backends\": [{\"id\": \"a\", \"address\": \"h:1\", \"weight\": 0}]}",
            "{\"format\": 1, \"backends\": [{\"id\": \"a\", \"address\": \"h:1\", \"weight\": 1}, {\"id\": \"a\", \"address\": \"h:2\", \"weight\": 1}]}",
            "{\"format\": 1, \"backends\": [{\"id\": \"a\", \"address\": \"h:1\", \"weight\": 1, \"ramp\": {\"direction\": \"up\", \"duration_ms\": 10, \"done_ms\": 11}}]}",
            "{\"format\": 1, \"backends\": [{\"id\": \"a\", \"address\": \"h:1\", \"weight\": 1, \"ramp\": {\"direction\": \"sideways\", \"duration_ms\": 10, \"done_ms\": 1}}]}",
        ] {
            std::fs::write(&path, text).unwrap();
            let e = StateFile::new(&path).load().unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
