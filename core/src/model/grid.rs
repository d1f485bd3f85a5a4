//! Grid tree nodes: league → banner → township (level-1) → village (level-2) → sub-grid (level-3).

use serde::{Deserialize, Serialize};

/// Administrative level of a grid node, from the region down to level-3 sub-grids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum GridLevel {
    /// 自治区: the whole region.
    Region,
    /// 盟市: league or city.
    League,
    /// 旗县: banner or county.
    Banner,
    /// 苏木乡镇/街道: township, the level-1 grid.
    Township,
    /// 嘎查村: village, the level-2 grid.
    Village,
    /// Level-3 sub-grid inside a large village.
    SubGrid,
}

impl GridLevel {
    /// Stable identifier used in CSV files and the wire format.
    pub fn as_str(self) -> &'static str {
        match self {
            GridLevel::Region => "region",
            GridLevel::League => "league",
            GridLevel::Banner => "banner",
            GridLevel::Township => "township",
            GridLevel::Village => "village",
            GridLevel::SubGrid => "sub_grid",
        }
    }

    /// Parses the stable identifier written by [`GridLevel::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "region" => GridLevel::Region,
            "league" => GridLevel::League,
            "banner" | "county" => GridLevel::Banner,
            "township" => GridLevel::Township,
            "village" => GridLevel::Village,
            "sub_grid" => GridLevel::SubGrid,
            _ => return None,
        })
    }

    /// The level a child of this level must have (sub-grids may only sit under villages).
    pub fn child(self) -> Option<Self> {
        match self {
            GridLevel::Region => Some(GridLevel::League),
            GridLevel::League => Some(GridLevel::Banner),
            GridLevel::Banner => Some(GridLevel::Township),
            GridLevel::Township => Some(GridLevel::Village),
            GridLevel::Village => Some(GridLevel::SubGrid),
            GridLevel::SubGrid => None,
        }
    }

    /// Chinese label shown to field staff.
    pub fn label_zh(self) -> &'static str {
        match self {
            GridLevel::Region => "自治区",
            GridLevel::League => "盟市",
            GridLevel::Banner => "旗县",
            GridLevel::Township => "苏木乡镇（一级网格）",
            GridLevel::Village => "嘎查村（二级网格）",
            GridLevel::SubGrid => "三级网格",
        }
    }
}

/// Farming, pastoral or mixed area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum GridKind {
    /// 农区.
    Farming,
    /// 牧区.
    Pastoral,
    /// 半农半牧.
    Mixed,
}

impl GridKind {
    /// Stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            GridKind::Farming => "farming",
            GridKind::Pastoral => "pastoral",
            GridKind::Mixed => "mixed",
        }
    }

    /// Parses a stable identifier (or its Chinese name).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "farming" | "农区" => GridKind::Farming,
            "pastoral" | "牧区" => GridKind::Pastoral,
            "mixed" | "半农半牧" => GridKind::Mixed,
            _ => return None,
        })
    }
}

/// One node of the grid tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct GridNode {
    /// Administrative division code, unique in the tree (e.g. `152522101`).
    pub code: String,
    /// Chinese name (e.g. 别力古台镇).
    pub name: String,
    /// Level in the tree.
    pub level: GridLevel,
    /// Farming, pastoral or mixed.
    pub kind: GridKind,
    /// Code of the parent node; `None` only for the root.
    #[cfg_attr(feature = "uniffi", uniffi(default = None))]
    pub parent: Option<String>,
}

impl GridNode {
    /// Checks the node on its own (the tree-level checks live with the tree).
    pub fn validate(&self) -> Result<(), crate::Error> {
        use crate::validate::{require_text, Invalid};
        require_text("code", &self.code, 32)?;
        if !self
            .code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(
                Invalid::new("code", "only letters, digits, '-' and '_' are allowed").into(),
            );
        }
        require_text("name", &self.name, 64)?;
        if self.parent.is_none()
            && self.level != GridLevel::Region
            && self.level != GridLevel::League
        {
            return Err(Invalid::new("parent", "only the root may have no parent").into());
        }
        Ok(())
    }
}
