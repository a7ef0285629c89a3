//! Imports asked for over the control socket (`apos-hub import` while the
//! hub runs, crate::control) and the answer both CLI paths print.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ImportError, Job, Profile, ProgressView, Started};
use crate::control::Request;
use crate::store::Store;
use crate::store::imported::{ImportRecord, Rejection};

/// Rejections an answer lists (the API pages through all of them).
pub const LISTED_REJECTIONS: u64 = 50;

/// What the CLI reads: the import, its progress while it runs, and its
/// first rejections once it is done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub id: String,
    pub already_imported: bool,
    pub record: Option<ImportRecord>,
    pub progress: Option<ProgressView>,
    pub rejections: Vec<Rejection>,
}

/// The answer about import `id` from the database and this process.
pub fn status_of(store: &Store, id: &str, already: bool) -> Result<Answer, ImportError> {
    let record = store.import_record(id)?;
    let progress = super::progress(id);
    let finished = record.as_ref().is_some_and(|r| r.status != "running");
    let rejections = if finished {
        store.import_rejections(id, 0, LISTED_REJECTIONS)?
    } else {
        Vec::new()
    };
    Ok(Answer {
        id: id.to_owned(),
        already_imported: already,
        record,
        progress,
        rejections,
    })
}

/// Answer an import request on a connection of the running hub. `db` is
/// the fleet database (the staging files go beside it).
pub fn control_answer(req: &Request, store: &Store, db: &Path) -> Result<String, ImportError> {
    let answer = match req {
        Request::ImportStart {
            file,
            profile_name,
            profile,
            save_profile,
        } => {
            let profile: Profile = match (profile, profile_name) {
                (Some(json), _) => serde_json::from_str(json)
                    .map_err(|e| ImportError::Profile(format!("the mapping: {e}")))?,
                (None, Some(n)) => {
                    let json = store
                        .import_profile(n)?
                        .ok_or_else(|| ImportError::Profile(format!("no saved profile {n:?}")))?;
                    serde_json::from_str(&json)
                        .map_err(|e| ImportError::Profile(format!("saved profile {n:?}: {e}")))?
                }
                (None, None) => {
                    return Err(ImportError::Profile(
                        "give a profile name or a mapping".into(),
                    ));
                }
            };
            profile.check()?;
            if *save_profile && let Some(n) = profile_name {
                let json = serde_json::to_string(&profile).unwrap_or_default();
                store.put_import_profile(n, &json, super::now_ms())?;
            }
            let path = Path::new(file);
            std::fs::File::open(path).map_err(|e| {
                ImportError::Unreadable(format!(
                    "the running hub cannot read {file}: {e} (it reads the file as its own user; \
                     make the file readable to it, or upload it through the web API)"
                ))
            })?;
            let job = Job {
                file: path.to_path_buf(),
                file_name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| file.clone()),
                profile,
                profile_name: profile_name.clone(),
                by_user: Some("cli".into()),
                remove_file: false,
                work_dir: work_dir(db),
            };
            let pool = store.another()?.read_pool()?;
            match super::start(pool, job)? {
                Started::Already(r) => Answer {
                    id: r.id.clone(),
                    already_imported: true,
                    record: Some(*r),
                    progress: None,
                    rejections: Vec::new(),
                },
                Started::Running { id } => status_of(store, &id, false)?,
            }
        }
        Request::ImportStatus { id } => status_of(store, id, false)?,
        _ => return Err(ImportError::Unknown("not an import request".into())),
    };
    serde_json::to_string(&answer).map_err(|e| ImportError::Unreadable(e.to_string()))
}

/// Where an import's staging files go: `imports/` beside the database.
pub fn work_dir(db: &Path) -> std::path::PathBuf {
    db.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("imports")
}
