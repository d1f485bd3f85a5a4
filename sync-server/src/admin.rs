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
    /// A person refused ([`check_person`]).
    #[error("{0}")]
    Person(PersonProblem),
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

/// What is wrong with a person as entered (the CLI prints it in English, the desk in
/// Chinese with [`PersonProblem::zh`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonProblem {
    /// A field is missing or malformed: field name (`id`, `name`, `phone`) and detail.
    Field(&'static str, String),
    /// A person other than an administrator without grids.
    NoGrids,
    /// A grid code the tree does not know.
    UnknownGrid(String),
    /// A grid named twice.
    DuplicateGrid(String),
    /// A grid of a level the role does not work at.
    GridLevel {
        /// The grid.
        grid: String,
        /// Its level.
        level: GridLevel,
        /// The person's role.
        role: Role,
    },
    /// One assigned grid lies inside another assigned grid.
    NestedGrids {
        /// The inner grid.
        inner: String,
        /// The grid it lies in.
        outer: String,
    },
}

impl std::fmt::Display for PersonProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersonProblem::Field(field, detail) => write!(f, "{field}: {detail}"),
            PersonProblem::NoGrids => write!(f, "grids: a person needs at least one grid"),
            PersonProblem::UnknownGrid(g) => write!(f, "grids: '{g}' is not a known grid"),
            PersonProblem::DuplicateGrid(g) => write!(f, "grids: '{g}' is named twice"),
            PersonProblem::GridLevel { grid, level, role } => write!(
                f,
                "grids: '{grid}' is a {} grid; a {} works at {}",
                level.as_str(),
                role.as_str(),
                role_levels_text(*role)
            ),
            PersonProblem::NestedGrids { inner, outer } => write!(
                f,
                "grids: '{inner}' lies inside '{outer}', which is assigned already"
            ),
        }
    }
}

impl PersonProblem {
    /// The problem in Chinese, naming the field or grid.
    pub fn zh(&self) -> String {
        match self {
            PersonProblem::Field(field, detail) => {
                let name = match *field {
                    "id" => "编号",
                    "name" => "姓名",
                    "phone" => "联系电话",
                    other => other,
                };
                format!("{name}填写有误（{detail}）")
            }
            PersonProblem::NoGrids => "除系统管理员外，每位人员至少需要分配一个网格".into(),
            PersonProblem::UnknownGrid(g) => format!("网格“{g}”不存在，请填写网格树中的网格代码"),
            PersonProblem::DuplicateGrid(g) => format!("网格“{g}”重复填写"),
            PersonProblem::GridLevel { grid, level, role } => format!(
                "网格“{grid}”是{}，{}只能分配到{}",
                level.label_zh(),
                role.label_zh(),
                role_levels_zh(*role)
            ),
            PersonProblem::NestedGrids { inner, outer } => {
                format!("网格“{inner}”位于已分配的网格“{outer}”之内，无需重复分配")
            }
        }
    }
}

/// The grid levels a role works at (`None`: any level).
pub fn role_levels(role: Role) -> Option<&'static [GridLevel]> {
    match role {
        Role::Liaison => Some(&[GridLevel::Village, GridLevel::SubGrid]),
        Role::Supervisor => Some(&[GridLevel::Township]),
        Role::CountyReviewer => Some(&[GridLevel::Banner]),
        Role::Admin => None,
    }
}

fn role_levels_text(role: Role) -> String {
    role_levels(role)
        .map(|l| {
            l.iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        })
        .unwrap_or_else(|| "any level".into())
}

fn role_levels_zh(role: Role) -> String {
    role_levels(role)
        .map(|l| {
            l.iter()
                .map(|l| l.label_zh())
                .collect::<Vec<_>>()
                .join("或")
        })
        .unwrap_or_else(|| "任意层级".into())
}

/// Checks a person against the grid tree: fields, at least one grid (but for
/// administrators), every grid known, named once, of a level the role works at
/// ([`role_levels`]), none inside another.
pub fn check_person(p: &Person, nodes: &[GridNode]) -> Result<(), PersonProblem> {
    fn field(f: &'static str, r: Result<(), validate::Invalid>) -> Result<(), PersonProblem> {
        r.map_err(|e| PersonProblem::Field(f, e.problem))
    }
    field("id", validate::require_text("id", &p.id, 64))?;
    field("name", validate::require_text("name", &p.name, 50))?;
    field("phone", validate::check_phone("phone", &p.phone))?;
    if p.grids.is_empty() && p.role != Role::Admin {
        return Err(PersonProblem::NoGrids);
    }
    let tree = gridsync_core::store::TreeSnapshot::from_nodes(nodes);
    for (i, g) in p.grids.iter().enumerate() {
        let node = nodes
            .iter()
            .find(|n| &n.code == g)
            .ok_or_else(|| PersonProblem::UnknownGrid(g.clone()))?;
        if p.grids[..i].contains(g) {
            return Err(PersonProblem::DuplicateGrid(g.clone()));
        }
        if let Some(levels) = role_levels(p.role) {
            if !levels.contains(&node.level) {
                return Err(PersonProblem::GridLevel {
                    grid: g.clone(),
                    level: node.level,
                    role: p.role,
                });
            }
        }
    }
    for inner in &p.grids {
        if let Some(outer) = p
            .grids
            .iter()
            .find(|o| *o != inner && gridsync_core::rules::is_within(&tree, inner, o))
        {
            return Err(PersonProblem::NestedGrids {
                inner: inner.clone(),
                outer: outer.clone(),
            });
        }
    }
    Ok(())
}

/// Adds or updates a person after checking them against the grid tree
/// ([`check_person`]). Storing a person makes them active.
pub fn add_person(storage: &dyn Storage, p: &Person) -> Result<(), AdminError> {
    check_person(p, &storage.grids()?).map_err(AdminError::Person)?;
    storage.upsert_person(p)?;
    Ok(())
}

/// What deactivating a person did.
#[derive(Debug, Clone, PartialEq)]
pub struct Deactivated {
    /// The person.
    pub person: Person,
    /// Their devices that were not revoked (they stop syncing: the server answers 401
    /// `person_inactive`).
    pub devices: usize,
}

/// Deactivates a person who left: their devices stop syncing, their desk sessions end (in
/// the same transaction), their records stay. Written to the audit trail with `by` as the
/// actor.
pub fn deactivate_person(
    storage: &dyn Storage,
    person_id: &str,
    by: &str,
) -> Result<Deactivated, AdminError> {
    let person = storage.person(person_id)?.ok_or_else(|| {
        AdminError::Invalid(format!(
            "person '{person_id}' does not exist or is inactive"
        ))
    })?;
    if !storage.set_person_active(person_id, false)? {
        return Err(AdminError::Invalid(format!(
            "person '{person_id}' does not exist"
        )));
    }
    let devices = storage
        .devices()?
        .iter()
        .filter(|d| d.person_id == person_id && d.revoked_at_ms.is_none())
        .count();
    storage.audit(&crate::storage::AuditEntry {
        at_ms: gridsync_core::now_ms(),
        person_id: by.to_string(),
        device_id: None,
        record_id: None,
        kind: None,
        grid: None,
        action: "deactivate_person".into(),
        detail: format!(
            "person {person_id} ({}) deactivated; {devices} devices stop syncing; desk sessions ended",
            person.name
        ),
    })?;
    Ok(Deactivated { person, devices })
}

/// Revokes a device at once, written to the audit trail with `by` as the actor.
pub fn revoke_device(
    storage: &dyn Storage,
    device_id: &str,
    reason: &str,
    by: &str,
) -> Result<(), AdminError> {
    let now = gridsync_core::now_ms();
    storage.revoke_device(device_id, reason, now)?;
    storage.audit(&crate::storage::AuditEntry {
        at_ms: now,
        person_id: by.to_string(),
        device_id: Some(device_id.to_string()),
        record_id: None,
        kind: None,
        grid: None,
        action: "revoke".into(),
        detail: reason.to_string(),
    })?;
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
        let pushes = chunk
            .iter()
            .map(|r| seed_push(r, &actor, admin))
            .collect::<Result<Vec<_>, _>>()?;
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

/// A record as the administrator's seeding device would push it: one document created by
/// `admin`, signed with the seed device's actor.
fn seed_push(
    r: &Record,
    actor: &automerge::ActorId,
    admin: &Person,
) -> Result<PushRecord, AdminError> {
    let at = match r {
        Record::Producer(p) => p.updated_at_ms,
        Record::Visit(v) => v.updated_at_ms,
        Record::Acceptance(a) => a.updated_at_ms,
        Record::Template(_) => gridsync_core::now_ms(),
    };
    let mut d = RecordDoc::create(r, actor, &admin.id, at)
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    Ok(PushRecord {
        id: r.id().to_string(),
        kind: r.kind().tag(),
        changes: d.save(),
        heads: d.heads().iter().map(|h| h.0).collect(),
    })
}

/// [`seed_records`] in one storage transaction, for imports that must store all records or
/// none: every record is judged as a push by `admin` (same validation and rules), and the
/// first rejection cancels the whole batch, so nothing is stored; the error names the
/// record. `progress(judged, total)` is called as records are judged (a batch the backend
/// decides again after a conflict counts again, up to `total`).
pub fn seed_records_all_or_nothing(
    storage: &dyn Storage,
    admin: &Person,
    records: &[Record],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<usize, AdminError> {
    let nodes = storage.grids()?;
    let tree = std::sync::Arc::new(gridsync_core::store::TreeSnapshot::from_nodes(&nodes));
    let scope = Scope::compute(&nodes, &storage.people()?, admin, tree);
    let actor = gridsync_core::device_actor(crate::push::SEED_DEVICE);
    let author = Author {
        person_id: admin.id.clone(),
        device_id: None,
    };
    let pushes = records
        .iter()
        .map(|r| seed_push(r, &actor, admin))
        .collect::<Result<Vec<_>, _>>()?;
    let total = pushes.len();
    let mut ctx = crate::push::PushContext::new(storage, &scope, crate::push::SEED_DEVICE);
    let mut refused: Option<String> = None;
    let mut judged = 0;
    let mut process = |stored: Option<&crate::storage::StoredRecord>, p: &PushRecord| {
        let d = crate::push::decide(&mut ctx, stored, p);
        judged = (judged + 1).min(total);
        progress(judged, total);
        match d {
            crate::storage::PushDecision::Reject(_, reason) => {
                refused = Some(format!("record {}: {reason}", p.id));
                crate::storage::PushDecision::Cancelled
            }
            crate::storage::PushDecision::Duplicate => {
                refused = Some(format!("record {}: already stored", p.id));
                crate::storage::PushDecision::Cancelled
            }
            d => d,
        }
    };
    match storage.apply_push(&author, &pushes, &mut process) {
        Ok(results) => Ok(results
            .iter()
            .filter(|r| matches!(r.outcome, PushOutcome::Accepted))
            .count()),
        Err(StorageError::Cancelled) => Err(AdminError::Invalid(format!(
            "nothing stored: {}",
            refused.unwrap_or_else(|| "the batch was cancelled".into())
        ))),
        Err(e) => Err(e.into()),
    }
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
