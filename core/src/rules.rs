//! Permission and workflow rules, run by the phone before it writes and by the server on
//! every pushed change, against the stored record (never against what a phone claims).

use crate::model::{Actor, GridLevel, Producer, Record, ReviewState, Role, Visit, VisitStatus};
use crate::{Error, Result};

/// Read access to the grid tree.
pub trait GridTree {
    /// Parent code of a node, `None` for the root or an unknown node.
    fn parent_of(&self, code: &str) -> Option<String>;
    /// Level of a node, `None` if unknown.
    fn level_of(&self, code: &str) -> Option<GridLevel>;
}

/// Whether `grid` is `ancestor` or lies below it.
pub fn is_within(tree: &dyn GridTree, grid: &str, ancestor: &str) -> bool {
    let mut cur = Some(grid.to_string());
    let mut steps = 0;
    while let Some(c) = cur {
        if c == ancestor {
            return true;
        }
        steps += 1;
        if steps > 16 {
            return false;
        }
        cur = tree.parent_of(&c);
    }
    false
}

/// Whether the actor may read and write records of `grid`: an administrator everywhere,
/// everyone else in the subtrees of their assigned grids.
pub fn in_scope(tree: &dyn GridTree, actor: &Actor, grid: &str) -> bool {
    actor.role == Role::Admin || actor.grids.iter().any(|g| is_within(tree, grid, g))
}

/// Whether the actor may read templates owned by `grid`: those of their own subtree and
/// of every ancestor of an assigned grid (the county's and the region's templates).
pub fn can_read_template(tree: &dyn GridTree, actor: &Actor, grid: &str) -> bool {
    in_scope(tree, actor, grid) || actor.grids.iter().any(|g| is_within(tree, g, grid))
}

fn forbid(msg: impl Into<String>) -> Error {
    Error::Forbidden(msg.into())
}

/// Checks that `actor` may turn `before` (what they saw; `None` for a new record) into
/// `after`. Validation of the fields themselves is separate ([`crate::validate`]).
pub fn check_change(
    tree: &dyn GridTree,
    actor: &Actor,
    before: Option<&Record>,
    after: &Record,
) -> Result<()> {
    if let Some(b) = before {
        if b.kind() != after.kind() || b.id() != after.id() {
            return Err(forbid("a record cannot change its kind or id"));
        }
    }
    if tree.level_of(after.grid()).is_none() {
        return Err(Error::Invalid(crate::validate::Invalid::new(
            "grid",
            format!("'{}' is not a known grid", after.grid()),
        )));
    }
    match after {
        Record::Template(t) => {
            if !matches!(actor.role, Role::CountyReviewer | Role::Admin) {
                return Err(forbid(
                    "only county staff and administrators write checklist templates",
                ));
            }
            if !in_scope(tree, actor, &t.grid) {
                return Err(forbid(format!("grid {} is outside your scope", t.grid)));
            }
            Ok(())
        }
        Record::Producer(p) => {
            check_scope(tree, actor, before, &p.grid)?;
            let b = match before {
                Some(Record::Producer(b)) => Some(b),
                _ => None,
            };
            check_producer(actor, b, p)
        }
        Record::Visit(v) => {
            check_scope(tree, actor, before, &v.grid)?;
            let b = match before {
                Some(Record::Visit(b)) => Some(b),
                _ => None,
            };
            check_visit(actor, b, v)
        }
    }
}

fn check_scope(
    tree: &dyn GridTree,
    actor: &Actor,
    before: Option<&Record>,
    grid: &str,
) -> Result<()> {
    if let Some(b) = before {
        if !in_scope(tree, actor, b.grid()) {
            return Err(forbid(format!(
                "record is in grid {}, outside your scope",
                b.grid()
            )));
        }
    }
    if !in_scope(tree, actor, grid) {
        return Err(forbid(format!("grid {grid} is outside your scope")));
    }
    Ok(())
}

/// Who may move a directory entry from one review state to another.
pub fn review_step_allowed(role: Role, from: ReviewState, to: ReviewState) -> bool {
    use ReviewState::*;
    if from == to || role == Role::Admin {
        return true;
    }
    match (from, to) {
        (Draft | Returned, Submitted) => true,
        (Returned, Draft) => true,
        (Submitted, TownshipApproved) => role == Role::Supervisor,
        (TownshipApproved, CountyApproved) => role == Role::CountyReviewer,
        (Submitted, Returned) => matches!(role, Role::Supervisor | Role::CountyReviewer),
        (TownshipApproved | CountyApproved, Returned) => role == Role::CountyReviewer,
        _ => false,
    }
}

fn check_producer(actor: &Actor, before: Option<&Producer>, after: &Producer) -> Result<()> {
    // A review step starts from the state that holds for the fields (an approval that an
    // edit merged after no longer counts), so nobody can re-approve by keeping a stale one.
    let from = before.map_or(ReviewState::Draft, |b| b.effective_review_state());
    let to = after.review.state;
    if let Some(b) = before {
        if b.created_by != after.created_by || b.created_at_ms != after.created_at_ms {
            return Err(forbid("created_by and created_at_ms cannot change"));
        }
        for e in &b.review.history {
            if !after.review.history.iter().any(|x| x == e) {
                return Err(forbid("review history can only grow"));
            }
        }
        // Editing an approved entry must send it back to review.
        let fields_changed = b.directory_fingerprint() != after.directory_fingerprint();
        if fields_changed
            && b.review.state.is_approved()
            && to.is_approved()
            && to == b.review.state
        {
            return Err(Error::Workflow(
                "a directory field of an approved entry changed without sending it back to review"
                    .into(),
            ));
        }
        if from.is_approved() && to == ReviewState::Submitted && fields_changed {
            return Ok(());
        }
        if b.review.state == to
            && b.review.approved_fingerprint == after.review.approved_fingerprint
        {
            // Not a review step: an edit that leaves the review as it was.
            return Ok(());
        }
    } else if actor.role == Role::Liaison
        && to != ReviewState::Draft
        && to != ReviewState::Submitted
    {
        return Err(forbid("a liaison cannot create an approved entry"));
    }
    if !review_step_allowed(actor.role, from, to) {
        return Err(forbid(format!(
            "a {} cannot move a directory entry from {} to {}",
            actor.role.as_str(),
            from.as_str(),
            to.as_str()
        )));
    }
    if to.is_approved()
        && from != to
        && after.review.approved_fingerprint.as_deref()
            != Some(after.directory_fingerprint().as_str())
    {
        return Err(Error::Workflow(
            "an approval must carry the fingerprint of what was approved".into(),
        ));
    }
    Ok(())
}

fn check_visit(actor: &Actor, before: Option<&Visit>, after: &Visit) -> Result<()> {
    let reviewer = matches!(
        actor.role,
        Role::Supervisor | Role::CountyReviewer | Role::Admin
    );
    let Some(b) = before else {
        if after.inspector != actor.person_id && actor.role != Role::Admin {
            return Err(forbid("a visit is recorded by its own inspector"));
        }
        if after.review.is_some() && !reviewer {
            return Err(forbid("only supervisors and county staff review visits"));
        }
        return Ok(());
    };
    if b.inspector != after.inspector || b.producer_id != after.producer_id {
        return Err(forbid("inspector and producer of a visit cannot change"));
    }
    if b.review != after.review && !reviewer {
        return Err(forbid("only supervisors and county staff review visits"));
    }
    let own = b.inspector == actor.person_id || actor.role == Role::Admin;
    if b.status == VisitStatus::Completed {
        if after.status != VisitStatus::Completed {
            return Err(Error::Workflow(
                "a completed visit cannot be reopened".into(),
            ));
        }
        // Only a follow-up link, a resolution and a review may be added.
        let mut allowed = after.clone();
        allowed.follow_up_visit = b.follow_up_visit.clone();
        allowed.review = b.review.clone();
        allowed.updated_at_ms = b.updated_at_ms;
        if let (Some(ar), Some(br)) = (&mut allowed.rectification, &b.rectification) {
            ar.resolved_at_ms = br.resolved_at_ms;
        }
        if &allowed != b {
            return Err(Error::Workflow(
                "a completed visit cannot be changed except to add a follow-up or a review".into(),
            ));
        }
        if b.follow_up_visit.is_some() && b.follow_up_visit != after.follow_up_visit {
            return Err(Error::Workflow(
                "a follow-up link cannot be replaced".into(),
            ));
        }
        if !own && !reviewer {
            return Err(forbid("you cannot change someone else's visit"));
        }
        return Ok(());
    }
    let only_review = {
        let mut x = after.clone();
        x.review = b.review.clone();
        x.updated_at_ms = b.updated_at_ms;
        &x == b
    };
    if !(own || reviewer && only_review) {
        return Err(forbid("you cannot change someone else's visit"));
    }
    Ok(())
}
