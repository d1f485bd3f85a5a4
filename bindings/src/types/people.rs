//! People, roles and the grid tree.

use gridsync_core::model as m;
use m::{GridKind as CGridKind, GridLevel as CGridLevel, Role as CRole};

mirror_enum! {
    /// What a person does in the grid system.
    Role = CRole {
        /// 协管员: village liaison (level-2 grid).
        Liaison,
        /// 监管员: township supervisor (level-1 grid).
        Supervisor,
        /// 旗县审核员: county reviewer.
        CountyReviewer,
        /// System administrator.
        Admin,
    }
}

mirror_enum! {
    /// Administrative level of a grid node.
    GridLevel = CGridLevel {
        /// 自治区.
        Region,
        /// 盟市.
        League,
        /// 旗县.
        Banner,
        /// 苏木乡镇: the level-1 grid.
        Township,
        /// 嘎查村: the level-2 grid.
        Village,
        /// Level-3 sub-grid.
        SubGrid,
    }
}

mirror_enum! {
    /// Farming, pastoral or mixed area.
    GridKind = CGridKind {
        /// 农区.
        Farming,
        /// 牧区.
        Pastoral,
        /// 半农半牧.
        Mixed,
    }
}

/// A person and the grids assigned to them.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Person {
    /// Stable identifier.
    pub id: String,
    /// Full name.
    pub name: String,
    /// Mobile phone.
    pub phone: String,
    /// Role.
    pub role: Role,
    /// Codes of the assigned grid nodes.
    pub grids: Vec<String>,
}

impl From<m::Person> for Person {
    fn from(p: m::Person) -> Self {
        Person {
            id: p.id,
            name: p.name,
            phone: p.phone,
            role: p.role.into(),
            grids: p.grids,
        }
    }
}

impl From<Person> for m::Person {
    fn from(p: Person) -> Self {
        m::Person {
            id: p.id,
            name: p.name,
            phone: p.phone,
            role: p.role.into(),
            grids: p.grids,
        }
    }
}

/// One node of the grid tree.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GridNode {
    /// Administrative division code.
    pub code: String,
    /// Chinese name.
    pub name: String,
    /// Level in the tree.
    pub level: GridLevel,
    /// Farming, pastoral or mixed.
    pub kind: GridKind,
    /// Parent code; `None` only for the root.
    #[uniffi(default = None)]
    pub parent: Option<String>,
}

impl From<m::GridNode> for GridNode {
    fn from(g: m::GridNode) -> Self {
        GridNode {
            code: g.code,
            name: g.name,
            level: g.level.into(),
            kind: g.kind.into(),
            parent: g.parent,
        }
    }
}

impl From<GridNode> for m::GridNode {
    fn from(g: GridNode) -> Self {
        m::GridNode {
            code: g.code,
            name: g.name,
            level: g.level.into(),
            kind: g.kind.into(),
            parent: g.parent,
        }
    }
}
