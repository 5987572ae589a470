//! `.json` ecosystem files as PM2 reads them: PM2 evaluates them as a JavaScript object literal,
//! so files in the wild have comments, trailing commas, single-quoted strings and unquoted keys.
//! They are rewritten here into strict JSON, line for line (every newline is kept where it was),
//! so that the JSON parser's positions, its recursion limit and the key paths of errors still
//! point into the user's file. Strict JSON comes out unchanged.

/// `text` (a JavaScript object literal, or JSON) as strict JSON with the same lines.
pub fn to_json(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => i = copy_double(&chars, i, &mut out),
            '\'' | '`' => i = convert_quoted(&chars, i, c, &mut out),
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    out.push(' ');
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                out.push_str("  ");
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    out.push(if chars[i] == '\n' { '\n' } else { ' ' });
                    i += 1;
                }
                if i < chars.len() {
                    out.push_str("  ");
                    i += 2;
                }
            }
            ',' if matches!(next_significant(&chars, i + 1), Some('}' | ']')) => {
                out.push(' ');
                i += 1;
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if next_significant(&chars, i) == Some(':') {
                    out.push('"');
                    out.push_str(&word);
                    out.push('"');
                } else if word == "undefined" {
                    out.push_str("null");
                } else {
                    out.push_str(&word);
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Copies a double-quoted string starting at `i`; returns the index after it.
fn copy_double(chars: &[char], mut i: usize, out: &mut String) -> usize {
    out.push('"');
    i += 1;
    while i < chars.len() {
        let c = chars[i];
        out.push(c);
        i += 1;
        if c == '\\' {
            if let Some(&n) = chars.get(i) {
                out.push(n);
                i += 1;
            }
        } else if c == '"' {
            break;
        }
    }
    i
}

/// Rewrites a string quoted with `quote` (`'` or a backquote) starting at `i` as a
/// double-quoted one; returns the index after it.
fn convert_quoted(chars: &[char], mut i: usize, quote: char, out: &mut String) -> usize {
    out.push('"');
    i += 1;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '\\' => match chars.get(i) {
                Some(&n) if n == '\'' || n == '`' => {
                    out.push(n);
                    i += 1;
                }
                Some(&n) => {
                    out.push('\\');
                    out.push(n);
                    i += 1;
                }
                None => out.push('\\'),
            },
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c == quote => break,
            c => out.push(c),
        }
    }
    out.push('"');
    i
}

/// The next character after `i` that is not blank or in a comment.
fn next_significant(chars: &[char], mut i: usize) -> Option<char> {
    while i < chars.len() {
        match chars[i] {
            c if c.is_whitespace() => i += 1,
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
            c => return Some(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> serde_json::Value {
        serde_json::from_str(&to_json(text)).unwrap_or_else(|e| panic!("{e}: {}", to_json(text)))
    }

    #[test]
    fn strict_json_is_unchanged() {
        let json = "{\n  \"apps\": [{\"name\": \"a//b\", \"args\": \"it's, /* not */ ]\"}],\n  \"n\": [1, true, null]\n}";
        assert_eq!(to_json(json), json);
    }

    #[test]
    fn javascript_literals_become_json_line_for_line() {
        let text = "{\n  // the apps\n  apps: [{\n    name: 'api', /* inline */\n    script: 'server.js',\n    env: { MSG: 'say \"hi\"', Q: 'it\\'s', },\n  },],\n}\n";
        let out = to_json(text);
        assert_eq!(out.lines().count(), text.lines().count());
        let v = value(text);
        assert_eq!(v["apps"][0]["name"], "api");
        assert_eq!(v["apps"][0]["env"]["MSG"], "say \"hi\"");
        assert_eq!(v["apps"][0]["env"]["Q"], "it's");
        assert!(out.lines().nth(4).unwrap().contains("\"script\""));
    }

    #[test]
    fn values_that_look_like_keys_are_kept() {
        let v = value("{a: true, b: [false, null, undefined], 'c': `t`}");
        assert_eq!(
            v,
            serde_json::json!({"a": true, "b": [false, null, null], "c": "t"})
        );
    }
}
