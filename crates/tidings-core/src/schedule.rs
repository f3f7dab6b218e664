//! Scheduling maths for the integration bus: when a cron schedule fires next, in an IANA time
//! zone, and RFC 3339 instants for `publish_at`. Pure: every time is an argument (unix
//! milliseconds), never the clock.
//!
//! Daylight saving: a cron expression names wall-clock times in its zone. On a spring-forward
//! day a fixed time inside the gap (02:30 in New York) fires once, at the first instant after
//! the gap (03:00); on a fall-back day a fixed time that happens twice (01:30) fires once, at
//! the earlier of the two. An interval expression (`*/15 * * * *`) keeps firing every quarter
//! of an hour of real time through both (croner's rules, checked by the tests below).

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Longest cron expression accepted, in characters.
pub const MAX_CRON_CHARS: usize = 200;

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not 5 or 6 fields, or a field croner refuses.
    #[error("invalid cron expression: {0}")]
    Cron(String),
    /// Not an IANA zone name.
    #[error("unknown time zone {0:?}: use an IANA name such as Europe/Paris or UTC")]
    TimeZone(String),
    /// Not an RFC 3339 date-time.
    #[error("not an RFC 3339 date-time with an offset (2026-12-24T18:00:00Z): {0:?}")]
    Instant(String),
}

/// A cron expression evaluated in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

impl CronSchedule {
    /// Parses `expr` (5 fields: minute hour day month weekday; or 6 with seconds first) in the
    /// IANA zone `timezone`.
    pub fn parse(expr: &str, timezone: &str) -> Result<CronSchedule, ScheduleError> {
        if expr.chars().count() > MAX_CRON_CHARS {
            return Err(ScheduleError::Cron(format!(
                "at most {MAX_CRON_CHARS} characters"
            )));
        }
        let fields = expr.split_whitespace().count();
        if !(fields == 5 || fields == 6) {
            return Err(ScheduleError::Cron(format!(
                "{fields} fields; use 5 (minute hour day month weekday) or 6 (seconds first)"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Cron(e.to_string()))?;
        let tz: Tz = timezone
            .parse()
            .map_err(|_| ScheduleError::TimeZone(timezone.to_owned()))?;
        Ok(CronSchedule { cron, tz })
    }

    /// The zone it is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `after_ms` (unix ms), whole seconds; None when the
    /// expression never fires again (`0 0 30 2 *`).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        // Cron works in whole seconds: a fire at 10:00:00 is behind 10:00:00.400.
        let after = self
            .tz
            .timestamp_opt(after_ms.div_euclid(1000), 0)
            .single()?;
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        Some(next.timestamp_millis())
    }

    /// Up to `n` fire times after `after_ms`, in order.
    pub fn upcoming(&self, after_ms: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut from = after_ms;
        while out.len() < n {
            match self.next_after(from) {
                Some(next) => {
                    out.push(next);
                    from = next;
                }
                None => break,
            }
        }
        out
    }

    /// An instant as RFC 3339 in this schedule's zone (its offset shows which side of a DST
    /// change it falls on).
    pub fn format(&self, at_ms: i64) -> String {
        match self.tz.timestamp_millis_opt(at_ms).single() {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
            None => format_utc(at_ms),
        }
    }
}

/// Parses an RFC 3339 date-time (with its offset) to unix milliseconds.
pub fn parse_instant(text: &str) -> Result<i64, ScheduleError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| ScheduleError::Instant(text.to_owned()))
}

/// Unix milliseconds as RFC 3339 in UTC.
pub fn format_utc(at_ms: i64) -> String {
    Utc.timestamp_millis_opt(at_ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        parse_instant(text).expect("instant")
    }

    fn fires(cron: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        let s = CronSchedule::parse(cron, tz).expect("schedule");
        s.upcoming(ms(from), n)
            .into_iter()
            .map(|t| s.format(t))
            .collect()
    }

    #[test]
    fn five_and_six_fields_parse_and_others_are_refused() {
        assert!(CronSchedule::parse("0 9 * * 1-5", "Europe/Paris").is_ok());
        assert!(CronSchedule::parse("30 0 9 * * *", "UTC").is_ok());
        for bad in [
            "",
            "* * * *",
            "0 0 0 0 0 0 0",
            "61 * * * *",
            "@daily",
            "x y z a b",
        ] {
            assert!(
                matches!(CronSchedule::parse(bad, "UTC"), Err(ScheduleError::Cron(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            CronSchedule::parse("0 9 * * *", "Mars/Olympus").err(),
            Some(ScheduleError::TimeZone("Mars/Olympus".into()))
        );
    }

    #[test]
    fn next_fires_are_strictly_after_and_in_the_zone() {
        assert_eq!(
            fires("0 9 * * *", "Europe/Paris", "2026-06-01T07:00:00Z", 2),
            ["2026-06-02T09:00:00+02:00", "2026-06-03T09:00:00+02:00"]
        );
        // Exactly at a fire time (and within its second): the next one.
        let s = CronSchedule::parse("0 9 * * *", "UTC").expect("schedule");
        let at = ms("2026-06-01T09:00:00Z");
        assert_eq!(s.next_after(at), Some(ms("2026-06-02T09:00:00Z")));
        assert_eq!(s.next_after(at + 400), Some(ms("2026-06-02T09:00:00Z")));
        assert_eq!(s.next_after(at - 1), Some(at));
        // Seconds first when there are six fields.
        assert_eq!(
            fires("15 * * * * *", "UTC", "2026-06-01T09:00:00Z", 2),
            ["2026-06-01T09:00:15Z", "2026-06-01T09:01:15Z"]
        );
    }

    #[test]
    fn spring_forward_fires_once_after_the_gap() {
        // New York, 8 March 2026: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
        assert_eq!(
            fires(
                "30 2 * * *",
                "America/New_York",
                "2026-03-06T12:00:00-05:00",
                3
            ),
            [
                "2026-03-07T02:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00",
            ]
        );
        // Times outside the gap are untouched.
        assert_eq!(
            fires(
                "0 9 * * *",
                "America/New_York",
                "2026-03-07T12:00:00-05:00",
                2
            ),
            ["2026-03-08T09:00:00-04:00", "2026-03-09T09:00:00-04:00"]
        );
    }

    #[test]
    fn fall_back_fires_once_not_twice() {
        // New York, 1 November 2026: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
        assert_eq!(
            fires(
                "30 1 * * *",
                "America/New_York",
                "2026-10-31T12:00:00-04:00",
                3
            ),
            [
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:30:00-05:00",
                "2026-11-03T01:30:00-05:00",
            ]
        );
        // Berlin, 25 October 2026: 02:30 happens twice; it fires on the first.
        assert_eq!(
            fires(
                "30 2 * * *",
                "Europe/Berlin",
                "2026-10-24T12:00:00+02:00",
                2
            ),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
    }

    #[test]
    fn an_interval_keeps_real_time_through_fall_back() {
        // Every 30 minutes: the repeated hour is real time, so it fires in both halves, and
        // every gap between fires is 30 minutes.
        let s = CronSchedule::parse("*/30 * * * *", "America/New_York").expect("schedule");
        let got = s.upcoming(ms("2026-11-01T00:45:00-04:00"), 5);
        for pair in got.windows(2) {
            assert_eq!(pair[1] - pair[0], 30 * 60 * 1000);
        }
        let shown: Vec<String> = got.iter().map(|&t| s.format(t)).collect();
        assert_eq!(
            shown,
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T02:00:00-05:00",
            ]
        );
    }

    #[test]
    fn an_expression_that_never_fires_has_no_next() {
        let s = CronSchedule::parse("0 0 30 2 *", "UTC").expect("schedule");
        assert_eq!(s.next_after(ms("2026-01-01T00:00:00Z")), None);
        assert!(s.upcoming(ms("2026-01-01T00:00:00Z"), 5).is_empty());
    }

    #[test]
    fn instants_parse_with_their_offset() {
        assert_eq!(ms("2026-12-24T18:00:00+01:00"), ms("2026-12-24T17:00:00Z"));
        assert!(parse_instant("tomorrow").is_err());
        assert!(parse_instant("2026-12-24T18:00:00").is_err());
        assert_eq!(
            format_utc(ms("2026-12-24T17:00:00Z")),
            "2026-12-24T17:00:00.000Z"
        );
    }
}
