//! Administration: grid import from CSV, people, enrolment codes, seeding records through
//! the same validated push path that phones use.

use std::path::Path;

use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{GridKind, GridLevel, GridNode, Person, Record, Role};
use gridsync_core::sync::protocol::{PushOutcome, PushRecord};
use gridsync_core::validate;

use crate::auth;
use crate::scope::Scope;
use crate::storage::{Author, EnrolCode, Storage, StorageError};

/// Errors of administrative commands.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A CSV row is wrong; nothing was imported.
    #[error("{file}: line {line}, column {column}: {message}")]
    Csv {
        /// File name.
        file: String,
        /// 1-based line.
        line: u64,
        /// Column name.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// Input refused.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

const CSV_COLUMNS: [&str; 5] = ["code", "name", "level", "parent", "kind"];

/// Parses and checks a grid CSV (`code,name,level,parent,kind`) against the stored tree.
pub fn parse_grids_csv(
    name: &str,
    data: &[u8],
    existing: &[GridNode],
) -> Result<Vec<GridNode>, AdminError> {
    let err = |line: u64, column: &str, message: String| AdminError::Csv {
        file: name.to_string(),
        line,
        column: column.to_string(),
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(data);
    let headers = rdr
        .headers()
        .map_err(|e| err(1, "header", e.to_string()))?
        .clone();
    let pos: Vec<usize> = CSV_COLUMNS
        .iter()
        .map(|c| {
            headers
                .iter()
                .position(|h| h.trim_start_matches('\u{feff}') == *c)
                .ok_or_else(|| {
                    err(
                        1,
                        c,
                        format!("missing column '{c}' (expected {})", CSV_COLUMNS.join(",")),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let mut nodes: Vec<GridNode> = Vec::new();
    let mut lines: Vec<u64> = Vec::new();
    for (i, row) in rdr.records().enumerate() {
        let line = i as u64 + 2;
        let row = row.map_err(|e| err(line, "row", e.to_string()))?;
        let get = |k: usize| row.get(pos[k]).unwrap_or("").to_string();
        let level_s = get(2);
        let level = GridLevel::parse(&level_s).ok_or_else(|| {
            err(
                line,
                "level",
                format!(
                    "'{level_s}' is not one of region, league, banner, township, village, sub_grid"
                ),
            )
        })?;
        let kind_s = get(4);
        let kind = GridKind::parse(&kind_s).ok_or_else(|| {
            err(
                line,
                "kind",
                format!("'{kind_s}' is not one of farming, pastoral, mixed"),
            )
        })?;
        let parent = Some(get(3)).filter(|p| !p.is_empty());
        let node = GridNode {
            code: get(0),
            name: get(1),
            level,
            kind,
            parent,
        };
        node.validate().map_err(|e| match e {
            gridsync_core::Error::Invalid(i) => err(line, &i.field, i.problem),
            other => err(line, "row", other.to_string()),
        })?;
        if nodes.iter().any(|n| n.code == node.code) {
            return Err(err(
                line,
                "code",
                format!("'{}' appears twice in the file", node.code),
            ));
        }
        nodes.push(node);
        lines.push(line);
    }
    if nodes.is_empty() {
        return Err(err(1, "row", "the file has no rows".into()));
    }
    for (node, line) in nodes.iter().zip(&lines) {
        if let Some(parent) = &node.parent {
            let p = nodes
                .iter()
                .find(|n| &n.code == parent)
                .or_else(|| existing.iter().find(|n| &n.code == parent));
            let Some(p) = p else {
                return Err(err(
                    *line,
                    "parent",
                    format!("parent '{parent}' is neither in the file nor already imported"),
                ));
            };
            if p.level.child() != Some(node.level) {
                return Err(err(
                    *line,
                    "level",
                    format!(
                        "a {} cannot sit under a {} ({parent})",
                        node.level.as_str(),
                        p.level.as_str()
                    ),
                ));
            }
        }
    }
    Ok(nodes)
}

/// Imports a grid CSV file: all rows or none.
pub fn import_grids_csv(storage: &dyn Storage, path: &Path) -> Result<usize, AdminError> {
    let data =
        std::fs::read(path).map_err(|e| AdminError::Invalid(format!("{}: {e}", path.display())))?;
    let name = path.display().to_string();
    let nodes = parse_grids_csv(&name, &data, &storage.grids()?)?;
    storage.import_grids(&nodes)?;
    Ok(nodes.len())
}

/// Adds or updates a person after checking the phone, role and grids.
pub fn add_person(storage: &dyn Storage, p: &Person) -> Result<(), AdminError> {
    validate::require_text("id", &p.id, 64).map_err(|e| AdminError::Invalid(e.to_string()))?;
    validate::require_text("name", &p.name, 50).map_err(|e| AdminError::Invalid(e.to_string()))?;
    validate::check_phone("phone", &p.phone).map_err(|e| AdminError::Invalid(e.to_string()))?;
    if p.grids.is_empty() && p.role != Role::Admin {
        return Err(AdminError::Invalid(
            "grids: a person needs at least one grid".into(),
        ));
    }
    let grids = storage.grids()?;
    for g in &p.grids {
        if !grids.iter().any(|n| &n.code == g) {
            return Err(AdminError::Invalid(format!(
                "grids: '{g}' is not a known grid"
            )));
        }
    }
    storage.upsert_person(p)?;
    Ok(())
}

/// Issues a one-time enrolment code for a person; only its hash is stored.
pub fn issue_code(
    storage: &dyn Storage,
    person_id: &str,
    issued_by: &str,
    ttl_hours: u32,
) -> Result<IssuedCode, AdminError> {
    if storage.person(person_id)?.is_none() {
        return Err(AdminError::Invalid(format!(
            "person '{person_id}' does not exist or is inactive"
        )));
    }
    let code = auth::new_code();
    let now = gridsync_core::now_ms();
    let expires_at_ms = now + i64::from(ttl_hours.max(1)) * 3_600_000;
    storage.insert_code(&EnrolCode {
        code_hash: auth::hash_secret(&auth::normalize_code(&code)),
        person_id: person_id.to_string(),
        created_by: issued_by.to_string(),
        created_at_ms: now,
        expires_at_ms,
    })?;
    let qr_svg = qrcode::QrCode::new(code.as_bytes())
        .map(|q| {
            q.render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(240, 240)
                .build()
        })
        .map_err(|e| AdminError::Invalid(format!("QR code: {e}")))?;
    Ok(IssuedCode {
        code,
        expires_at_ms,
        qr_svg,
    })
}

/// Stores records as `admin` would push them from a device: same validation and rules.
/// Returns how many were accepted; the first rejection is an error.
pub fn seed_records(
    storage: &dyn Storage,
    admin: &Person,
    records: &[Record],
) -> Result<usize, AdminError> {
    let nodes = storage.grids()?;
    let tree = std::sync::Arc::new(gridsync_core::store::TreeSnapshot::from_nodes(&nodes));
    let scope = Scope::compute(&nodes, &storage.people()?, admin, tree);
    let actor = gridsync_core::device_actor(crate::push::SEED_DEVICE);
    let author = Author {
        person_id: admin.id.clone(),
        device_id: None,
    };
    let mut accepted = 0;
    for chunk in records.chunks(500) {
        let mut pushes = Vec::with_capacity(chunk.len());
        for r in chunk {
            let at = match r {
                Record::Producer(p) => p.updated_at_ms,
                Record::Visit(v) => v.updated_at_ms,
                Record::Template(_) => gridsync_core::now_ms(),
            };
            let mut d = RecordDoc::create(r, &actor, &admin.id, at)
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            pushes.push(PushRecord {
                id: r.id().to_string(),
                kind: r.kind().tag(),
                changes: d.save(),
                heads: d.heads().iter().map(|h| h.0).collect(),
            });
        }
        let mut ctx = crate::push::PushContext::new(storage, &scope, crate::push::SEED_DEVICE);
        let mut process = |stored: Option<&crate::storage::StoredRecord>, p: &PushRecord| {
            crate::push::decide(&mut ctx, stored, p)
        };
        for res in storage.apply_push(&author, &pushes, &mut process)? {
            match res.outcome {
                PushOutcome::Accepted => accepted += 1,
                PushOutcome::Rejected { reason, .. } => {
                    return Err(AdminError::Invalid(format!("record {}: {reason}", res.id)))
                }
            }
        }
    }
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_errors_name_line_and_column() {
        let ok = "code,name,level,parent,kind\nR,区,region,,mixed\nL,盟,league,R,pastoral\n";
        assert_eq!(
            parse_grids_csv("t.csv", ok.as_bytes(), &[]).unwrap().len(),
            2
        );
        let bad_level = "code,name,level,parent,kind\nR,区,region,,mixed\nL,盟,leage,R,pastoral\n";
        let e = parse_grids_csv("t.csv", bad_level.as_bytes(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("column level"), "{e}");
        let orphan = "code,name,level,parent,kind\nB,旗,banner,X,mixed\n";
        let e = parse_grids_csv("t.csv", orphan.as_bytes(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("column parent"), "{e}");
        let wrong_nesting =
            "code,name,level,parent,kind\nR,区,region,,mixed\nV,村,village,R,mixed\n";
        let e = parse_grids_csv("t.csv", wrong_nesting.as_bytes(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot sit under"), "{e}");
        let missing = "code,name,parent,kind\n";
        assert!(parse_grids_csv("t.csv", missing.as_bytes(), &[])
            .unwrap_err()
            .to_string()
            .contains("missing column 'level'"));
    }
}

/// An issued enrolment code with its QR code.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct IssuedCode {
    /// The code (shown once).
    pub code: String,
    /// Expiry.
    pub expires_at_ms: i64,
    /// QR code of the code as SVG.
    pub qr_svg: String,
}

/// Hours a desk password-set link stays valid.
pub const DESK_LINK_HOURS: i64 = 24;

/// Whether a username is acceptable: 2 to 64 characters, no whitespace or control
/// characters, no `/`.
pub fn check_username(username: &str) -> Result<(), AdminError> {
    let n = username.chars().count();
    if !(2..=64).contains(&n)
        || username
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(AdminError::Invalid(
            "username: 2 to 64 characters without spaces, control characters or '/'".into(),
        ));
    }
    Ok(())
}

/// The person a desk account may belong to: active, and not a liaison (liaisons work on
/// phones only).
fn desk_person(storage: &dyn Storage, person_id: &str) -> Result<Person, AdminError> {
    let p = storage.person(person_id)?.ok_or_else(|| {
        AdminError::Invalid(format!(
            "person '{person_id}' does not exist or is inactive"
        ))
    })?;
    if p.role == Role::Liaison {
        return Err(AdminError::Invalid(format!(
            "person '{person_id}' is a liaison: liaisons work on phones and get no desk account"
        )));
    }
    Ok(p)
}

/// Sets a desk person's username and password (argon2id; the password is neither stored
/// nor logged, only its hash), ends their desk sessions, and notes it in the audit trail.
pub fn set_desk_password(
    storage: &dyn Storage,
    person_id: &str,
    username: &str,
    password: &str,
    by: &str,
) -> Result<(), AdminError> {
    desk_person(storage, person_id)?;
    check_username(username)?;
    crate::desk::password::check_new(password).map_err(AdminError::Invalid)?;
    let hash = crate::desk::password::hash(password).map_err(AdminError::Invalid)?;
    let now = gridsync_core::now_ms();
    storage.desk_set_password(person_id, username, &hash, now)?;
    storage.desk_delete_sessions_of(person_id)?;
    storage.audit(&crate::storage::AuditEntry {
        at_ms: now,
        person_id: person_id.to_string(),
        device_id: None,
        record_id: None,
        kind: None,
        grid: None,
        action: "desk_password_set".into(),
        detail: format!("username {username}, by {by}"),
    })?;
    Ok(())
}

/// A one-time desk link: the token (shown once; only its hash is stored) and its expiry.
#[derive(Debug, Clone)]
pub struct DeskLink {
    /// The token for `/desk/set-password/{token}`.
    pub token: String,
    /// When it expires.
    pub expires_at_ms: i64,
}

/// Issues a one-time link (valid [`DESK_LINK_HOURS`]) with which a desk person sets their
/// own password.
pub fn issue_desk_link(
    storage: &dyn Storage,
    person_id: &str,
    by: &str,
) -> Result<DeskLink, AdminError> {
    desk_person(storage, person_id)?;
    let token = auth::new_secret();
    let now = gridsync_core::now_ms();
    let expires_at_ms = now + DESK_LINK_HOURS * 3_600_000;
    storage.desk_create_link(&auth::hash_secret(&token), person_id, now, expires_at_ms)?;
    storage.audit(&crate::storage::AuditEntry {
        at_ms: now,
        person_id: person_id.to_string(),
        device_id: None,
        record_id: None,
        kind: None,
        grid: None,
        action: "desk_link_issued".into(),
        detail: format!("by {by}, valid {DESK_LINK_HOURS} h"),
    })?;
    Ok(DeskLink {
        token,
        expires_at_ms,
    })
}
