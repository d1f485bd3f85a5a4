//! Calendar dates of timestamps: deadlines, "today" for overdue rectifications, the dates
//! on the desk's pages. Field staff live in China Standard Time (UTC+8, no daylight saving),
//! so a day there begins at 16:00 UTC.

const DAY_MS: i64 = 86_400_000;
const CHINA_OFFSET_MS: i64 = 8 * 3_600_000;

/// `YYYY-MM-DD` in UTC of `ms` since the Unix epoch.
pub fn utc_date(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    // Civil from days in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD` in China Standard Time (UTC+8) of `ms` since the Unix epoch.
pub fn china_date(ms: i64) -> String {
    utc_date(ms + CHINA_OFFSET_MS)
}

/// The year in China Standard Time (UTC+8) of `ms` since the Unix epoch.
pub fn china_year(ms: i64) -> i32 {
    let date = china_date(ms);
    // `YYYY-MM-DD`; a year before 0 (never a record's) reads as 0.
    date.get(..date.len() - 6)
        .and_then(|y| y.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_utc_and_in_china() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1_709_251_199_999), "2024-02-29");
        // A Chinese day begins at 16:00 UTC the day before.
        assert_eq!(china_date(1_709_222_399_000), "2024-02-29");
        assert_eq!(china_date(1_709_222_400_000), "2024-03-01");
        assert_eq!(china_date(946_684_800_000), "2000-01-01");
        assert_eq!(china_date(1_767_196_800_000), "2026-01-01");
        // The year turns at 16:00 UTC on 31 December.
        assert_eq!(china_year(1_767_196_799_999), 2025);
        assert_eq!(china_year(1_767_196_800_000), 2026);
    }
}
