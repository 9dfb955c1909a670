//! Fire times for people: RFC 3339 with the offset the schedule's zone had at that instant.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The names of the UTC zone itself in the tz database. `Z` is reserved for them: a zone that is
/// merely at offset zero (Europe/London in winter, `GMT`) prints `+00:00`.
const UTC_NAMES: &[&str] = &[
    "UTC",
    "Etc/UTC",
    "UCT",
    "Etc/UCT",
    "Universal",
    "Etc/Universal",
    "Zulu",
    "Etc/Zulu",
];

/// `at` as RFC 3339 in `zone`: the local time with the zone's offset at that instant, `Z` only
/// when the zone is UTC itself. Seconds are always shown, fractions only when non-zero.
///
/// ```
/// use jiff::{tz::TimeZone, Timestamp};
/// use openflume_proto::cron::format_fire_time;
///
/// let at: Timestamp = "2025-01-15T09:30:00Z".parse().unwrap();
/// assert_eq!(format_fire_time(at, &TimeZone::UTC), "2025-01-15T09:30:00Z");
/// let new_york = TimeZone::get("America/New_York").unwrap();
/// assert_eq!(format_fire_time(at, &new_york), "2025-01-15T04:30:00-05:00");
/// let london = TimeZone::get("Europe/London").unwrap();
/// assert_eq!(format_fire_time(at, &london), "2025-01-15T09:30:00+00:00");
/// ```
pub fn format_fire_time(at: Timestamp, zone: &TimeZone) -> String {
    if is_utc(zone) {
        at.to_string()
    } else {
        at.display_with_offset(zone.to_offset(at)).to_string()
    }
}

fn is_utc(zone: &TimeZone) -> bool {
    zone.iana_name()
        .is_some_and(|name| UTC_NAMES.iter().any(|utc| utc.eq_ignore_ascii_case(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_only_for_the_utc_zone_itself() {
        let winter: Timestamp = "2025-01-15T09:30:00Z".parse().unwrap();
        let summer: Timestamp = "2025-07-15T09:30:05.250Z".parse().unwrap();
        let cases = [
            ("UTC", winter, "2025-01-15T09:30:00Z"),
            ("Etc/UTC", winter, "2025-01-15T09:30:00Z"),
            ("Etc/GMT", winter, "2025-01-15T09:30:00+00:00"),
            ("Europe/London", winter, "2025-01-15T09:30:00+00:00"),
            ("Europe/London", summer, "2025-07-15T10:30:05.25+01:00"),
            ("Asia/Kolkata", winter, "2025-01-15T15:00:00+05:30"),
            ("America/Sao_Paulo", winter, "2025-01-15T06:30:00-03:00"),
        ];
        for (name, at, expected) in cases {
            let zone = TimeZone::get(name).unwrap();
            assert_eq!(format_fire_time(at, &zone), expected, "{name}");
        }
        assert_eq!(
            format_fire_time(winter, &TimeZone::UTC),
            "2025-01-15T09:30:00Z"
        );
        let fixed = TimeZone::fixed(jiff::tz::offset(-3));
        assert_eq!(
            format_fire_time(winter, &fixed),
            "2025-01-15T06:30:00-03:00"
        );
    }
}
