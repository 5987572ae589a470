//! An ordered JavaScript value, printed as `JSON.stringify` or as Node's `util.inspect` prints
//! it (`util.inspect(v, false, null, false)`: PM2's `prettylist`), so PM2's key order and layout
//! survive: `serde_json`'s own maps sort their keys.
//!
//! The layout follows Node's `lib/internal/util/inspect.js` with its defaults (`breakLength`
//! 80, `compact` 3, `maxArrayLength` 100, `maxStringLength` 10000): an object or array is put
//! on one line when it fits and holds objects at most two levels deep, arrays of more than six
//! short entries are grouped in columns, keys that are not identifiers are quoted, strings take
//! single quotes unless they contain one.

use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JavaScript value whose object keys keep their insertion order.
#[derive(Debug, Clone, PartialEq)]
pub enum Js {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Js>),
    Obj(Vec<(String, Js)>),
}

impl From<&str> for Js {
    fn from(s: &str) -> Js {
        Js::Str(s.to_string())
    }
}

impl From<String> for Js {
    fn from(s: String) -> Js {
        Js::Str(s)
    }
}

impl From<bool> for Js {
    fn from(b: bool) -> Js {
        Js::Bool(b)
    }
}

impl From<u32> for Js {
    fn from(n: u32) -> Js {
        Js::Int(i64::from(n))
    }
}

impl From<i32> for Js {
    fn from(n: i32) -> Js {
        Js::Int(i64::from(n))
    }
}

impl From<u64> for Js {
    fn from(n: u64) -> Js {
        i64::try_from(n).map_or(Js::Float(n as f64), Js::Int)
    }
}

impl<T: Into<Js>> From<Option<T>> for Js {
    fn from(v: Option<T>) -> Js {
        v.map_or(Js::Null, Into::into)
    }
}

impl<T: Into<Js> + Clone> From<&[T]> for Js {
    fn from(v: &[T]) -> Js {
        Js::Arr(v.iter().cloned().map(Into::into).collect())
    }
}

/// Builds an object in the order its entries are pushed; a key pushed again is replaced in
/// place, as assigning an existing property does in JavaScript.
#[derive(Debug, Default)]
pub struct ObjBuilder(Vec<(String, Js)>);

impl ObjBuilder {
    /// Sets `key` (at its first position if it is already there).
    pub fn set(&mut self, key: &str, value: impl Into<Js>) -> &mut Self {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
        self
    }

    /// True when `key` is set.
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// The object.
    pub fn build(self) -> Js {
        Js::Obj(self.0)
    }
}

impl Serialize for Js {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Js::Null => s.serialize_unit(),
            Js::Bool(b) => s.serialize_bool(*b),
            Js::Int(n) => s.serialize_i64(*n),
            // JSON.stringify prints integral numbers without a fraction, and NaN as null.
            Js::Float(f) if !f.is_finite() => s.serialize_unit(),
            Js::Float(f) if f.fract() == 0.0 && f.abs() < 9e15 => s.serialize_i64(*f as i64),
            Js::Float(f) => s.serialize_f64(*f),
            Js::Str(v) => s.serialize_str(v),
            Js::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Js::Obj(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

const BREAK_LENGTH: usize = 80;
const COMPACT: usize = 3;
const MAX_ARRAY_LENGTH: usize = 100;
const MAX_STRING_LENGTH: usize = 10_000;
const MIN_LINE_WIDTH: usize = 16;

/// `util.inspect(value, false, null, false)`.
pub fn inspect(value: &Js) -> String {
    let mut ctx = Ctx {
        indentation: 0,
        current_depth: 0,
    };
    ctx.value(value, 0)
}

struct Ctx {
    indentation: usize,
    current_depth: usize,
}

/// Length as JavaScript counts it (UTF-16 code units).
fn js_len(s: &str) -> usize {
    s.encode_utf16().count()
}

impl Ctx {
    fn value(&mut self, v: &Js, depth: usize) -> String {
        match v {
            Js::Null => "null".into(),
            Js::Bool(b) => b.to_string(),
            Js::Int(n) => n.to_string(),
            Js::Float(f) => number(*f),
            Js::Str(s) => self.string(s),
            Js::Arr(items) if items.is_empty() => "[]".into(),
            Js::Obj(entries) if entries.is_empty() => "{}".into(),
            Js::Arr(items) => {
                let depth = self.enter(depth);
                let shown = items.len().min(MAX_ARRAY_LENGTH);
                let mut output: Vec<String> = items[..shown]
                    .iter()
                    .map(|i| self.nested(i, depth))
                    .collect();
                if items.len() > shown {
                    output.push(more(items.len() - shown, "item"));
                }
                let numbers = items.iter().all(|i| matches!(i, Js::Int(_) | Js::Float(_)));
                self.reduce(output, "[", "]", Some(numbers), depth)
            }
            Js::Obj(entries) => {
                let depth = self.enter(depth);
                let output = entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", key(k), self.nested(v, depth)))
                    .collect();
                self.reduce(output, "{", "}", None, depth)
            }
        }
    }

    fn enter(&mut self, depth: usize) -> usize {
        self.current_depth = depth + 1;
        depth + 1
    }

    fn nested(&mut self, v: &Js, depth: usize) -> String {
        self.indentation += 2;
        let s = self.value(v, depth);
        self.indentation -= 2;
        s
    }

    fn string(&self, s: &str) -> String {
        let len = js_len(s);
        let (s, trailer) = if len > MAX_STRING_LENGTH {
            let cut: String = String::from_utf16_lossy(
                &s.encode_utf16().take(MAX_STRING_LENGTH).collect::<Vec<_>>(),
            );
            (cut, more(len - MAX_STRING_LENGTH, "character"))
        } else {
            (s.to_string(), String::new())
        };
        // (A string cut to `maxStringLength` is still longer than a line.)
        if len > MIN_LINE_WIDTH && len + 4 + self.indentation > BREAK_LENGTH {
            let joiner = format!(" +\n{}", " ".repeat(self.indentation + 2));
            let lines: Vec<String> = s.split_inclusive('\n').map(quote).collect();
            return lines.join(&joiner) + &trailer;
        }
        quote(&s) + &trailer
    }

    /// Node's `reduceToSingleString`.
    fn reduce(
        &self,
        output: Vec<String>,
        open: &str,
        close: &str,
        array_of_numbers: Option<bool>,
        depth: usize,
    ) -> String {
        let entries = output.len();
        let output = match array_of_numbers {
            Some(numbers) if entries > 6 => self.group(output, numbers),
            _ => output,
        };
        if self.current_depth - depth < COMPACT && entries == output.len() {
            let start = output.len() + self.indentation + open.len() + 10;
            if Self::below_break_length(&output, start) {
                let joined = output.join(", ");
                if !joined.contains('\n') {
                    return format!("{open} {joined} {close}");
                }
            }
        }
        let indent = format!("\n{}", " ".repeat(self.indentation));
        format!(
            "{open}{indent}  {}{indent}{close}",
            output.join(&format!(",{indent}  "))
        )
    }

    fn below_break_length(output: &[String], start: usize) -> bool {
        let mut total = output.len() + start;
        if total + output.len() > BREAK_LENGTH {
            return false;
        }
        for o in output {
            total += js_len(o);
            if total > BREAK_LENGTH {
                return false;
            }
        }
        true
    }

    /// Node's `groupArrayElements`: short entries of a long array in aligned columns.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    fn group(&self, output: Vec<String>, numbers: bool) -> Vec<String> {
        let with_more = output.len() > MAX_ARRAY_LENGTH;
        let len = if with_more {
            output.len() - 1
        } else {
            output.len()
        };
        let separator = 2;
        let data_len: Vec<usize> = output[..len].iter().map(|o| js_len(o)).collect();
        let total: usize = data_len.iter().map(|l| l + separator).sum();
        let max_len = data_len.iter().copied().max().unwrap_or(0);
        let actual_max = max_len + separator;
        if !(actual_max * 3 + self.indentation < BREAK_LENGTH
            && (total as f64 / actual_max as f64 > 5.0 || max_len <= 6))
        {
            return output;
        }
        let average_bias = (actual_max as f64 - total as f64 / output.len() as f64).sqrt();
        let biased_max = (actual_max as f64 - 3.0 - average_bias).max(1.0);
        let columns = [
            ((2.5 * biased_max * len as f64).sqrt() / biased_max).round() as usize,
            (BREAK_LENGTH - self.indentation) / actual_max,
            COMPACT * 4,
            15,
        ]
        .into_iter()
        .min()
        .unwrap_or(1);
        if columns <= 1 {
            return output;
        }
        let max_line: Vec<usize> = (0..columns)
            .map(|i| {
                (i..output.len())
                    .step_by(columns)
                    .filter_map(|j| data_len.get(j).copied())
                    .max()
                    .unwrap_or(0)
                    + separator
            })
            .collect();
        let mut grouped = Vec::new();
        for i in (0..len).step_by(columns) {
            let end = (i + columns).min(len);
            let mut line = String::new();
            for j in i..end - 1 {
                let cell = format!("{}, ", output[j]);
                line.push_str(&pad(&cell, max_line[j - i], numbers));
            }
            let last = &output[end - 1];
            if numbers {
                line.push_str(&pad(last, max_line[end - 1 - i] - separator, true));
            } else {
                line.push_str(last);
            }
            grouped.push(line);
        }
        if with_more && let Some(last) = output.last() {
            grouped.push(last.clone());
        }
        grouped
    }
}

fn pad(s: &str, width: usize, start: bool) -> String {
    let fill = " ".repeat(width.saturating_sub(js_len(s)));
    if start {
        format!("{fill}{s}")
    } else {
        format!("{s}{fill}")
    }
}

fn more(n: usize, what: &str) -> String {
    format!("... {n} more {what}{}", if n > 1 { "s" } else { "" })
}

/// A number as JavaScript prints it.
fn number(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if f == 0.0 && f.is_sign_negative() {
        "-0".into()
    } else {
        format!("{f}")
    }
}

/// An object key: bare when it is an identifier, else quoted as a string.
fn key(k: &str) -> String {
    let mut chars = k.chars();
    let ident = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident { k.to_string() } else { quote(k) }
}

/// Node's `strEscape`: single quotes, unless the text has one (then double quotes, or
/// backticks when it has both).
fn quote(s: &str) -> String {
    let (q, quote_char) = if !s.contains('\'') {
        ('\'', Some('\''))
    } else if !s.contains('"') {
        ('"', None)
    } else if !s.contains('`') && !s.contains("${") {
        ('`', None)
    } else {
        ('\'', Some('\''))
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c if Some(c) == quote_char => out.push_str("\\'"),
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(entries: &[(&str, Js)]) -> Js {
        Js::Obj(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn short_objects_stay_on_one_line() {
        let v = Js::Arr(vec![obj(&[
            ("status", "online".into()),
            ("restart_time", Js::Int(1)),
            (
                "monit",
                obj(&[("memory", Js::Int(0)), ("cpu", Js::Float(0.5))]),
            ),
            ("node_args", Js::Arr(vec![])),
            ("env", obj(&[])),
            ("exit_code", Js::Null),
        ])]);
        assert_eq!(
            inspect(&v),
            "[\n  {\n    status: 'online',\n    restart_time: 1,\n    monit: { memory: 0, cpu: 0.5 },\n    node_args: [],\n    env: {},\n    exit_code: null\n  }\n]"
        );
    }

    #[test]
    fn keys_and_strings_are_quoted_as_node_quotes_them() {
        let v = obj(&[
            ("a-b", "it's".into()),
            ("_ok1", "say \"it's\"".into()),
            ("1x", "tab\there\u{1b}".into()),
        ]);
        assert_eq!(
            inspect(&v),
            "{ 'a-b': \"it's\", _ok1: `say \"it's\"`, '1x': 'tab\\there\\x1B' }"
        );
    }

    #[test]
    fn long_objects_break_one_entry_per_line() {
        let entries: Vec<(&str, Js)> = vec![
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            (
                "HOME",
                "/home/someone/with/a/rather/long/home/directory".into(),
            ),
            ("X", Js::Int(1)),
        ];
        let text = inspect(&obj(&entries));
        assert!(text.starts_with("{\n  PATH: '/usr"), "{text}");
        assert!(text.ends_with("\n  X: 1\n}"), "{text}");
    }

    #[test]
    fn json_keeps_the_order_and_prints_integral_numbers_bare() {
        let v = obj(&[("z", Js::Float(1.0)), ("a", Js::Float(0.5))]);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"z":1,"a":0.5}"#);
    }
}
