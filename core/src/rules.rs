//! Permission and workflow rules, run by the phone before it writes and by the server on
//! every pushed change, against the stored record (never against what a phone claims).

use crate::model::{
    Acceptance, Actor, DuplicateOutcome, DuplicateResolution, GridLevel, MergedInto, Producer,
    ProducerStatus, Record, ReviewAction, ReviewEvent, ReviewState, Role, Visit, VisitStatus,
    YearConfirmation,
};
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
        Record::Template(t) => check_template(tree, actor, &t.grid),
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
        Record::Acceptance(a) => {
            let b = match before {
                Some(Record::Acceptance(b)) => Some(b),
                _ => None,
            };
            check_acceptance(tree, actor, before, b, a)
        }
    }
}

/// Township acceptance (达标验收) is decided by county staff for a township in their scope
/// (or by an administrator), on a township-level grid, by the person who records it (an
/// administrator entering paper decisions may name the reviewer). A decision keeps its
/// township and year. Everyone in scope, and the liaisons of the township's villages, read
/// it; nobody else writes it.
fn check_acceptance(
    tree: &dyn GridTree,
    actor: &Actor,
    before_record: Option<&Record>,
    before: Option<&Acceptance>,
    after: &Acceptance,
) -> Result<()> {
    if !matches!(actor.role, Role::CountyReviewer | Role::Admin) {
        return Err(forbid(
            "only county staff and administrators decide township acceptance (达标验收)",
        ));
    }
    if tree.level_of(&after.grid) != Some(GridLevel::Township) {
        return Err(Error::Invalid(crate::validate::Invalid::new(
            "grid",
            format!("'{}' is not a township-level grid", after.grid),
        )));
    }
    check_scope(tree, actor, before_record, &after.grid)?;
    if let Some(b) = before {
        if b.grid != after.grid || b.year != after.year {
            return Err(forbid(
                "the township and year of an acceptance decision cannot change",
            ));
        }
    }
    if actor.role != Role::Admin && after.decided_by != actor.person_id {
        return Err(forbid(format!(
            "a decision is recorded by the person who takes it, not {}",
            after.decided_by
        )));
    }
    Ok(())
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

/// Checklist templates are written by county staff and administrators, in their scope.
fn check_template(tree: &dyn GridTree, actor: &Actor, grid: &str) -> Result<()> {
    if !matches!(actor.role, Role::CountyReviewer | Role::Admin) {
        return Err(forbid(
            "only county staff and administrators write checklist templates",
        ));
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

/// The review state a step takes a directory entry to from `from`, its effective state (a
/// stale approval counts as submitted), or why the step cannot be taken from there:
///
/// | action | from | to |
/// |---|---|---|
/// | submit | draft, returned | submitted |
/// | approve (township) | submitted | township approved |
/// | approve (county) | township approved | county approved |
/// | return | submitted, township approved, county approved | returned |
///
/// The two steps an edit records ([`apply_edit_workflow`]) are never taken by hand. Who may
/// take a step is [`review_step_allowed`]'s to say, checked with the change
/// ([`check_change`]).
pub fn review_transition(from: ReviewState, action: &ReviewAction) -> Result<ReviewState> {
    use ReviewState::*;
    Ok(match (action, from) {
        (ReviewAction::Submit, Draft | Returned) => Submitted,
        (ReviewAction::ApproveTownship, Submitted) => TownshipApproved,
        (ReviewAction::ApproveCounty, TownshipApproved) => CountyApproved,
        (ReviewAction::Return(_), Submitted | TownshipApproved | CountyApproved) => Returned,
        (a, s) => {
            return Err(Error::Workflow(format!(
                "cannot {} an entry that is {}",
                a.as_str(),
                s.as_str()
            )))
        }
    })
}

/// Takes a step in the directory review chain on `p` as `person` at `now`: the new state
/// ([`review_transition`] from the effective state), the reason of a return, the
/// fingerprint of the fields an approval vouches for, and the history entry.
pub fn take_review_step(
    p: &mut Producer,
    action: ReviewAction,
    person: &str,
    now: i64,
) -> Result<()> {
    let to = review_transition(p.effective_review_state(), &action)?;
    if let ReviewAction::Return(reason) = &action {
        crate::validate::require_text("review.return_reason", reason, 500)?;
        p.review.return_reason = Some(reason.clone());
    }
    if to.is_approved() {
        p.review.approved_fingerprint = Some(p.directory_fingerprint());
    }
    record_review_step(p, action, person, now, to);
    Ok(())
}

/// The workflow side of a local edit of `before` into `after`: the review, `created_by` and
/// `created_at_ms` stay as stored; a change of a directory field sends an approved entry
/// back to review (submitted) and a returned one back to draft, with a history entry
/// naming `person` and `now`.
pub fn apply_edit_workflow(before: &Producer, after: &mut Producer, person: &str, now: i64) {
    after.review = before.review.clone();
    after.confirmations = before.confirmations.clone();
    after.duplicates = before.duplicates.clone();
    after.merged_into = before.merged_into.clone();
    after.carried_edits = before.carried_edits.clone();
    after.created_by = before.created_by.clone();
    after.created_at_ms = before.created_at_ms;
    if before.directory_fingerprint() == after.directory_fingerprint() {
        return;
    }
    let to = match before.review.state {
        s if s.is_approved() => Some((ReviewAction::EditedAfterApproval, ReviewState::Submitted)),
        ReviewState::Returned => Some((ReviewAction::EditedAfterReturn, ReviewState::Draft)),
        _ => None,
    };
    if let Some((action, state)) = to {
        record_review_step(after, action, person, now, state);
    }
}

/// Confirms `p` for `year` as `person` at `now` (年度确认): the fields were checked and the
/// producer is still operating, or closed. A status that changes (closed, or operating
/// again) is an edit like any other ([`apply_edit_workflow`]: an approved entry goes back
/// to review); otherwise the directory fingerprint, and so an approval, stays as it was.
///
/// `year` is the current year in China time or the one before (a year is confirmed
/// during it or just after); anything else is refused as invalid, naming `year`.
pub fn confirm_year(
    p: &mut Producer,
    year: i32,
    operating: bool,
    person: &str,
    now: i64,
) -> Result<()> {
    let current = crate::dates::china_year(now);
    if year > current || year < current - 1 {
        return Err(Error::Invalid(crate::validate::Invalid::new(
            "year",
            format!("{year} cannot be confirmed in {current}: only this year or the last"),
        )));
    }
    let status = if operating {
        ProducerStatus::Active
    } else {
        ProducerStatus::Closed
    };
    if p.status != status {
        let before = p.clone();
        p.status = status;
        apply_edit_workflow(&before, p, person, now);
    }
    p.confirmations.push(YearConfirmation {
        id: crate::new_id(),
        year,
        operating,
        by: person.to_string(),
        at_ms: now,
    });
    p.updated_at_ms = now;
    Ok(())
}

/// Moves `p` to `to` and records the step in its review history.
fn record_review_step(
    p: &mut Producer,
    action: ReviewAction,
    person: &str,
    now: i64,
    to: ReviewState,
) {
    p.review.state = to;
    p.review.history.push(ReviewEvent {
        id: crate::new_id(),
        action,
        by: person.to_string(),
        at_ms: now,
        state_after: to,
    });
}

fn check_producer(actor: &Actor, before: Option<&Producer>, after: &Producer) -> Result<()> {
    // A review step starts from the state that holds for the fields (an approval that an
    // edit merged after no longer counts), so nobody can re-approve by keeping a stale one.
    let from = before.map_or(ReviewState::Draft, |b| b.effective_review_state());
    let to = after.review.state;
    // Authors: a new entry names its creator, a new review event the person taking it (an
    // administrator importing paper records may name others).
    if actor.role != Role::Admin && before.is_none() && after.created_by != actor.person_id {
        return Err(forbid(format!(
            "an entry is created by the person who creates it, not {}",
            after.created_by
        )));
    }
    check_new_steps_authors(
        actor,
        before.map_or(&[][..], |b| &b.review.history[..]),
        after,
    )?;
    check_new_confirmations(
        actor,
        before.map_or(&[][..], |b| &b.confirmations[..]),
        after,
    )?;
    check_duplicate_bookkeeping(actor, before, after)?;
    if let Some(b) = before {
        check_producer_kept(b, after)?;
        if let Some(m) = &b.merged_into {
            let mut same = after.clone();
            same.updated_at_ms = b.updated_at_ms;
            if &same != b {
                return Err(Error::Workflow(format!(
                    "this entry was merged into {} as its duplicate: edit that entry instead",
                    m.into
                )));
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

/// What an entry keeps through any change: its creator, its creation time and every step of
/// its review history.
fn check_producer_kept(before: &Producer, after: &Producer) -> Result<()> {
    if before.created_by != after.created_by || before.created_at_ms != after.created_at_ms {
        return Err(forbid("created_by and created_at_ms cannot change"));
    }
    if before
        .review
        .history
        .iter()
        .any(|e| !after.review.history.contains(e))
    {
        return Err(forbid("review history can only grow"));
    }
    if before
        .confirmations
        .iter()
        .any(|c| !after.confirmations.contains(c))
    {
        return Err(forbid(
            "yearly confirmations can only be added, never changed or removed",
        ));
    }
    Ok(())
}

/// Whether `role` resolves possible duplicates (supervisors, county staff, administrators).
pub fn resolves_duplicates(role: Role) -> bool {
    matches!(role, Role::Supervisor | Role::CountyReviewer | Role::Admin)
}

/// Resolves the possible duplicate `other` of `p` as `person` at `now`: "not a duplicate"
/// (`merge == false`: the mark is closed for good) or "duplicate of `other`" (`merge`: `p`
/// becomes a tombstone pointing to `other`, recording the directory fields it had, so that
/// an edit made on a phone that had not yet seen the merge can be carried over). The server
/// mirrors the outcome onto `other`'s mark. Who may do it is checked by [`check_change`].
pub fn resolve_duplicate(
    p: &mut Producer,
    other: &str,
    merge: bool,
    person: &str,
    now: i64,
) -> Result<()> {
    if let Some(m) = &p.merged_into {
        return Err(Error::Workflow(format!(
            "this entry was already merged into {}",
            m.into
        )));
    }
    let Some(mark) = p.duplicates.iter_mut().find(|m| m.id == other) else {
        return Err(Error::Invalid(crate::validate::Invalid::new(
            "other",
            format!("{other} is not marked as a possible duplicate of this entry"),
        )));
    };
    if let Some(r) = &mark.resolution {
        return Err(Error::Workflow(format!(
            "this possible duplicate was already resolved ({})",
            r.outcome.as_str()
        )));
    }
    let outcome = if merge {
        DuplicateOutcome::MergedIntoOther
    } else {
        DuplicateOutcome::NotDuplicate
    };
    mark.resolution = Some(DuplicateResolution {
        outcome,
        by: person.to_string(),
        at_ms: now,
    });
    if merge {
        p.merged_into = Some(MergedInto {
            into: other.to_string(),
            by: person.to_string(),
            at_ms: now,
            seen: p.seen_fields(),
        });
    }
    p.updated_at_ms = now;
    Ok(())
}

/// Settles the carried edit `edit` of `p` (a conflict the server left: an edit of a merged
/// entry that this entry's value contradicts) as `person` at `now`: `take` sets the field to
/// the carried value (an edit like any other: an approved entry goes back to review),
/// otherwise this entry keeps its value. Either way the conflict is closed in `person`'s
/// name.
pub fn settle_carried_edit(
    p: &mut Producer,
    edit: &str,
    take: bool,
    person: &str,
    now: i64,
) -> Result<()> {
    let Some(i) = p.carried_edits.iter().position(|e| e.id == edit) else {
        return Err(Error::Invalid(crate::validate::Invalid::new(
            "edit",
            format!("{edit} is not a carried edit of this entry"),
        )));
    };
    let e = p.carried_edits[i].clone();
    if e.applied || e.settled_by.is_some() {
        return Err(Error::Workflow(format!(
            "the carried edit {edit} is not an open conflict"
        )));
    }
    if take {
        let before = p.clone();
        let value: serde_json::Value = serde_json::from_str(&e.value).map_err(|err| {
            Error::Invalid(crate::validate::Invalid::new(
                "edit",
                format!("{edit}: the carried value is not JSON: {err}"),
            ))
        })?;
        p.set_directory_field(&e.field, value)
            .map_err(|m| Error::Invalid(crate::validate::Invalid::new("edit", m)))?;
        apply_edit_workflow(&before, p, person, now);
    }
    p.carried_edits[i].settled_by = Some(person.to_string());
    p.updated_at_ms = now;
    Ok(())
}

/// The duplicate bookkeeping of a producer (`_duplicates`, `_merged_into`,
/// `_carried_edits`) is written by the server; a person may only resolve an open mark
/// (supervisors and county staff: "not a duplicate", or "duplicate of" with the tombstone
/// pointing to the other entry) and settle an open carried edit. Judged per change,
/// against what its author had seen (the authors are checked). A merged result is not
/// judged again ([`merge_producer`]): every change to the bookkeeping was judged on its
/// own (the server's own changes are verified by their tag instead), and they are only
/// ever written by the server and by the people who resolve, so whatever the merge picks
/// among them is theirs.
fn check_duplicate_bookkeeping(
    actor: &Actor,
    before: Option<&Producer>,
    after: &Producer,
) -> Result<()> {
    let old = before.map_or(&[][..], |b| &b.duplicates[..]);
    for m in &after.duplicates {
        let Some(o) = old.iter().find(|o| o.id == m.id) else {
            return Err(forbid(
                "possible-duplicate marks are written by the server, not by a device",
            ));
        };
        let mut same = m.clone();
        same.resolution = o.resolution.clone();
        if &same != o {
            return Err(forbid(
                "a possible-duplicate mark cannot be changed, only resolved",
            ));
        }
        if m.resolution == o.resolution {
            continue;
        }
        let Some(r) = &m.resolution else {
            return Err(forbid("a resolved possible duplicate cannot be reopened"));
        };
        if !resolves_duplicates(actor.role) {
            return Err(forbid(
                "only supervisors and county staff resolve possible duplicates",
            ));
        }
        if o.resolution.is_some() {
            return Err(Error::Workflow(format!(
                "the possible duplicate {} was already resolved",
                m.id
            )));
        }
        if r.by != actor.person_id && actor.role != Role::Admin {
            return Err(forbid(format!(
                "a possible duplicate is resolved by the person who resolves it, not {}",
                r.by
            )));
        }
        if r.outcome == DuplicateOutcome::OtherMergedHere {
            return Err(forbid(
                "\"the other entry merged here\" is written by the server",
            ));
        }
        let points = after.merged_into.as_ref().map(|t| t.into.as_str());
        if r.outcome == DuplicateOutcome::MergedIntoOther && points != Some(m.id.as_str()) {
            return Err(Error::Workflow(format!(
                "merging into {} makes this entry a tombstone pointing to it",
                m.id
            )));
        }
    }
    if old
        .iter()
        .any(|o| !after.duplicates.iter().any(|m| m.id == o.id))
    {
        return Err(forbid("possible-duplicate marks cannot be removed"));
    }
    match (
        before.and_then(|b| b.merged_into.as_ref()),
        &after.merged_into,
    ) {
        (None, None) => {}
        (Some(b), Some(a)) if a == b => {}
        (Some(_), None) => return Err(forbid("a merged entry cannot be unmerged")),
        (b, Some(a)) => {
            if !resolves_duplicates(actor.role) {
                return Err(forbid(
                    "only supervisors and county staff merge duplicate entries",
                ));
            }
            if b.is_some() {
                return Err(Error::Workflow("this entry was already merged".into()));
            }
            if a.by != actor.person_id && actor.role != Role::Admin {
                return Err(forbid(format!(
                    "a merge is recorded by the person who merges, not {}",
                    a.by
                )));
            }
            if a.into == after.id {
                return Err(Error::Workflow(
                    "an entry cannot be merged into itself".into(),
                ));
            }
            let marked = after.duplicates.iter().any(|m| {
                m.id == a.into
                    && m.resolution.as_ref().map(|r| r.outcome)
                        == Some(DuplicateOutcome::MergedIntoOther)
            });
            if !marked {
                return Err(Error::Workflow(format!(
                    "{} is not a possible duplicate resolved as \"duplicate of\" on this entry",
                    a.into
                )));
            }
        }
    }
    let old = before.map_or(&[][..], |b| &b.carried_edits[..]);
    for e in &after.carried_edits {
        let Some(o) = old.iter().find(|o| o.id == e.id) else {
            return Err(forbid(
                "carried edits are written by the server, not by a device",
            ));
        };
        let mut same = e.clone();
        same.settled_by = o.settled_by.clone();
        if &same != o {
            return Err(forbid("a carried edit cannot be changed, only settled"));
        }
        if e.settled_by != o.settled_by {
            if o.settled_by.is_some() {
                return Err(Error::Workflow(format!(
                    "the carried edit {} was already settled",
                    e.id
                )));
            }
            if e.settled_by.as_deref() != Some(actor.person_id.as_str()) {
                return Err(forbid(
                    "a carried edit is settled in the name of the person who settles it",
                ));
            }
        }
    }
    if old
        .iter()
        .any(|o| !after.carried_edits.iter().any(|e| e.id == o.id))
    {
        return Err(forbid("carried edits cannot be removed"));
    }
    Ok(())
}

/// A yearly confirmation not in `old` names the person who pushes it, whatever their role
/// (a confirmation says that this person checked the entry).
fn check_new_confirmations(
    actor: &Actor,
    old: &[YearConfirmation],
    after: &Producer,
) -> Result<()> {
    match after
        .confirmations
        .iter()
        .find(|c| !old.contains(c) && c.by != actor.person_id)
    {
        Some(c) => Err(forbid(format!(
            "a yearly confirmation is recorded by the person who confirms, not {}",
            c.by
        ))),
        None => Ok(()),
    }
}

/// A review step not in `old` names the person who takes it (an administrator importing
/// paper records may name others).
fn check_new_steps_authors(actor: &Actor, old: &[ReviewEvent], after: &Producer) -> Result<()> {
    if actor.role == Role::Admin {
        return Ok(());
    }
    match after
        .review
        .history
        .iter()
        .find(|e| !old.contains(e) && e.by != actor.person_id)
    {
        Some(e) => Err(forbid(format!(
            "a review step is recorded by the person who takes it, not {}",
            e.by
        ))),
        None => Ok(()),
    }
}

fn check_visit(actor: &Actor, before: Option<&Visit>, after: &Visit) -> Result<()> {
    let reviewer = reviews_visits(actor.role);
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
        // Only a follow-up link, a resolution and a review may be added (a replaced
        // follow-up link is refused below, with its own reason).
        if changed_beyond_additions(b, after, true) {
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
        (Record::Template(_), Record::Template(t)) => check_template(tree, actor, &t.grid),
        (Record::Acceptance(s), Record::Acceptance(m)) => {
            check_acceptance(tree, actor, Some(stored), Some(s), m)
        }
        _ => Err(forbid("a record cannot change its kind")),
    }
}

fn merge_producer(actor: &Actor, s: &Producer, m: &Producer) -> Result<()> {
    check_producer_kept(s, m)?;
    check_new_steps_authors(actor, &s.review.history, m)?;
    check_new_confirmations(actor, &s.confirmations, m)?;
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
    let reviewer = reviews_visits(actor.role);
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
        if changed_beyond_additions(s, m, false) {
            return Err(Error::Workflow(
                "a reviewed visit cannot be changed except to add a follow-up, a resolution or a review"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Who reviews visits: supervisors, county staff and administrators.
fn reviews_visits(role: Role) -> bool {
    matches!(role, Role::Supervisor | Role::CountyReviewer | Role::Admin)
}

/// Whether `after` changes a completed visit `before` beyond what may still be added to
/// it: a review, a follow-up link where it had none, the resolution of its rectification
/// (and the update time). With `ignore_follow_up`, a replaced follow-up link is not counted
/// either (the caller refuses it with its own reason).
fn changed_beyond_additions(before: &Visit, after: &Visit, ignore_follow_up: bool) -> bool {
    let mut allowed = after.clone();
    allowed.review = before.review.clone();
    allowed.updated_at_ms = before.updated_at_ms;
    if ignore_follow_up || before.follow_up_visit.is_none() {
        allowed.follow_up_visit = before.follow_up_visit.clone();
    }
    if let (Some(ar), Some(br)) = (&mut allowed.rectification, &before.rectification) {
        ar.resolved_at_ms = br.resolved_at_ms;
    }
    &allowed != before
}

/// Authors inside a visit: those of existing findings and rapid tests stay as they were,
/// and every new one names the person who pushed it (an administrator, who may record a
/// visit for its inspector when importing paper records, may name others).
fn check_entry_authors(actor: &Actor, before: Option<&Visit>, after: &Visit) -> Result<()> {
    let (old_findings, old_tests) = before.map_or((&[][..], &[][..]), |b| {
        (&b.findings[..], &b.rapid_tests[..])
    });
    check_list_authors(
        actor,
        old_findings,
        &after.findings,
        |f| (&f.id, &f.recorded_by),
        "the recorder of a finding cannot change",
        |by| format!("a finding is recorded by the person who records it, not {by}"),
    )?;
    check_list_authors(
        actor,
        old_tests,
        &after.rapid_tests,
        |t| (&t.id, &t.operator),
        "the operator of a rapid test cannot change",
        |by| format!("a rapid test is recorded by its operator, not {by}"),
    )
}

/// Authors of a list's entries (matched by id): an existing entry keeps its author, a new
/// one names the actor unless the actor is an administrator.
fn check_list_authors<T>(
    actor: &Actor,
    old: &[T],
    new: &[T],
    id_and_author: impl Fn(&T) -> (&String, &String),
    author_changed: &str,
    new_by_other: impl Fn(&str) -> String,
) -> Result<()> {
    for entry in new {
        let (id, by) = id_and_author(entry);
        match old.iter().find(|x| id_and_author(x).0 == id) {
            Some(o) if id_and_author(o).1 != by => return Err(forbid(author_changed)),
            None if *by != actor.person_id && actor.role != Role::Admin => {
                return Err(forbid(new_by_other(by)));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProducerType, RiskLevel};

    const NOW: i64 = 1_767_225_600_000;

    fn actions() -> Vec<ReviewAction> {
        vec![
            ReviewAction::Submit,
            ReviewAction::ApproveTownship,
            ReviewAction::ApproveCounty,
            ReviewAction::Return("照片不清楚".into()),
            ReviewAction::EditedAfterApproval,
            ReviewAction::EditedAfterReturn,
        ]
    }

    fn producer_in(state: ReviewState) -> Producer {
        let mut p = Producer::new(
            "测试牧场",
            ProducerType::FamilyRanch,
            "户主",
            "13912345678",
            "V1",
            "p1",
            NOW,
        );
        p.review.state = state;
        if state.is_approved() {
            p.review.approved_fingerprint = Some(p.directory_fingerprint());
        }
        p
    }

    #[test]
    fn review_transition_table_with_refusals() {
        use ReviewState::*;
        let expected = |a: &ReviewAction, from: ReviewState| match (a, from) {
            (ReviewAction::Submit, Draft | Returned) => Some(Submitted),
            (ReviewAction::ApproveTownship, Submitted) => Some(TownshipApproved),
            (ReviewAction::ApproveCounty, TownshipApproved) => Some(CountyApproved),
            (ReviewAction::Return(_), Submitted | TownshipApproved | CountyApproved) => {
                Some(Returned)
            }
            _ => None,
        };
        let mut allowed = 0;
        for a in actions() {
            for from in REVIEW_STATES {
                match (review_transition(from, &a), expected(&a, from)) {
                    (Ok(to), Some(want)) => {
                        assert_eq!(to, want, "{} from {}", a.as_str(), from.as_str());
                        // Someone may take every step of the table.
                        assert!(review_step_allowed(Role::Admin, from, to));
                        allowed += 1;
                    }
                    (Err(Error::Workflow(msg)), None) => assert_eq!(
                        msg,
                        format!("cannot {} an entry that is {}", a.as_str(), from.as_str())
                    ),
                    (got, want) => {
                        panic!(
                            "{} from {}: {got:?}, want {want:?}",
                            a.as_str(),
                            from.as_str()
                        )
                    }
                }
            }
        }
        assert_eq!(allowed, 7);
        // The steps an edit records are never taken by hand, from any state.
        for from in REVIEW_STATES {
            assert!(review_transition(from, &ReviewAction::EditedAfterApproval).is_err());
            assert!(review_transition(from, &ReviewAction::EditedAfterReturn).is_err());
        }
    }

    #[test]
    fn a_review_step_records_state_fingerprint_reason_and_history() {
        let mut p = producer_in(ReviewState::Submitted);
        take_review_step(&mut p, ReviewAction::ApproveTownship, "s1", NOW + 1).unwrap();
        assert_eq!(p.review.state, ReviewState::TownshipApproved);
        assert_eq!(
            p.review.approved_fingerprint,
            Some(p.directory_fingerprint())
        );
        let e = p.review.history.last().unwrap();
        assert_eq!(
            (&e.action, e.by.as_str(), e.at_ms, e.state_after),
            (
                &ReviewAction::ApproveTownship,
                "s1",
                NOW + 1,
                ReviewState::TownshipApproved
            )
        );

        take_review_step(
            &mut p,
            ReviewAction::Return("缺少证照".into()),
            "c1",
            NOW + 2,
        )
        .unwrap();
        assert_eq!(p.review.state, ReviewState::Returned);
        assert_eq!(p.review.return_reason.as_deref(), Some("缺少证照"));
        assert_eq!(p.review.history.len(), 2);
    }

    #[test]
    fn refused_review_steps_leave_the_entry_alone() {
        // A return needs a reason.
        let mut p = producer_in(ReviewState::Submitted);
        let before = p.clone();
        assert!(matches!(
            take_review_step(&mut p, ReviewAction::Return("  ".into()), "s1", NOW),
            Err(Error::Invalid(_))
        ));
        assert_eq!(p, before);
        // A draft cannot be approved.
        let mut p = producer_in(ReviewState::Draft);
        let before = p.clone();
        assert!(matches!(
            take_review_step(&mut p, ReviewAction::ApproveTownship, "s1", NOW),
            Err(Error::Workflow(_))
        ));
        assert_eq!(p, before);
        // A stale approval counts as submitted: it can be approved again at the township
        // level, not sent up to the county.
        let mut p = producer_in(ReviewState::TownshipApproved);
        p.phone = "13800000000".into();
        assert!(matches!(
            take_review_step(&mut p, ReviewAction::ApproveCounty, "c1", NOW),
            Err(Error::Workflow(msg)) if msg == "cannot approve_county an entry that is submitted"
        ));
        take_review_step(&mut p, ReviewAction::ApproveTownship, "s1", NOW).unwrap();
        assert_eq!(p.effective_review_state(), ReviewState::TownshipApproved);
    }

    #[test]
    fn an_edit_sends_approved_entries_back_and_returned_ones_to_draft() {
        let cases = [
            (
                ReviewState::CountyApproved,
                Some((ReviewAction::EditedAfterApproval, ReviewState::Submitted)),
            ),
            (
                ReviewState::TownshipApproved,
                Some((ReviewAction::EditedAfterApproval, ReviewState::Submitted)),
            ),
            (
                ReviewState::Returned,
                Some((ReviewAction::EditedAfterReturn, ReviewState::Draft)),
            ),
            (ReviewState::Draft, None),
            (ReviewState::Submitted, None),
        ];
        for (state, step) in cases {
            let before = producer_in(state);
            let mut after = before.clone();
            after.phone = "13800000000".into();
            apply_edit_workflow(&before, &mut after, "l1", NOW + 5);
            match step {
                Some((action, to)) => {
                    assert_eq!(after.review.state, to, "from {}", state.as_str());
                    assert_eq!(after.review.history.len(), 1);
                    let e = &after.review.history[0];
                    assert_eq!(
                        (&e.action, e.by.as_str(), e.at_ms, e.state_after),
                        (&action, "l1", NOW + 5, to)
                    );
                }
                None => assert_eq!(after.review, before.review, "from {}", state.as_str()),
            }
        }
    }

    #[test]
    fn an_edit_keeps_review_and_creation_as_stored() {
        let before = producer_in(ReviewState::CountyApproved);
        // A field outside the directory: the approval stands.
        let mut after = before.clone();
        after.risk = RiskLevel::High;
        apply_edit_workflow(&before, &mut after, "l1", NOW);
        assert_eq!(after.review, before.review);
        assert_eq!(after.effective_review_state(), ReviewState::CountyApproved);
        // Whatever the edit says of review and creation, the stored values stay.
        let mut after = before.clone();
        after.review.state = ReviewState::Draft;
        after.review.history.clear();
        after.created_by = "someone-else".into();
        after.created_at_ms = 0;
        apply_edit_workflow(&before, &mut after, "l1", NOW);
        assert_eq!(after.review, before.review);
        assert_eq!(
            (after.created_by.as_str(), after.created_at_ms),
            ("p1", NOW)
        );
    }

    #[test]
    fn township_acceptance_is_decided_by_county_staff_on_townships_in_scope() {
        use crate::model::{Acceptance, AcceptanceDecision, GridKind, GridNode};
        let node = |code: &str, level, parent: Option<&str>| GridNode {
            code: code.into(),
            name: code.into(),
            level,
            kind: GridKind::Pastoral,
            parent: parent.map(str::to_string),
        };
        let tree = crate::store::TreeSnapshot::from_nodes(&[
            node("B", GridLevel::Banner, None),
            node("B2", GridLevel::Banner, None),
            node("T1", GridLevel::Township, Some("B")),
            node("T1-V1", GridLevel::Village, Some("T1")),
            node("T9", GridLevel::Township, Some("B2")),
        ]);
        let acc = |grid: &str, by: &str| {
            Record::Acceptance(Acceptance {
                id: Acceptance::record_id(grid, 2024),
                grid: grid.into(),
                year: 2024,
                decision: AcceptanceDecision::Accepted,
                decided_on: "2024-11-30".into(),
                decided_by: by.into(),
                note: String::new(),
                updated_at_ms: NOW,
            })
        };
        let county = Actor::new("c1", Role::CountyReviewer, vec!["B".into()]);
        let admin = Actor::new("a1", Role::Admin, vec![]);
        let sup = Actor::new("s1", Role::Supervisor, vec!["T1".into()]);
        let liaison = Actor::new("l1", Role::Liaison, vec!["T1-V1".into()]);
        check_change(&tree, &county, None, &acc("T1", "c1")).unwrap();
        // An administrator may enter a paper decision in the reviewer's name.
        check_change(&tree, &admin, None, &acc("T9", "c1")).unwrap();
        for (who, rec) in [
            (&sup, acc("T1", "s1")),
            (&sup, acc("T1", "c1")),
            (&liaison, acc("T1", "l1")),
            // Outside the county's scope; in another person's name.
            (&county, acc("T9", "c1")),
            (&county, acc("T1", "s1")),
        ] {
            assert!(
                matches!(
                    check_change(&tree, who, None, &rec),
                    Err(Error::Forbidden(_))
                ),
                "{} {:?}",
                who.person_id,
                rec.grid()
            );
        }
        // Only a township-level grid, named as the field at fault.
        match check_change(&tree, &county, None, &acc("T1-V1", "c1")) {
            Err(Error::Invalid(i)) => assert_eq!(i.field, "grid"),
            other => panic!("{other:?}"),
        }
        // A decision keeps its township and year; changing it is the county's (and a
        // supervisor cannot, in any name).
        let before = acc("T1", "c1");
        let Record::Acceptance(mut a) = before.clone() else {
            unreachable!()
        };
        a.decision = AcceptanceDecision::Withdrawn;
        check_change(
            &tree,
            &county,
            Some(&before),
            &Record::Acceptance(a.clone()),
        )
        .unwrap();
        check_merge(&tree, &county, &before, &Record::Acceptance(a.clone())).unwrap();
        assert!(check_merge(&tree, &sup, &before, &Record::Acceptance(a.clone())).is_err());
        a.year = 2025;
        assert!(check_change(&tree, &county, Some(&before), &Record::Acceptance(a)).is_err());

        // Validation names the field.
        let Record::Acceptance(good) = acc("T1", "c1") else {
            unreachable!()
        };
        crate::validate::validate_acceptance(&good).unwrap();
        let field = |edit: &dyn Fn(&mut Acceptance)| {
            let mut a = good.clone();
            edit(&mut a);
            crate::validate::validate_acceptance(&a).unwrap_err().field
        };
        assert_eq!(field(&|a| a.decided_on = "2024-02-30".into()), "decided_on");
        assert_eq!(field(&|a| a.decided_by = " ".into()), "decided_by");
        assert_eq!(field(&|a| a.note = "字".repeat(2001)), "note");
        assert_eq!(field(&|a| a.year = 1999), "year");
        assert_eq!(field(&|a| a.id = "acc:T2:2024".into()), "id");
        assert_eq!(field(&|a| a.updated_at_ms = 0), "updated_at_ms");
    }

    #[test]
    fn yearly_confirmations_are_added_in_ones_own_name_and_never_taken_back() {
        use crate::model::{GridKind, GridNode, YearConfirmation};
        let node = |code: &str, level, parent: Option<&str>| GridNode {
            code: code.into(),
            name: code.into(),
            level,
            kind: GridKind::Pastoral,
            parent: parent.map(str::to_string),
        };
        let tree = crate::store::TreeSnapshot::from_nodes(&[
            node("T1", GridLevel::Township, None),
            node("V1", GridLevel::Village, Some("T1")),
            node("V2", GridLevel::Village, Some("T1")),
        ]);
        let liaison = Actor::new("l1", Role::Liaison, vec!["V1".into()]);
        let other = Actor::new("l2", Role::Liaison, vec!["V2".into()]);
        let admin = Actor::new("a1", Role::Admin, vec![]);
        let before = producer_in(ReviewState::CountyApproved);
        let mut mine = before.clone();
        confirm_year(&mut mine, 2026, true, "l1", NOW).unwrap();
        // The approval holds: nothing the fingerprint covers changed.
        assert_eq!(mine.effective_review_state(), ReviewState::CountyApproved);
        assert_eq!(mine.review, before.review);
        let (b, m) = (
            Record::Producer(before.clone()),
            Record::Producer(mine.clone()),
        );
        check_change(&tree, &liaison, Some(&b), &m).unwrap();
        check_merge(&tree, &liaison, &b, &m).unwrap();
        // Outside the grid, or in another person's name (an administrator's too).
        assert!(check_change(&tree, &other, Some(&b), &m).is_err());
        assert!(check_change(&tree, &admin, Some(&b), &m).is_err());
        assert!(check_merge(&tree, &admin, &b, &m).is_err());
        // A confirmation is never removed or changed, by its author or anyone.
        let mut removed = mine.clone();
        removed.confirmations.clear();
        let mut changed = mine.clone();
        changed.confirmations[0].operating = false;
        for after in [removed, changed] {
            let a = Record::Producer(after);
            for who in [&liaison, &admin] {
                assert!(matches!(
                    check_change(&tree, who, Some(&m), &a),
                    Err(Error::Forbidden(_))
                ));
                assert!(matches!(
                    check_merge(&tree, who, &m, &a),
                    Err(Error::Forbidden(_))
                ));
            }
        }
        // Only this year or the last, by the clock and in the document.
        for year in [2027, 2024] {
            let mut p = before.clone();
            assert!(
                matches!(confirm_year(&mut p, year, true, "l1", NOW), Err(Error::Invalid(i)) if i.field == "year")
            );
            assert_eq!(p, before);
        }
        let mut crafted = mine.clone();
        crafted.id_number = Some("11010519491231002X".into());
        crafted.confirmations.push(YearConfirmation {
            id: crate::new_id(),
            year: 2030,
            operating: true,
            by: "l1".into(),
            at_ms: NOW,
        });
        assert_eq!(
            crate::validate::validate_producer(&crafted)
                .unwrap_err()
                .field,
            "confirmations[1].year"
        );
    }
}
