//! Reference data on the device: the grid tree (and its snapshot for permission checks),
//! people, and the person using the device.

use std::collections::HashMap;

use rusqlite::{params, Connection};

use super::columns::{column, GridList};
use super::{meta, Store};
use crate::model::{Actor, GridLevel, GridNode, Person};
use crate::rules::GridTree;
use crate::{Error, Result};

/// The grid tree held in memory for permission checks.
#[derive(Debug, Default, Clone)]
pub struct TreeSnapshot {
    nodes: HashMap<String, (GridLevel, Option<String>)>,
}

impl TreeSnapshot {
    /// A snapshot of the given nodes.
    pub fn from_nodes(nodes: &[GridNode]) -> Self {
        TreeSnapshot {
            nodes: nodes
                .iter()
                .map(|n| (n.code.clone(), (n.level, n.parent.clone())))
                .collect(),
        }
    }
}

impl GridTree for TreeSnapshot {
    fn parent_of(&self, code: &str) -> Option<String> {
        self.nodes.get(code).and_then(|n| n.1.clone())
    }
    fn level_of(&self, code: &str) -> Option<GridLevel> {
        self.nodes.get(code).map(|n| n.0)
    }
}

impl Store {
    /// The person using this device, once set (by enrolment or by hand for offline use).
    pub fn profile(&self) -> Result<Option<Person>> {
        self.read(|c| meta::get_json(c, "profile"))
    }

    /// Sets the person using this device.
    pub fn set_profile(&self, person: &Person) -> Result<()> {
        self.write(|tx| meta::set_json(tx, "profile", person))
    }

    /// The acting identity for local edits.
    pub fn actor(&self) -> Result<Actor> {
        let p = self
            .profile()?
            .ok_or_else(|| Error::NotEnrolled("no person is set up on this device".into()))?;
        Ok(Actor::new(p.id, p.role, p.grids))
    }

    /// Adds or replaces grid nodes.
    pub fn upsert_grids(&self, nodes: &[GridNode]) -> Result<()> {
        for n in nodes {
            n.validate()?;
        }
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO grids (code, name, level, kind, parent) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(code) DO UPDATE SET name = ?2, level = ?3, kind = ?4, parent = ?5",
            )?;
            for n in nodes {
                st.execute(params![n.code, n.name, n.level, n.kind, n.parent])?;
            }
            super::observe::note_tree(TreeSnapshot::from_nodes(&load_grids(tx)?));
            Ok(())
        })?;
        *self.tree.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// Every grid node on the device.
    pub fn grids(&self) -> Result<Vec<GridNode>> {
        self.read(load_grids)
    }

    /// The grid tree for permission checks (cached until the grids change).
    pub fn tree(&self) -> Result<TreeSnapshot> {
        let mut t = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = t.as_ref() {
            return Ok(t.clone());
        }
        let snap = TreeSnapshot::from_nodes(&self.grids()?);
        *t = Some(snap.clone());
        Ok(snap)
    }

    /// Adds or replaces people (reference data for grid charts).
    pub fn upsert_people(&self, people: &[Person]) -> Result<()> {
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO people (id, name, phone, role, grids) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET name = ?2, phone = ?3, role = ?4, grids = ?5",
            )?;
            for p in people {
                let grids = serde_json::to_string(&p.grids).unwrap_or_default();
                st.execute(params![p.id, p.name, p.phone, p.role, grids])?;
            }
            Ok(())
        })
    }

    /// People known on the device.
    pub fn people(&self) -> Result<Vec<Person>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT id, name, phone, role, grids FROM people ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok(Person {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    phone: r.get(2)?,
                    role: column(r, 3, "people", 0)?,
                    grids: column::<GridList>(r, 4, "people", 0)?.0,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

fn load_grids(c: &Connection) -> Result<Vec<GridNode>> {
    let mut st = c.prepare("SELECT code, name, level, kind, parent FROM grids ORDER BY code")?;
    let rows = st.query_map([], |r| {
        Ok(GridNode {
            code: r.get(0)?,
            name: r.get(1)?,
            level: column(r, 2, "grids", 0)?,
            kind: column(r, 3, "grids", 0)?,
            parent: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
