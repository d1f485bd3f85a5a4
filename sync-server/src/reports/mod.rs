//! What townships, counties and leagues report upward, computed on the server from the
//! query tables within the asking person's scope: the figures of the dashboard, township
//! compliance against the year's target, exports, and the public grid chart.

pub mod chart;
pub mod compliance;
pub mod export;
pub mod figures;
pub mod pdf;
pub mod staffing;
pub mod svg;
