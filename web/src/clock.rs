//! Times as the page shows them: UTC, so that what the test and a person read is the same
//! everywhere, without pulling a date library into the bundle.

/// `2025-11-23 14:05 UTC` for a Unix time in milliseconds.
pub fn date_time(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let minutes = ms_of_day / 60_000;
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", minutes / 60, minutes % 60)
}

/// `14:05:09.120` (UTC) for a Unix time in milliseconds.
pub fn time_of_day(ms: i64) -> String {
    let ms_of_day = ms.rem_euclid(86_400_000);
    let seconds = ms_of_day / 1_000;
    format!("{:02}:{:02}:{:02}.{:03}", seconds / 3_600, seconds / 60 % 60, seconds % 60, ms_of_day % 1_000)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_in_utc() {
        assert_eq!(date_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(date_time(1_763_900_000_000), "2025-11-23 12:13 UTC");
        // Leap day and the turn of a century.
        assert_eq!(date_time(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(date_time(946_684_799_000), "1999-12-31 23:59 UTC");
        assert_eq!(date_time(-86_400_000), "1969-12-31 00:00 UTC");
    }

    #[test]
    fn formats_times_of_day() {
        assert_eq!(time_of_day(1_763_900_000_123), "12:13:20.123");
        assert_eq!(time_of_day(86_399_999), "23:59:59.999");
    }
}
