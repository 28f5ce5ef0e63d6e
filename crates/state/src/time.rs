//! Wall-clock timestamps in RFC 3339, without a date library.

/// The current UTC time as RFC 3339 with a fractional second, the way runc
/// writes `created` (Go's `time.RFC3339Nano`): up to nine fraction digits with
/// trailing zeros dropped, and no fraction at all on a whole second.
pub fn now_rfc3339() -> String {
    let (secs, nanos) = realtime();
    format_rfc3339(secs, nanos)
}

/// Format `secs` (since the Unix epoch) plus `nanos` as RFC 3339 UTC.
pub fn format_rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
    if nanos > 0 {
        let frac = format!("{:09}", nanos.min(999_999_999));
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Proleptic Gregorian (year, month 1..=12, day 1..=31) of a day count from 1970-01-01.
///
/// Works in 400-year cycles (146 097 days each) with the year starting in March,
/// so the leap day is the last day of the shifted year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the origin to 0000-03-01.
    let shifted = days + 719_468;
    let cycle = shifted.div_euclid(146_097);
    let day_of_cycle = shifted.rem_euclid(146_097); // 0..=146_096
    let year_of_cycle = (day_of_cycle - day_of_cycle / 1_460 + day_of_cycle / 36_524
        - day_of_cycle / 146_096)
        / 365; // 0..=399
    let day_of_year =
        day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March .. 11 = February
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_cycle + cycle * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn realtime() -> (i64, u32) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    if rc != 0 {
        return (0, 0);
    }
    (ts.tv_sec, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn known_instants() {
        // 2024-01-02T03:04:05Z = 1704164645
        assert_eq!(
            format_rfc3339(1_704_164_645, 123_456_789),
            "2024-01-02T03:04:05.123456789Z"
        );
        assert_eq!(
            format_rfc3339(1_704_164_645, 120_000_000),
            "2024-01-02T03:04:05.12Z"
        );
        // Leap day and end of a leap year.
        assert_eq!(format_rfc3339(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(
            format_rfc3339(1_735_689_599, 1),
            "2024-12-31T23:59:59.000000001Z"
        );
        // Before the epoch.
        assert_eq!(format_rfc3339(-1, 0), "1969-12-31T23:59:59Z");
        // 2038 and beyond.
        assert_eq!(format_rfc3339(4_102_444_800, 0), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn every_day_round_trips_through_month_lengths() {
        // Walk 1960..2500 day by day and check the calendar advances correctly.
        let mut prev = civil_from_days(-3_653);
        for d in -3_652..193_000 {
            let cur = civil_from_days(d);
            let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match prev.1 {
                2 if leap(prev.0) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expected = if prev.2 < len {
                (prev.0, prev.1, prev.2 + 1)
            } else if prev.1 < 12 {
                (prev.0, prev.1 + 1, 1)
            } else {
                (prev.0 + 1, 1, 1)
            };
            assert_eq!(cur, expected, "day {d}");
            prev = cur;
        }
    }

    #[test]
    fn now_looks_like_rfc3339() {
        let now = now_rfc3339();
        assert!(now.starts_with("20"), "{now}");
        assert!(now.ends_with('Z'), "{now}");
        assert_eq!(&now[10..11], "T");
    }
}
