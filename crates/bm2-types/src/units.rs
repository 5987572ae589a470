//! Value forms accepted for app options: sizes such as `512M` and instance counts such as `max`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that could not be parsed, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, got {got:?}")]
pub struct ParseValueError {
    /// What the value should look like.
    pub expected: &'static str,
    /// The value as given.
    pub got: String,
}

/// A size in bytes, written as a number of bytes or with a `K`, `M` or `G` suffix (`512M`, `1G`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseValueError {
            expected: "a size such as 512M, 1G, 300K or a number of bytes",
            got: s.to_string(),
        };
        let t = s.trim();
        let t = t.strip_suffix(['b', 'B']).unwrap_or(t);
        let (digits, mult) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let mult: u64 = match c.to_ascii_uppercase() {
                    'K' => 1 << 10,
                    'M' => 1 << 20,
                    'G' => 1 << 30,
                    'T' => 1 << 40,
                    _ => return Err(err()),
                };
                (&t[..i], mult)
            }
            _ => (t, 1),
        };
        let value: f64 = digits.trim().parse().map_err(|_| err())?;
        if !value.is_finite() || value <= 0.0 {
            return Err(err());
        }
        Ok(ByteSize((value * mult as f64) as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) if n > 0.0 => Ok(ByteSize(n as u64)),
            NumOrStr::Num(n) => Err(serde::de::Error::custom(format!(
                "expected a positive size, got {n}"
            ))),
            NumOrStr::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Formats a byte count for people: `42.1 MB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How many instances of an app to run: a count, or relative to the number of CPUs.
///
/// Follows PM2: `max` or `0` means one per CPU, `-N` means the CPU count minus N (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instances {
    /// Exactly this many.
    Count(u32),
    /// The number of CPUs minus this many (0 for `max`).
    CpusMinus(u32),
}

impl Default for Instances {
    fn default() -> Self {
        Instances::Count(1)
    }
}

impl Instances {
    /// The concrete number of instances on a machine with `cpus` CPUs; never less than one.
    pub fn resolve(self, cpus: u32) -> u32 {
        match self {
            Instances::Count(n) => n.max(1),
            Instances::CpusMinus(k) => cpus.saturating_sub(k).max(1),
        }
    }
}

impl FromStr for Instances {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("max") {
            return Ok(Instances::CpusMinus(0));
        }
        match t.parse::<i64>() {
            Ok(0) => Ok(Instances::CpusMinus(0)),
            Ok(n) if n > 0 => Ok(Instances::Count(u32::try_from(n).unwrap_or(u32::MAX))),
            Ok(n) => Ok(Instances::CpusMinus(
                u32::try_from(n.unsigned_abs()).unwrap_or(u32::MAX),
            )),
            Err(_) => Err(ParseValueError {
                expected: "a number or \"max\"",
                got: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for Instances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instances::Count(n) => write!(f, "{n}"),
            Instances::CpusMinus(0) => f.write_str("max"),
            Instances::CpusMinus(k) => write!(f, "-{k}"),
        }
    }
}

impl Serialize for Instances {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Instances::Count(n) => s.serialize_i64(i64::from(*n)),
            Instances::CpusMinus(0) => s.serialize_str("max"),
            Instances::CpusMinus(k) => s.serialize_i64(-i64::from(*k)),
        }
    }
}

impl<'de> Deserialize<'de> for Instances {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) if n.fract() == 0.0 => {
                format!("{n:.0}").parse().map_err(serde::de::Error::custom)
            }
            NumOrStr::Num(n) => Err(serde::de::Error::custom(format!(
                "expected a whole number or \"max\", got {n}"
            ))),
            NumOrStr::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(f64),
    Str(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!("512M".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert_eq!("1G".parse::<ByteSize>().unwrap().0, 1 << 30);
        assert_eq!("300k".parse::<ByteSize>().unwrap().0, 300 << 10);
        assert_eq!("1.5MB".parse::<ByteSize>().unwrap().0, 3 << 19);
        assert_eq!("4096".parse::<ByteSize>().unwrap().0, 4096);
        assert!("12Q".parse::<ByteSize>().is_err());
        assert!("-5M".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
    }

    #[test]
    fn sizes_deserialize_from_numbers_and_strings() {
        let a: ByteSize = serde_json::from_str("\"200M\"").unwrap();
        let b: ByteSize = serde_json::from_str("1048576").unwrap();
        assert_eq!(a.0, 200 << 20);
        assert_eq!(b.0, 1 << 20);
    }

    #[test]
    fn instances_follow_pm2_forms() {
        assert_eq!("4".parse::<Instances>().unwrap().resolve(8), 4);
        assert_eq!("max".parse::<Instances>().unwrap().resolve(8), 8);
        assert_eq!("0".parse::<Instances>().unwrap().resolve(8), 8);
        assert_eq!("-1".parse::<Instances>().unwrap().resolve(8), 7);
        assert_eq!("-9".parse::<Instances>().unwrap().resolve(8), 1);
        assert!("four".parse::<Instances>().is_err());
        let i: Instances = serde_json::from_str("\"max\"").unwrap();
        assert_eq!(i, Instances::CpusMinus(0));
        let i: Instances = serde_json::from_str("-1").unwrap();
        assert_eq!(i, Instances::CpusMinus(1));
        assert_eq!(serde_json::to_string(&i).unwrap(), "-1");
    }

    #[test]
    fn bytes_format_for_people() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(42 * 1024 * 1024 + 100 * 1024), "42.1 MB");
    }
}
