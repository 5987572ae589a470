//! Names, paths and messages made safe to print: control characters are shown as escapes
//! (`\x1b`, `\n`, `\u{9b}`), so that an app name cannot move the cursor, clear the screen,
//! change colours or fake lines in a terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

use bm2_types::limits::is_unsafe_char;

/// `s` with every control character escaped (one line of a table or a prefix).
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// `s` with every control character but newlines and tabs escaped (a message of several lines).
pub fn message(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_lines: bool) -> Cow<'_, str> {
    let kept = |c: char| keep_lines && (c == '\n' || c == '\t');
    if !s.chars().any(|c| is_unsafe_char(c) && !kept(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_unsafe_char(c) || kept(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// An app's output line for a full-screen view (monit): colour and cursor sequences
/// (`ESC [ … final byte`) are dropped, as the screen cannot show them, and any other control
/// character is escaped. A line without any is returned as it is.
pub fn screen_line(s: String) -> String {
    if !s.chars().any(is_unsafe_char) {
        return s;
    }
    let mut plain = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameter and intermediate bytes, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
            continue;
        }
        plain.push(c);
    }
    text(&plain).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_as_escapes() {
        assert_eq!(text("api"), Cow::Borrowed("api"));
        assert_eq!(text("a\u{1b}[2Jb"), "a\\x1b[2Jb");
        assert_eq!(text("two\nlines\r\t"), "two\\nlines\\r\\t");
        assert_eq!(text("bell\u{7}del\u{7f}"), "bell\\x07del\\x7f");
        assert_eq!(text("c1\u{9b}31m"), "c1\\u{9b}31m");
        assert_eq!(text("rtl\u{202e}txt"), "rtl\\u{202e}txt");
        assert_eq!(text("ünïcødé 日本"), "ünïcødé 日本");
        assert_eq!(message("line 1\n\tline 2"), "line 1\n\tline 2");
        assert_eq!(
            message("name \u{1b}]0;title\u{7}"),
            "name \\x1b]0;title\\x07"
        );
    }

    #[test]
    fn screen_lines_lose_colours_and_escape_the_rest() {
        let line = |s: &str| screen_line(s.to_string());
        assert_eq!(line("plain"), "plain");
        assert_eq!(line("\u{1b}[32mgreen\u{1b}[0m ok"), "green ok");
        assert_eq!(line("\u{1b}[2J\u{1b}[1;1Hhome"), "home");
        assert_eq!(line("bell\u{7} \u{1b}]0;t"), "bell\\x07 \\x1b]0;t");
        assert_eq!(line("cut \u{1b}["), "cut ");
    }
}
