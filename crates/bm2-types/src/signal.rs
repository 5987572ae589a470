//! [`Signal`]: a Unix signal named by a user (`SIGTERM`, `TERM`, `term`, `15`), parsed once at
//! the edge (CLI flags, ecosystem files, API requests) and carried typed from there on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! signals {
    ($($name:ident = $num:literal),* $(,)?) => {
        /// A Linux signal (the standard ones, 1 to 31), written `SIGTERM` in files and answers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(clippy::upper_case_acronyms, missing_docs)]
        pub enum Signal { $($name = $num),* }

        impl Signal {
            /// Every signal, by number.
            pub const ALL: &'static [Signal] = &[$(Signal::$name),*];

            /// The full name, `SIGTERM`.
            pub fn name(self) -> &'static str {
                match self { $(Signal::$name => concat!("SIG", stringify!($name))),* }
            }
        }
    };
}

signals! {
    HUP = 1, INT = 2, QUIT = 3, ILL = 4, TRAP = 5, ABRT = 6, BUS = 7, FPE = 8, KILL = 9,
    USR1 = 10, SEGV = 11, USR2 = 12, PIPE = 13, ALRM = 14, TERM = 15, STKFLT = 16, CHLD = 17,
    CONT = 18, STOP = 19, TSTP = 20, TTIN = 21, TTOU = 22, URG = 23, XCPU = 24, XFSZ = 25,
    VTALRM = 26, PROF = 27, WINCH = 28, IO = 29, PWR = 30, SYS = 31,
}

impl Signal {
    /// Its number on Linux.
    pub fn number(self) -> i32 {
        self as i32
    }
}

/// A word that names no signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal {0:?} (e.g. SIGTERM, SIGUSR2, HUP, 15)")]
pub struct UnknownSignal(pub String);

impl FromStr for Signal {
    type Err = UnknownSignal;

    /// Parses `SIGTERM`, `TERM`, `sigterm` or `15`.
    fn from_str(word: &str) -> Result<Signal, UnknownSignal> {
        let t = word.trim();
        if let Ok(n) = t.parse::<i32>() {
            return Signal::ALL
                .iter()
                .copied()
                .find(|s| s.number() == n)
                .ok_or_else(|| UnknownSignal(word.to_string()));
        }
        let upper = t.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Signal::ALL
            .iter()
            .copied()
            .find(|s| &s.name()[3..] == bare)
            .ok_or_else(|| UnknownSignal(word.to_string()))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Name(String),
            Number(i64),
        }
        let word = match Form::deserialize(d)? {
            Form::Name(s) => s,
            Form::Number(n) => n.to_string(),
        };
        word.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses() {
        assert_eq!("SIGTERM".parse(), Ok(Signal::TERM));
        assert_eq!("usr2".parse(), Ok(Signal::USR2));
        assert_eq!(" sigint ".parse(), Ok(Signal::INT));
        assert_eq!("9".parse(), Ok(Signal::KILL));
        assert!("SIGNOPE".parse::<Signal>().is_err());
        assert!("999".parse::<Signal>().is_err());
        assert!("".parse::<Signal>().is_err());
    }

    #[test]
    fn names_round_trip_through_json() {
        for s in Signal::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.name()));
            assert_eq!(serde_json::from_str::<Signal>(&json).unwrap(), *s);
        }
        assert_eq!(serde_json::from_str::<Signal>("15").unwrap(), Signal::TERM);
        let err = serde_json::from_str::<Signal>("\"SIGFOO\"").unwrap_err();
        assert!(err.to_string().contains("unknown signal"), "{err}");
    }
}
