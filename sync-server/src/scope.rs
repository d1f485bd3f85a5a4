//! What a person may see: scope from the grid tree, and the reference data sent to devices.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use gridsync_core::model::{Actor, GridNode, Person, Role};
use gridsync_core::rules::{in_scope, is_within};
use gridsync_core::scale::ScaleOverrides;
use gridsync_core::store::TreeSnapshot;
use gridsync_core::sync::protocol::Reference;
use sha2::{Digest, Sha256};

use crate::storage::{Storage, StorageResult};

/// A person's scope, computed from the stored grid tree and assignment.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The acting identity.
    pub actor: Actor,
    /// Grids whose records the person may read and write.
    pub readable: HashSet<String>,
    /// Ancestor grids whose templates (and township acceptance decisions) the person may
    /// read ([`RecordKind::read_from_below`](gridsync_core::model::RecordKind::read_from_below)).
    pub template_grids: HashSet<String>,
    /// The grid tree.
    pub tree: Arc<TreeSnapshot>,
    /// Reference data for the device.
    pub reference: Reference,
    /// The league of the person's grids ([`crate::scale::league_of`]), whose livestock
    /// scale thresholds the device fetches (`GET /v1/scale-thresholds`).
    pub league: Option<String>,
    /// That league's changes to the national scale thresholds (empty: none). The
    /// reference version covers them ([`Scope::with_scale_overrides`]).
    pub scale_overrides: ScaleOverrides,
}

impl Scope {
    /// Computes the scope of `me`.
    pub fn compute(
        nodes: &[GridNode],
        people: &[Person],
        me: &Person,
        tree: Arc<TreeSnapshot>,
    ) -> Scope {
        let actor = Actor::new(me.id.clone(), me.role, me.grids.clone());
        let readable: HashSet<String> = nodes
            .iter()
            .filter(|n| in_scope(tree.as_ref(), &actor, &n.code))
            .map(|n| n.code.clone())
            .collect();
        let template_grids: HashSet<String> = nodes
            .iter()
            .filter(|n| !readable.contains(&n.code))
            .filter(|n| {
                me.grids
                    .iter()
                    .any(|g| is_within(tree.as_ref(), g, &n.code))
            })
            .map(|n| n.code.clone())
            .collect();
        let mut grids: Vec<GridNode> = nodes
            .iter()
            .filter(|n| readable.contains(&n.code) || template_grids.contains(&n.code))
            .cloned()
            .collect();
        grids.sort_by(|a, b| a.code.cmp(&b.code));
        let mut visible_people: Vec<Person> = people
            .iter()
            .filter(|p| p.role != Role::Admin || p.id == me.id)
            .filter(|p| {
                p.grids
                    .iter()
                    .any(|g| readable.contains(g) || template_grids.contains(g))
            })
            .cloned()
            .collect();
        visible_people.sort_by(|a, b| a.id.cmp(&b.id));
        let mut r: Vec<String> = readable.iter().cloned().collect();
        r.sort();
        let mut t: Vec<String> = template_grids.iter().cloned().collect();
        t.sort();
        let mut reference = Reference {
            version: String::new(),
            me: me.clone(),
            grids,
            readable: r,
            template_grids: t,
            people: visible_people,
        };
        let digest = Sha256::digest(serde_json::to_vec(&reference).unwrap_or_default());
        reference.version = hex::encode(&digest[..12]);
        let league = crate::scale::league_of(tree.as_ref(), &me.grids);
        Scope {
            actor,
            readable,
            template_grids,
            tree,
            reference,
            league,
            scale_overrides: ScaleOverrides::default(),
        }
    }

    /// The scope with its league's scale threshold overrides. Overrides change the
    /// reference version (so that a device fetches them at its next sync); without any it
    /// stays what [`Scope::compute`] gave, so a league that never set any re-sends nothing.
    pub fn with_scale_overrides(mut self, overrides: ScaleOverrides) -> Scope {
        self.scale_overrides = overrides;
        if self.scale_overrides.0.is_empty() {
            return self;
        }
        let mut reference = self.reference.clone();
        reference.version = String::new();
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&reference).unwrap_or_default());
        h.update(b"\nscale_thresholds ");
        h.update(self.league.as_deref().unwrap_or("").as_bytes());
        h.update(b" ");
        h.update(self.scale_overrides.to_json().as_bytes());
        self.reference.version = hex::encode(&h.finalize()[..12]);
        self
    }

    /// Whether a record of `kind` in `grid` is visible.
    pub fn can_read(&self, kind: gridsync_core::model::RecordKind, grid: &str) -> bool {
        self.readable.contains(grid)
            || (kind.read_from_below() && self.template_grids.contains(grid))
    }
}

/// Reference generation, grid tree and scopes computed at that generation.
type Cached = (i64, Option<Arc<TreeSnapshot>>, HashMap<String, Arc<Scope>>);

/// Caches scopes until grids or people change.
#[derive(Debug, Default)]
pub struct ScopeCache {
    inner: Mutex<Cached>,
}

impl ScopeCache {
    /// The scope of a person (`None` if the person is unknown or inactive).
    pub fn scope(
        &self,
        storage: &dyn Storage,
        person_id: &str,
    ) -> StorageResult<Option<Arc<Scope>>> {
        let generation = storage.reference_generation()?;
        {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if g.0 != generation {
                *g = (generation, None, HashMap::new());
            }
            if let Some(s) = g.2.get(person_id) {
                return Ok(Some(s.clone()));
            }
        }
        let Some(me) = storage.person(person_id)? else {
            return Ok(None);
        };
        let nodes = storage.grids()?;
        let people = storage.people()?;
        let tree = Arc::new(TreeSnapshot::from_nodes(&nodes));
        let scope = Scope::compute(&nodes, &people, &me, tree.clone());
        let overrides = match &scope.league {
            Some(league) => storage
                .scale_overrides(league)?
                .map(|l| l.overrides)
                .unwrap_or_default(),
            None => ScaleOverrides::default(),
        };
        let scope = Arc::new(scope.with_scale_overrides(overrides));
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 == generation {
            g.1 = Some(tree);
            g.2.insert(person_id.to_string(), scope.clone());
        }
        Ok(Some(scope))
    }
}
