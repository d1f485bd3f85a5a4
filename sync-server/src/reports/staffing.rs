//! Staffing against the plan: 1–2 supervisors (监管员) per township (level-1 grid) and 1–2
//! liaisons (协管员) per village (level-2 grid).
//!
//! A supervisor counts for every township they are assigned. A liaison counts for the
//! village they are assigned, or for the village of the sub-grid (level-3) they are
//! assigned; a village split into sub-grids may have up to 2 liaisons per sub-grid. Only
//! active people count. The admin command `staffing` prints the grids out of plan; the desk
//! shows [`StaffingSummary`].

use std::collections::HashMap;

use gridsync_core::model::{GridLevel, GridNode, Person, Role};
use gridsync_core::rules::GridTree;
use gridsync_core::store::TreeSnapshot;

use crate::storage::{Storage, StorageResult};

/// How many people of a role a grid of a level should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaffingPlan {
    /// Fewest supervisors per township.
    pub supervisors_min: usize,
    /// Most supervisors per township.
    pub supervisors_max: usize,
    /// Fewest liaisons per village.
    pub liaisons_min: usize,
    /// Most liaisons per village (per sub-grid of a split village).
    pub liaisons_max: usize,
}

impl Default for StaffingPlan {
    /// The plan: 1–2 supervisors per township, 1–2 liaisons per village.
    fn default() -> Self {
        StaffingPlan {
            supervisors_min: 1,
            supervisors_max: 2,
            liaisons_min: 1,
            liaisons_max: 2,
        }
    }
}

/// What is off about a grid's staffing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffingIssue {
    /// Nobody of the role.
    Missing,
    /// Fewer than the plan's minimum (when the minimum is above 1).
    TooFew,
    /// More than the plan's maximum.
    TooMany,
}

impl StaffingIssue {
    /// Stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            StaffingIssue::Missing => "missing",
            StaffingIssue::TooFew => "too_few",
            StaffingIssue::TooMany => "too_many",
        }
    }

    /// Chinese label.
    pub fn label_zh(self) -> &'static str {
        match self {
            StaffingIssue::Missing => "未配备",
            StaffingIssue::TooFew => "配备不足",
            StaffingIssue::TooMany => "超出配备",
        }
    }
}

/// One grid and the people of the role it is planned for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridStaffing {
    /// Grid code.
    pub code: String,
    /// Grid name.
    pub name: String,
    /// Township or village.
    pub level: GridLevel,
    /// Supervisor (townships) or liaison (villages).
    pub role: Role,
    /// The people counted: (id, name).
    pub people: Vec<(String, String)>,
    /// The plan's range for this grid.
    pub min: usize,
    /// The plan's range for this grid.
    pub max: usize,
    /// What is off, if anything.
    pub issue: Option<StaffingIssue>,
}

/// Counts for the desk's dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaffingSummary {
    /// Townships checked.
    pub townships: usize,
    /// Townships within the plan.
    pub townships_ok: usize,
    /// Townships without a supervisor.
    pub townships_without_supervisor: usize,
    /// Townships with more supervisors than planned.
    pub townships_over: usize,
    /// Villages checked.
    pub villages: usize,
    /// Villages within the plan.
    pub villages_ok: usize,
    /// Villages without a liaison.
    pub villages_without_liaison: usize,
    /// Villages with more liaisons than planned.
    pub villages_over: usize,
}

/// The staffing of every township and village in scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffingReport {
    /// Every township and village checked, in tree order (townships by code, each followed
    /// by its villages).
    pub grids: Vec<GridStaffing>,
    /// Counts.
    pub summary: StaffingSummary,
}

impl StaffingReport {
    /// Only the grids out of plan.
    pub fn off_plan(&self) -> impl Iterator<Item = &GridStaffing> {
        self.grids.iter().filter(|g| g.issue.is_some())
    }
}

fn issue(n: usize, min: usize, max: usize) -> Option<StaffingIssue> {
    if n == 0 && min > 0 {
        Some(StaffingIssue::Missing)
    } else if n < min {
        Some(StaffingIssue::TooFew)
    } else if n > max {
        Some(StaffingIssue::TooMany)
    } else {
        None
    }
}

/// The staffing of the townships and villages at or below `roots` (every one when `roots`
/// is empty), from a grid tree and the active people.
pub fn staffing_of(
    nodes: &[GridNode],
    people: &[Person],
    roots: &[String],
    plan: &StaffingPlan,
) -> StaffingReport {
    let tree = TreeSnapshot::from_nodes(nodes);
    let in_scope = |code: &str| {
        roots.is_empty()
            || roots
                .iter()
                .any(|r| gridsync_core::rules::is_within(&tree, code, r))
    };
    let level: HashMap<&str, GridLevel> =
        nodes.iter().map(|n| (n.code.as_str(), n.level)).collect();
    let mut sub_grids: HashMap<&str, usize> = HashMap::new();
    for n in nodes.iter().filter(|n| n.level == GridLevel::SubGrid) {
        if let Some(p) = &n.parent {
            *sub_grids.entry(p.as_str()).or_default() += 1;
        }
    }
    // Grid -> people counted for it.
    let mut staff: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for p in people {
        for g in &p.grids {
            let counted = match (p.role, level.get(g.as_str())) {
                (Role::Supervisor, Some(GridLevel::Township)) => Some(g.clone()),
                (Role::Liaison, Some(GridLevel::Village)) => Some(g.clone()),
                (Role::Liaison, Some(GridLevel::SubGrid)) => tree.parent_of(g),
                _ => None,
            };
            if let Some(c) = counted {
                let list = staff.entry(c).or_default();
                if !list.iter().any(|(id, _)| *id == p.id) {
                    list.push((p.id.clone(), p.name.clone()));
                }
            }
        }
    }
    let mut townships: Vec<&GridNode> = nodes
        .iter()
        .filter(|n| n.level == GridLevel::Township && in_scope(&n.code))
        .collect();
    townships.sort_by(|a, b| a.code.cmp(&b.code));
    let mut villages: HashMap<&str, Vec<&GridNode>> = HashMap::new();
    for v in nodes
        .iter()
        .filter(|n| n.level == GridLevel::Village && in_scope(&n.code))
    {
        villages
            .entry(v.parent.as_deref().unwrap_or(""))
            .or_default()
            .push(v);
    }
    let mut grids = Vec::new();
    let mut summary = StaffingSummary::default();
    for t in &townships {
        let people = staff.get(&t.code).cloned().unwrap_or_default();
        let issue = issue(people.len(), plan.supervisors_min, plan.supervisors_max);
        summary.townships += 1;
        match issue {
            None => summary.townships_ok += 1,
            Some(StaffingIssue::Missing) => summary.townships_without_supervisor += 1,
            Some(StaffingIssue::TooMany) => summary.townships_over += 1,
            Some(StaffingIssue::TooFew) => {}
        }
        grids.push(GridStaffing {
            code: t.code.clone(),
            name: t.name.clone(),
            level: GridLevel::Township,
            role: Role::Supervisor,
            people,
            min: plan.supervisors_min,
            max: plan.supervisors_max,
            issue,
        });
        let vs = villages.remove(t.code.as_str()).unwrap_or_default();
        village_rows(vs, &staff, &sub_grids, plan, &mut grids, &mut summary);
    }
    // Villages whose township is out of scope (a root below the township level).
    let mut rest: Vec<(&str, Vec<&GridNode>)> = villages.into_iter().collect();
    rest.sort_by_key(|(t, _)| *t);
    for (_, vs) in rest {
        village_rows(vs, &staff, &sub_grids, plan, &mut grids, &mut summary);
    }
    StaffingReport { grids, summary }
}

fn village_rows(
    mut villages: Vec<&GridNode>,
    staff: &HashMap<String, Vec<(String, String)>>,
    sub_grids: &HashMap<&str, usize>,
    plan: &StaffingPlan,
    grids: &mut Vec<GridStaffing>,
    summary: &mut StaffingSummary,
) {
    villages.sort_by(|a, b| a.code.cmp(&b.code));
    for v in villages {
        let people = staff.get(&v.code).cloned().unwrap_or_default();
        let max = plan.liaisons_max * sub_grids.get(v.code.as_str()).copied().unwrap_or(1);
        let issue = issue(people.len(), plan.liaisons_min, max);
        summary.villages += 1;
        match issue {
            None => summary.villages_ok += 1,
            Some(StaffingIssue::Missing) => summary.villages_without_liaison += 1,
            Some(StaffingIssue::TooMany) => summary.villages_over += 1,
            Some(StaffingIssue::TooFew) => {}
        }
        grids.push(GridStaffing {
            code: v.code.clone(),
            name: v.name.clone(),
            level: GridLevel::Village,
            role: Role::Liaison,
            people,
            min: plan.liaisons_min,
            max,
            issue,
        });
    }
}

/// The staffing of the townships and villages at or below `roots` (the whole tree when
/// empty), with the plan's 1–2 per grid: what the admin command prints and the desk shows.
pub fn staffing(storage: &dyn Storage, roots: &[String]) -> StorageResult<StaffingReport> {
    Ok(staffing_of(
        &storage.grids()?,
        &storage.people()?,
        roots,
        &StaffingPlan::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridsync_core::model::GridKind;

    fn node(code: &str, level: GridLevel, parent: Option<&str>) -> GridNode {
        GridNode {
            code: code.into(),
            name: format!("网格{code}"),
            level,
            kind: GridKind::Pastoral,
            parent: parent.map(Into::into),
        }
    }

    fn person(id: &str, role: Role, grids: &[&str]) -> Person {
        Person {
            id: id.into(),
            name: id.into(),
            phone: "13912345678".into(),
            role,
            grids: grids.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn counts_against_the_plan() {
        let nodes = vec![
            node("B", GridLevel::Banner, None),
            node("T1", GridLevel::Township, Some("B")),
            node("T2", GridLevel::Township, Some("B")),
            node("V11", GridLevel::Village, Some("T1")),
            node("V12", GridLevel::Village, Some("T1")),
            node("V21", GridLevel::Village, Some("T2")),
            node("S211", GridLevel::SubGrid, Some("V21")),
            node("S212", GridLevel::SubGrid, Some("V21")),
        ];
        let people = vec![
            person("s1", Role::Supervisor, &["T1"]),
            person("s2", Role::Supervisor, &["T1"]),
            person("s3", Role::Supervisor, &["T1", "T2"]),
            person("l1", Role::Liaison, &["V11"]),
            person("l2", Role::Liaison, &["S211"]),
            person("l3", Role::Liaison, &["S212"]),
            person("l4", Role::Liaison, &["V21"]),
            person("c", Role::CountyReviewer, &["B"]),
        ];
        let r = staffing_of(&nodes, &people, &[], &StaffingPlan::default());
        let get = |c: &str| r.grids.iter().find(|g| g.code == c).unwrap();
        assert_eq!(get("T1").issue, Some(StaffingIssue::TooMany));
        assert_eq!(get("T1").people.len(), 3);
        assert_eq!(get("T2").issue, None);
        assert_eq!(get("V11").issue, None);
        assert_eq!(get("V12").issue, Some(StaffingIssue::Missing));
        // Three liaisons in a village of two sub-grids: within 2 per sub-grid.
        assert_eq!((get("V21").people.len(), get("V21").max), (3, 4));
        assert_eq!(get("V21").issue, None);
        assert_eq!(
            r.summary,
            StaffingSummary {
                townships: 2,
                townships_ok: 1,
                townships_without_supervisor: 0,
                townships_over: 1,
                villages: 3,
                villages_ok: 2,
                villages_without_liaison: 1,
                villages_over: 0,
            }
        );
        let order: Vec<&str> = r.grids.iter().map(|g| g.code.as_str()).collect();
        assert_eq!(order, vec!["T1", "V11", "V12", "T2", "V21"]);
        // Below a root: only that part.
        let r = staffing_of(&nodes, &people, &["V12".into()], &StaffingPlan::default());
        assert_eq!(r.grids.len(), 1);
        assert_eq!(r.grids[0].issue, Some(StaffingIssue::Missing));
        assert_eq!(r.off_plan().count(), 1);
    }
}
