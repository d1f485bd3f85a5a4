//! People who use the system and the roles that decide what they may do.

use serde::{Deserialize, Serialize};

/// What a person does in the grid system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 协管员/信息员: village liaison, level-2 grid.
    Liaison,
    /// 监管员: township supervisor, level-1 grid.
    Supervisor,
    /// 旗县农牧部门: county (banner) reviewer.
    CountyReviewer,
    /// System administrator: everything.
    Admin,
}

impl Role {
    /// Stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Liaison => "liaison",
            Role::Supervisor => "supervisor",
            Role::CountyReviewer => "county_reviewer",
            Role::Admin => "admin",
        }
    }

    /// Parses the stable identifier.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "liaison" => Role::Liaison,
            "supervisor" => Role::Supervisor,
            "county_reviewer" | "county" => Role::CountyReviewer,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    /// Chinese title shown on grid charts.
    pub fn label_zh(self) -> &'static str {
        match self {
            Role::Liaison => "协管员",
            Role::Supervisor => "监管员",
            Role::CountyReviewer => "旗县审核员",
            Role::Admin => "系统管理员",
        }
    }
}

/// A person and the grids assigned to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Person {
    /// Stable identifier.
    pub id: String,
    /// Full name.
    pub name: String,
    /// Mobile phone.
    pub phone: String,
    /// Role.
    pub role: Role,
    /// Codes of the grid nodes assigned to this person.
    pub grids: Vec<String>,
}

/// Who is acting: the identity every permission check is made against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Person id.
    pub person_id: String,
    /// Role of that person.
    pub role: Role,
    /// Assigned grid codes.
    pub grids: Vec<String>,
}

impl Actor {
    /// An actor for a person.
    pub fn new(person_id: impl Into<String>, role: Role, grids: Vec<String>) -> Self {
        Actor {
            person_id: person_id.into(),
            role,
            grids,
        }
    }
}
