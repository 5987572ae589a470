//! Errors and warnings that point at the file, the line and the key.

use std::fmt;

/// A problem in an ecosystem file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<stdin>`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Path of the key, e.g. `apps[1].instances`.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about the whole file.
    pub fn file(file: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: None,
            column: None,
            key: None,
            message: message.into(),
        }
    }

    /// The same error at a key.
    #[must_use]
    pub fn at_key(mut self, key: impl Into<String>) -> ConfigError {
        self.key = Some(key.into());
        self
    }

    /// The same error at a position.
    #[must_use]
    pub fn at(mut self, line: Option<usize>, column: Option<usize>) -> ConfigError {
        self.line = line;
        self.column = column;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Something accepted but probably not what was meant, such as an unknown key.
pub type Warning = ConfigError;

/// 1-based line and column of a byte offset in `text`.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The line where `key` first appears as a key in `text` (a best effort, for warnings).
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| is_key_line(l, key))
        .map(|i| i + 1)
}

/// The line of `key` nearest to where a parser stopped (`line`): the last one at or before it
/// (JSON and TOML stop after the value), or with `after`, the first one at or after it (YAML
/// points at the start of the mapping).
pub fn line_of_key_near(text: &str, key: &str, line: usize, after: bool) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let hit = |i: &usize| is_key_line(lines[*i], key);
    let found = if after {
        (line.saturating_sub(1)..lines.len()).find(hit)
    } else {
        (0..line.min(lines.len())).rev().find(hit)
    };
    found.map(|i| i + 1)
}

fn is_key_line(line: &str, key: &str) -> bool {
    let t = line
        .trim_start()
        .trim_start_matches(['"', '\'', '-', ' ', '{', ',']);
    t.starts_with(key)
        && t[key.len()..]
            .trim_start_matches(['"', '\''])
            .trim_start()
            .starts_with([':', '='])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_file_line_key_message() {
        let e = ConfigError::file("eco.json", "expected a number or \"max\", got \"four\"")
            .at_key("apps[1].instances")
            .at(Some(12), Some(20));
        assert_eq!(
            e.to_string(),
            "eco.json:12:20: apps[1].instances: expected a number or \"max\", got \"four\""
        );
        assert_eq!(position("ab\ncd\nef", 4), (2, 2));
        assert_eq!(
            line_of_key("{\n  \"apps\": [\n    {\"instnces\": 2}", "instnces"),
            Some(3)
        );
        assert_eq!(
            line_of_key("apps:\n  - name: a\n    instnces: 2\n", "instnces"),
            Some(3)
        );
        assert_eq!(line_of_key("{\n  \"instnces\": 2\n}", "instnces"), Some(2));
    }
}
