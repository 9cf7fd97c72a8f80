//! The time column of text output in the forms tshark's `-t` offers: seconds since the first
//! packet (the default), the time of day or date and time (local or UTC), or seconds since
//! 1970.

use std::fmt::Write as _;

/// How text lines show an event's time (tshark's `-t` letters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimeFormat {
    /// `r`: seconds since the capture's first packet.
    #[default]
    Relative,
    /// `a`: local time of day, `08:46:01.060437`.
    Absolute,
    /// `ad`: local date and time, `2026-11-22 08:46:01.060437`.
    AbsoluteDate,
    /// `e`: seconds since 1970, `1795337161.060437`.
    Epoch,
    /// `u`: UTC time of day.
    Utc,
    /// `ud`: UTC date and time.
    UtcDate,
}

impl TimeFormat {
    /// In words, for a status line.
    pub fn describe(self) -> &'static str {
        match self {
            TimeFormat::Relative => "seconds since the first packet",
            TimeFormat::Absolute => "local time of day",
            TimeFormat::AbsoluteDate => "local date and time",
            TimeFormat::Epoch => "seconds since 1970",
            TimeFormat::Utc => "UTC time of day",
            TimeFormat::UtcDate => "UTC date and time",
        }
    }

    /// The column's width, so that lines stay aligned whatever the format.
    pub fn width(self) -> usize {
        match self {
            TimeFormat::Relative => 11,
            TimeFormat::Absolute | TimeFormat::Utc => 15,
            TimeFormat::AbsoluteDate | TimeFormat::UtcDate => 26,
            TimeFormat::Epoch => 17,
        }
    }
}

/// [`push_absolute`] to the millisecond, three characters narrower.
pub fn push_absolute_millis(l: &mut String, format: TimeFormat, ts_ns: i64) {
    push_absolute(l, format, ts_ns);
    l.truncate(l.len().saturating_sub(3));
}

/// Writes `ts_ns` (nanoseconds since 1970) in `format`, to the microsecond, truncated as
/// tcpdump truncates a nanosecond capture to microseconds (a rounded time could carry into
/// the next second, minute or day). The relative form is the caller's.
pub fn push_absolute(l: &mut String, format: TimeFormat, ts_ns: i64) {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let micros = ts_ns.rem_euclid(1_000_000_000) / 1000;
    let local = matches!(format, TimeFormat::Absolute | TimeFormat::AbsoluteDate);
    let shifted = if local {
        secs.saturating_add(local_offset(secs))
    } else {
        secs
    };
    let (days, of_day) = (shifted.div_euclid(86_400), shifted.rem_euclid(86_400));
    match format {
        TimeFormat::Relative => {}
        TimeFormat::Epoch => {
            // Before 1970 (a damaged timestamp), as -0.000001, not as the floor -1 plus .999999.
            let sign = if ts_ns < 0 { "-" } else { "" };
            let abs = ts_ns.unsigned_abs();
            let text = format!(
                "{sign}{}.{:06}",
                abs / 1_000_000_000,
                abs % 1_000_000_000 / 1000
            );
            let _ = write!(l, "{text:>17}");
        }
        TimeFormat::Absolute | TimeFormat::Utc => push_time_of_day(l, of_day, micros),
        TimeFormat::AbsoluteDate | TimeFormat::UtcDate => {
            let (y, m, d) = civil_date(days);
            let _ = write!(l, "{y:04}-{m:02}-{d:02} ");
            push_time_of_day(l, of_day, micros);
        }
    }
}

fn push_time_of_day(l: &mut String, of_day: i64, micros: i64) {
    let _ = write!(
        l,
        "{:02}:{:02}:{:02}.{micros:06}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
}

/// The proleptic Gregorian date of a day counted from 1970-01-01, by eras of 400 years (146,097
/// days, which repeat exactly), years starting in March so that the leap day comes last.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Seconds east of UTC of the local time zone (the `TZ` variable, or the system's) at `secs`.
/// Offsets change on quarter hours at the finest, so one is asked of the C library once per
/// quarter hour of capture time and thread.
fn local_offset(secs: i64) -> i64 {
    thread_local! {
        static LAST: std::cell::Cell<Option<(i64, i64)>> = const { std::cell::Cell::new(None) };
    }
    let quarter = secs.div_euclid(900);
    LAST.with(|last| match last.get() {
        Some((q, offset)) if q == quarter => offset,
        _ => {
            let offset = system_offset(quarter * 900);
            last.set(Some((quarter, offset)));
            offset
        }
    })
}

#[cfg(unix)]
fn system_offset(secs: i64) -> i64 {
    // Always fits where `time_t` has 64 bits; not always where it has 32.
    #[allow(irrefutable_let_patterns)]
    let Ok(t) = libc::time_t::try_from(secs) else {
        return 0;
    };
    // SAFETY: `localtime_r` writes only into `tm`, which lives across the call, and reads `t`.
    // An all-zero `tm` is a valid value of the plain C struct.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

#[cfg(not(unix))]
fn system_offset(_secs: i64) -> i64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(format: TimeFormat, ts_ns: i64) -> String {
        let mut l = String::new();
        push_absolute(&mut l, format, ts_ns);
        l
    }

    #[test]
    fn utc_forms() {
        // 2026-11-22 08:46:01.060437481 UTC, the time of testdata/grpc-health.pcap's first packet.
        let ts = 1_795_337_161_060_437_481;
        assert_eq!(shown(TimeFormat::Utc, ts), "08:46:01.060437");
        assert_eq!(shown(TimeFormat::UtcDate, ts), "2026-11-22 08:46:01.060437");
        assert_eq!(shown(TimeFormat::Epoch, ts), "1795337161.060437");
        assert_eq!(shown(TimeFormat::UtcDate, 0), "1970-01-01 00:00:00.000000");
        assert_eq!(shown(TimeFormat::UtcDate, -1), "1969-12-31 23:59:59.999999");
        assert_eq!(shown(TimeFormat::Epoch, -1_000), "        -0.000001");
        // The ends of the range a timestamp can have.
        assert_eq!(
            shown(TimeFormat::UtcDate, i64::MIN),
            "1677-09-21 00:12:43.145224"
        );
        assert_eq!(shown(TimeFormat::Epoch, i64::MIN), "-9223372036.854775");
        assert_eq!(
            shown(TimeFormat::UtcDate, i64::MAX),
            "2262-04-11 23:47:16.854775"
        );
        // A leap day, and the day after the end of a century that is not a leap year.
        assert_eq!(
            shown(TimeFormat::UtcDate, 951_782_400_000_000_000),
            "2000-02-29 00:00:00.000000"
        );
        assert_eq!(
            shown(TimeFormat::UtcDate, 4_107_542_400_000_000_000),
            "2100-03-01 00:00:00.000000"
        );
    }

    #[test]
    fn widths_hold() {
        for f in [
            TimeFormat::Absolute,
            TimeFormat::AbsoluteDate,
            TimeFormat::Epoch,
            TimeFormat::Utc,
            TimeFormat::UtcDate,
        ] {
            assert_eq!(
                shown(f, 1_795_337_161_060_437_481).len(),
                f.width(),
                "{f:?}"
            );
        }
    }

    /// Every day of 1970 to 2100 against a count by months and leap years.
    #[test]
    fn dates_count_as_the_calendar_does() {
        let mut days = 0i64;
        for year in 1970..2100 {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let lengths = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            for (m, &n) in lengths.iter().enumerate() {
                for d in 1..=n {
                    assert_eq!(civil_date(days), (year, m as u32 + 1, d));
                    days += 1;
                }
            }
        }
    }
}
