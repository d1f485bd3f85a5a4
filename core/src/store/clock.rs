//! The device's clock measured against the server's: every sync measures the offset, the
//! store keeps it, and [`crate::now_ms`] dates what the store writes by the server's clock.

use rusqlite::Connection;

use super::meta::{get as get_meta, set as set_meta};
use super::Store;
use crate::Result;

const CLOCK_KEY: &str = "clock_correction_ms";

/// Loads the correction kept by the store into [`crate::now_ms`] (at open).
pub(crate) fn load(conn: &Connection) -> Result<()> {
    if let Some(v) = get_meta(conn, CLOCK_KEY)? {
        crate::set_clock_correction_ms(v.parse().unwrap_or(0));
    }
    Ok(())
}

impl Store {
    /// Takes the offset a sync measured between the server's clock and [`crate::now_ms`]
    /// (`server - local`). Offsets under [`crate::CLOCK_CORRECTION_THRESHOLD_MS`] in all
    /// are jitter and leave the clock alone. Returns the correction now in effect.
    pub fn note_clock_offset(&self, measured_ms: i64) -> Result<i64> {
        let total = crate::clock_correction_ms().saturating_add(measured_ms);
        let correction = if total.abs() >= crate::CLOCK_CORRECTION_THRESHOLD_MS {
            total
        } else {
            0
        };
        if correction != crate::clock_correction_ms() {
            tracing::warn!(
                "the device's clock is {} s off the server's; dating records by the server's clock",
                -correction / 1000
            );
            self.write(|tx| set_meta(tx, CLOCK_KEY, &correction.to_string()))?;
            crate::set_clock_correction_ms(correction);
        }
        Ok(correction)
    }

    /// How far the device's clock is from the server's as last measured (milliseconds to
    /// add to the system clock; 0 when it is right or was never measured).
    pub fn clock_correction(&self) -> Result<i64> {
        self.read(|c| {
            Ok(get_meta(c, CLOCK_KEY)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0))
        })
    }
}
