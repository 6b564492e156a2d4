//! Durations as the config file writes them: `"100ms"`, `"1s"`, `"1.5s"`, `"2m"`, `"1h"`.
//!
//! Strings rather than bare numbers because a number alone does not say its unit, and a probe
//! interval of `100` is a very different thing in milliseconds and in seconds. Timers count in
//! whole milliseconds, so a value finer than that is refused rather than silently rounded.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// Units a duration may be written in, largest first, with their length in milliseconds.
/// `ms` comes before `m` and `s` so the longest suffix is tried first.
const UNITS: [(&str, u128); 4] = [("ms", 1), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)];

/// Digits beyond these cannot describe a timer anyone means, and keep the arithmetic in range.
const MAX_WHOLE_DIGITS: usize = 15;
const MAX_FRACTION_DIGITS: usize = 9;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Nothing, or no digits before the unit (`""`, `"ms"`, `".5s"`).
    NoNumber,
    /// A number without a unit (`"100"`).
    NoUnit,
    /// A suffix that is not `ms`, `s`, `m` or `h` (`"100us"`, `"1 s"`).
    UnknownUnit(String),
    /// A malformed number (`"1.s"`, `"1.2.3s"`, `"-1s"`).
    BadNumber,
    /// Not a whole number of milliseconds (`"1.5ms"`, `"0.0001s"`).
    FinerThanMillisecond,
    /// More digits than any timer needs.
    TooLong,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoNumber => f.write_str("no number before the unit"),
            Self::NoUnit => f.write_str("no unit (write ms, s, m or h after the number)"),
            Self::UnknownUnit(unit) => {
                write!(f, "unknown unit {unit:?} (expected ms, s, m or h)")
            }
            Self::BadNumber => f.write_str("malformed number"),
            Self::FinerThanMillisecond => f.write_str("finer than a millisecond"),
            Self::TooLong => f.write_str("too many digits"),
        }
    }
}

impl Error for DurationError {}

/// Parses `<digits>[.<digits>]<unit>`, unit one of `ms`, `s`, `m`, `h`, into a whole number of
/// milliseconds. No sign, no spaces, no exponent.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let number_len = text
        .bytes()
        .position(|b| !(b.is_ascii_digit() || b == b'.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    if number.is_empty() {
        return Err(if text.starts_with(['-', '+']) {
            DurationError::BadNumber
        } else {
            DurationError::NoNumber
        });
    }
    if unit.is_empty() {
        return Err(DurationError::NoUnit);
    }
    let Some(&(_, unit_ms)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(DurationError::UnknownUnit(unit.to_owned()));
    };

    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if whole.is_empty() {
        return Err(DurationError::NoNumber);
    }
    // `split_at` above kept only digits and dots, so a second dot or a dot with nothing after
    // it is the only way left to be malformed.
    if fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
        return Err(DurationError::BadNumber);
    }
    if whole.len() > MAX_WHOLE_DIGITS || fraction.len() > MAX_FRACTION_DIGITS {
        return Err(DurationError::TooLong);
    }
    let whole: u128 = whole.parse().map_err(|_| DurationError::BadNumber)?;
    let (fraction_value, scale) = if fraction.is_empty() {
        (0, 1)
    } else {
        let value: u128 = fraction.parse().map_err(|_| DurationError::BadNumber)?;
        (value, 10u128.pow(fraction.len() as u32))
    };
    let fraction_ms = fraction_value * unit_ms;
    if fraction_ms % scale != 0 {
        return Err(DurationError::FinerThanMillisecond);
    }
    let ms = whole * unit_ms + fraction_ms / scale;
    let ms = u64::try_from(ms).map_err(|_| DurationError::TooLong)?;
    Ok(Duration::from_millis(ms))
}

/// Writes a duration the way the config file does, in the largest unit that keeps it whole:
/// `"2m"`, `"90s"`, `"1500ms"`, `"0s"`. Anything finer than a millisecond is dropped.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    for (name, unit_ms) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms % unit_ms == 0 {
            return format!("{}{name}", ms / unit_ms);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn known_values() {
        for (text, want) in [
            ("100ms", ms(100)),
            ("0ms", ms(0)),
            ("0s", ms(0)),
            ("1s", ms(1_000)),
            ("1.5s", ms(1_500)),
            ("0.25s", ms(250)),
            ("0.001s", ms(1)),
            ("2m", ms(120_000)),
            ("0.5m", ms(30_000)),
            ("1h", ms(3_600_000)),
            ("1.25h", ms(4_500_000)),
            ("007s", ms(7_000)),
            ("1.000ms", ms(1)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refusals_say_why() {
        use DurationError::*;
        for (text, want) in [
            ("", NoNumber),
            ("ms", NoNumber),
            (".5s", NoNumber),
            ("100", NoUnit),
            ("1.5", NoUnit),
            ("100us", UnknownUnit("us".into())),
            ("1 s", UnknownUnit(" s".into())),
            ("1S", UnknownUnit("S".into())),
            ("1sec", UnknownUnit("sec".into())),
            ("1s ", UnknownUnit("s ".into())),
            ("1e3ms", UnknownUnit("e3ms".into())),
            ("-1s", BadNumber),
            ("+1s", BadNumber),
            ("1.s", BadNumber),
            ("1.2.3s", BadNumber),
            ("1.5ms", FinerThanMillisecond),
            ("0.0001s", FinerThanMillisecond),
            ("1234567890123456s", TooLong),
            ("1.0000000001s", TooLong),
            ("999999999999999h", TooLong),
        ] {
            assert_eq!(parse_duration(text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn errors_display_a_reason() {
        let e = parse_duration("5 minutes").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown unit \" minutes\" (expected ms, s, m or h)"
        );
        assert_eq!(
            parse_duration("100").unwrap_err().to_string(),
            "no unit (write ms, s, m or h after the number)"
        );
    }

    #[test]
    fn formats_in_the_largest_whole_unit() {
        for (d, want) in [
            (ms(0), "0s"),
            (ms(1), "1ms"),
            (ms(100), "100ms"),
            (ms(1_500), "1500ms"),
            (ms(1_000), "1s"),
            (ms(90_000), "90s"),
            (ms(120_000), "2m"),
            (ms(5_400_000), "90m"),
            (ms(7_200_000), "2h"),
            (Duration::from_micros(1_500), "1ms"),
        ] {
            assert_eq!(format_duration(d), want, "{d:?}");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(n in 0u64..=1_000_000_000_000) {
            prop_assert_eq!(parse_duration(&format_duration(ms(n))), Ok(ms(n)));
        }

        /// A decimal written in any unit means the same milliseconds as the integer count.
        #[test]
        fn units_scale(n in 0u64..=10_000_000, unit in 0usize..4) {
            let (name, unit_ms) = UNITS[unit];
            let text = format!("{n}{name}");
            prop_assert_eq!(parse_duration(&text), Ok(ms(n * unit_ms as u64)));
            let tenths = format!("{}.{}{name}", n / 10, n % 10);
            let exact = (n as u128 * unit_ms) % 10 == 0;
            match parse_duration(&tenths) {
                Ok(d) => {
                    prop_assert!(exact);
                    prop_assert_eq!(d.as_millis(), n as u128 * unit_ms / 10);
                }
                Err(e) => {
                    prop_assert!(!exact);
                    prop_assert_eq!(e, DurationError::FinerThanMillisecond);
                }
            }
        }

        #[test]
        fn never_panics(text in "\\PC{0,24}") {
            let _ = parse_duration(&text);
        }
    }
}
