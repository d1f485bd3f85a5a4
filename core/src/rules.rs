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
    // Authors: a new entry names its creator, a new review event the person taking it (an
    // administrator importing paper records may name others).
    if actor.role != Role::Admin {
        if before.is_none() && after.created_by != actor.person_id {
            return Err(forbid(format!(
                "an entry is created by the person who creates it, not {}",
                after.created_by
            )));
        }
        let old = before.map_or(&[][..], |b| &b.review.history[..]);
        if let Some(e) = after
            .review
            .history
            .iter()
            .find(|e| !old.contains(e) && e.by != actor.person_id)
        {
            return Err(forbid(format!(
                "a review step is recorded by the person who takes it, not {}",
                e.by
            )));
        }
    }
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
    check_entry_authors(actor, before, after)?;
    if let Some(r) = &after.review {
        let new = before.and_then(|b| b.review.as_ref()) != Some(r);
        if new && r.by != actor.person_id && actor.role != Role::Admin {
            return Err(forbid(format!(
                "a review is written by its reviewer, not {}",
                r.by
            )));
        }
    }
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

const REVIEW_STATES: [ReviewState; 5] = [
    ReviewState::Draft,
    ReviewState::Submitted,
    ReviewState::TownshipApproved,
    ReviewState::CountyApproved,
    ReviewState::Returned,
];

/// Whether `role` can move a directory entry from `from` to `to` in one or more steps of
/// its own (a supervisor offline may submit an entry and then approve it).
pub fn review_reachable(role: Role, from: ReviewState, to: ReviewState) -> bool {
    let mut seen = vec![from];
    let mut i = 0;
    while i < seen.len() {
        if seen[i] == to {
            return true;
        }
        for next in REVIEW_STATES {
            if !seen.contains(&next) && review_step_allowed(role, seen[i], next) {
                seen.push(next);
            }
        }
        i += 1;
    }
    false
}

/// Whether `role` ever approves at the level of `state`.
fn approves_at(role: Role, state: ReviewState) -> bool {
    match state {
        ReviewState::TownshipApproved => matches!(role, Role::Supervisor | Role::Admin),
        ReviewState::CountyApproved => matches!(role, Role::CountyReviewer | Role::Admin),
        _ => false,
    }
}

/// Judges the result of a merge on the server: `stored` is the record as the server held
/// it, `merged` the record after the pushed changes merged in, all of them made by `actor`.
///
/// Every pushed change has been judged on its own (against what its author had seen) by
/// [`check_change`]; this check closes what that cannot see: a change made against an
/// older version, concurrent with a later decision, and winning the merge. Whatever the
/// changes' dependencies and whatever Automerge's conflict order picks, the protected
/// fields (review state and history, completion, reviews, authors of findings, rapid
/// tests and visits, `created_by`, grid) may differ from the stored record only in ways
/// that `actor` may bring about *now*. Ordinary fields merge freely.
pub fn check_merge(
    tree: &dyn GridTree,
    actor: &Actor,
    stored: &Record,
    merged: &Record,
) -> Result<()> {
    if stored.kind() != merged.kind() || stored.id() != merged.id() {
        return Err(forbid("a record cannot change its kind or id"));
    }
    match (stored, merged) {
        (Record::Producer(s), Record::Producer(m)) => {
            check_scope(tree, actor, Some(stored), &m.grid)?;
            merge_producer(actor, s, m)
        }
        (Record::Visit(s), Record::Visit(m)) => {
            check_scope(tree, actor, Some(stored), &m.grid)?;
            merge_visit(actor, s, m)
        }
        (Record::Template(_), Record::Template(t)) => {
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
        _ => Err(forbid("a record cannot change its kind")),
    }
}

fn merge_producer(actor: &Actor, s: &Producer, m: &Producer) -> Result<()> {
    if s.created_by != m.created_by || s.created_at_ms != m.created_at_ms {
        return Err(forbid("created_by and created_at_ms cannot change"));
    }
    for e in &s.review.history {
        if !m.review.history.iter().any(|x| x == e) {
            return Err(forbid("review history can only grow"));
        }
    }
    for e in &m.review.history {
        if !s.review.history.iter().any(|x| x == e)
            && e.by != actor.person_id
            && actor.role != Role::Admin
        {
            return Err(forbid(format!(
                "a review step is recorded by the person who takes it, not {}",
                e.by
            )));
        }
    }
    let (s_eff, m_eff) = (s.effective_review_state(), m.effective_review_state());
    let fields_changed = s.directory_fingerprint() != m.directory_fingerprint();
    // An edit of an approved entry sends it back to review, whoever may edit it.
    let sent_back = |to: ReviewState| s_eff.is_approved() && to == ReviewState::Submitted;
    if m_eff != s_eff
        && !(review_reachable(actor.role, s_eff, m_eff) || sent_back(m_eff) && fields_changed)
    {
        return Err(forbid(format!(
            "after merging, the entry would be {} (it is {}), which a {} cannot make it",
            m_eff.as_str(),
            s_eff.as_str(),
            actor.role.as_str()
        )));
    }
    let raw_changed = m.review.state != s.review.state
        || m.review.approved_fingerprint != s.review.approved_fingerprint;
    if raw_changed {
        let to = m.review.state;
        // A stale approval (its fingerprint no longer matches the fields) is inert, but it
        // is still an approval: only someone who approves at that level may leave one.
        let ok = to == m_eff && review_reachable(actor.role, s_eff, to)
            || sent_back(to)
            || !to.is_approved() && review_reachable(actor.role, s_eff, to)
            || to.is_approved() && approves_at(actor.role, to);
        if !ok {
            return Err(forbid(format!(
                "a {} cannot leave the review state {} on an entry that is {}",
                actor.role.as_str(),
                to.as_str(),
                s_eff.as_str()
            )));
        }
    }
    Ok(())
}

fn merge_visit(actor: &Actor, s: &Visit, m: &Visit) -> Result<()> {
    let reviewer = matches!(
        actor.role,
        Role::Supervisor | Role::CountyReviewer | Role::Admin
    );
    if s.inspector != m.inspector || s.producer_id != m.producer_id {
        return Err(forbid("inspector and producer of a visit cannot change"));
    }
    if s.status == VisitStatus::Completed && m.status != VisitStatus::Completed {
        return Err(Error::Workflow(
            "a completed visit cannot be reopened".into(),
        ));
    }
    if s.status != m.status && s.inspector != actor.person_id && actor.role != Role::Admin {
        return Err(forbid("a visit is completed by its own inspector"));
    }
    if s.review != m.review {
        if !reviewer {
            return Err(forbid("only supervisors and county staff review visits"));
        }
        match &m.review {
            Some(r) if r.by == actor.person_id || actor.role == Role::Admin => {}
            Some(r) => {
                return Err(forbid(format!(
                    "a review is written by its reviewer, not {}",
                    r.by
                )))
            }
            None => return Err(forbid("a review cannot be removed")),
        }
    }
    check_entry_authors(actor, Some(s), m)?;
    if s.status == VisitStatus::Completed && s.review.is_some() {
        // A reviewed visit is what its reviewer vouched for: it may still gain a follow-up
        // link, a resolution and a (new) review, and nothing it held may change, whatever
        // was made concurrently with its completion. (An unreviewed one merges what its
        // inspector recorded concurrently with completing it: every such change was judged
        // above to predate the completion, and the completion itself stays.)
        let mut allowed = m.clone();
        allowed.review = s.review.clone();
        allowed.updated_at_ms = s.updated_at_ms;
        if s.follow_up_visit.is_none() {
            allowed.follow_up_visit = None;
        }
        if let (Some(ar), Some(sr)) = (&mut allowed.rectification, &s.rectification) {
            ar.resolved_at_ms = sr.resolved_at_ms;
        }
        if &allowed != s {
            return Err(Error::Workflow(
                "a reviewed visit cannot be changed except to add a follow-up, a resolution or a review"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Authors inside a visit: those of existing findings and rapid tests stay as they were,
/// and every new one names the person who pushed it (an administrator, who may record a
/// visit for its inspector when importing paper records, may name others).
fn check_entry_authors(actor: &Actor, before: Option<&Visit>, after: &Visit) -> Result<()> {
    let admin = actor.role == Role::Admin;
    let no_findings = Vec::new();
    let no_tests = Vec::new();
    let (old_findings, old_tests) =
        before.map_or((&no_findings, &no_tests), |b| (&b.findings, &b.rapid_tests));
    for f in &after.findings {
        match old_findings.iter().find(|x| x.id == f.id) {
            Some(old) if old.recorded_by != f.recorded_by => {
                return Err(forbid("the recorder of a finding cannot change"));
            }
            None if f.recorded_by != actor.person_id && !admin => {
                return Err(forbid(format!(
                    "a finding is recorded by the person who records it, not {}",
                    f.recorded_by
                )));
            }
            _ => {}
        }
    }
    for t in &after.rapid_tests {
        match old_tests.iter().find(|x| x.id == t.id) {
            Some(old) if old.operator != t.operator => {
                return Err(forbid("the operator of a rapid test cannot change"));
            }
            None if t.operator != actor.person_id && !admin => {
                return Err(forbid(format!(
                    "a rapid test is recorded by its operator, not {}",
                    t.operator
                )));
            }
            _ => {}
        }
    }
    Ok(())
}
