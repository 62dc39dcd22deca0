//! JSON for the state file, the status reply and the hooks' input: a parser into a small
//! `Value` tree and a writer of objects and arrays. Our own rather than a derive-based crate:
//! the daemon reads and writes a handful of fixed shapes, and on a router the generic
//! machinery (and its float formatting, which nothing here needs) cost more than these.

use std::fmt::Write as _;

/// Nesting deeper than this is refused (the shapes we read are three levels deep).
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number's text as written: counters are u64, which an f64 would round.
    Number(String),
    String(String),
    Array(Vec<Value>),
    /// Members in the order written; a repeated name counts once, the last one (as Go reads).
    Object(Vec<(String, Value)>),
}

impl Value {
    /// An object's member.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().rev().find(|(k, _)| k == name).map(|m| &m.1),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer that fits a u64.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Every string in the tree, for wiping keys after a parse.
    pub fn strings_mut(&mut self, f: &mut impl FnMut(&mut String)) {
        match self {
            Value::String(s) => f(s),
            Value::Array(items) => items.iter_mut().for_each(|v| v.strings_mut(f)),
            Value::Object(members) => members.iter_mut().for_each(|(_, v)| v.strings_mut(f)),
            _ => {}
        }
    }
}

/// Why a text is not JSON, and the byte offset where that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub offset: usize,
    pub reason: &'static str,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// Parses one JSON value; only whitespace may follow it.
pub fn parse(text: &str) -> Result<Value, Error> {
    let mut p = Parser { text, pos: 0 };
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.error("text after the value"));
    }
    Ok(v)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> Error {
        Error {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Consumes `b` after optional whitespace.
    fn eat(&mut self, b: u8) -> bool {
        self.skip_ws();
        let found = self.peek() == Some(b);
        self.pos += usize::from(found);
        found
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_ws();
                        if self.peek() != Some(b'"') {
                            return Err(self.error("expected a member name"));
                        }
                        let name = self.string()?;
                        if !self.eat(b':') {
                            return Err(self.error("expected ':'"));
                        }
                        members.push((name, self.value(depth + 1)?));
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.error("expected ',' or '}'"));
                        }
                    }
                }
                Ok(Value::Object(members))
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.error("expected ',' or ']'"));
                        }
                    }
                }
                Ok(Value::Array(items))
            }
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => {
                let rest = &self.text[self.pos..];
                for (word, v) in [
                    ("null", Value::Null),
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                ] {
                    if rest.starts_with(word) {
                        self.pos += word.len();
                        return Ok(v);
                    }
                }
                Err(self.error("expected a value"))
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        self.pos += usize::from(self.peek() == Some(b'-'));
        let int_start = self.pos;
        let int = self.digits();
        if int == 0 || (int > 1 && self.text.as_bytes()[int_start] == b'0') {
            return Err(self.error("bad number"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("bad number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("bad number"));
            }
        }
        Ok(Value::Number(self.text[start..self.pos].to_string()))
    }

    /// A string at `pos` (its opening quote). The buffer is sized once, from the escaped text,
    /// so that no reallocation leaves a copy of a key behind.
    fn string(&mut self) -> Result<String, Error> {
        let bytes = self.text.as_bytes();
        self.pos += 1;
        let end = {
            let mut i = self.pos;
            loop {
                match bytes.get(i) {
                    None => return Err(self.error("unterminated string")),
                    Some(b'"') => break i,
                    Some(b'\\') => i += 2,
                    Some(_) => i += 1,
                }
            }
        };
        let mut out = String::with_capacity(end - self.pos);
        while self.pos < end {
            let run = self.pos;
            while self.pos < end && !matches!(bytes[self.pos], b'\\' | 0..=0x1f) {
                self.pos += 1;
            }
            out.push_str(&self.text[run..self.pos]);
            if self.pos == end {
                break;
            }
            if bytes[self.pos] != b'\\' {
                return Err(self.error("control character in string"));
            }
            self.pos += 1;
            let c = match bytes[self.pos] {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    self.pos += 1;
                    let hi = self.hex4()?;
                    let code = if (0xd800..0xdc00).contains(&hi)
                        && self.text[self.pos..].starts_with("\\u")
                    {
                        self.pos += 2;
                        let lo = self.hex4()?;
                        if (0xdc00..0xe000).contains(&lo) {
                            0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                        } else {
                            // Go reads a broken pair as two replacement characters.
                            out.push(char::REPLACEMENT_CHARACTER);
                            lo
                        }
                    } else {
                        hi
                    };
                    // A lone surrogate is not a char: the replacement character, as in Go.
                    out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                    continue;
                }
                _ => return Err(self.error("bad escape")),
            };
            out.push(c);
            self.pos += 1;
        }
        self.pos = end + 1;
        Ok(out)
    }

    /// Four hex digits of a `\u` escape, within the string (which ends with its quote).
    fn hex4(&mut self) -> Result<u32, Error> {
        let digits = self.text.get(self.pos..self.pos + 4);
        let code = digits
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.error("bad \\u escape"))?;
        self.pos += 4;
        Ok(code)
    }
}

/// Appends `s` as a JSON string.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0'..='\u{1f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends an array, each item written by `item`.
pub fn array<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut item: impl FnMut(&mut String, T),
) {
    out.push('[');
    for (i, t) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(out, t);
    }
    out.push(']');
}

/// Writes an object's members in order; `end` closes it.
pub struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    pub fn new(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, first: true }
    }

    /// Starts a member: its value is written next, to the returned buffer.
    pub fn key(&mut self, name: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        string(self.out, name);
        self.out.push(':');
        self.out
    }

    pub fn str(&mut self, name: &str, value: &str) -> &mut Self {
        string(self.key(name), value);
        self
    }

    /// A string member, or null.
    pub fn opt_str(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(name, v),
            None => self.raw(name, "null"),
        }
    }

    pub fn u64(&mut self, name: &str, value: u64) -> &mut Self {
        let _ = write!(self.key(name), "{value}");
        self
    }

    /// A number member, or null.
    pub fn opt_u64(&mut self, name: &str, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.u64(name, v),
            None => self.raw(name, "null"),
        }
    }

    /// A member whose value is already JSON text.
    pub fn raw(&mut self, name: &str, json: &str) -> &mut Self {
        self.key(name).push_str(json);
        self
    }

    pub fn strs<S: AsRef<str>>(&mut self, name: &str, values: &[S]) -> &mut Self {
        array(self.key(name), values, |out, v| string(out, v.as_ref()));
        self
    }

    pub fn end(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn parses_the_shapes_we_read() {
        let v = parse(
            " {\"a\": [1, -2.5e3, true, false, null], \"b\": {\"c\": \"x\\ty\"}, \"a\": \"last\"}\n",
        )
        .unwrap();
        assert_eq!(v.get("a"), Some(&s("last")));
        assert_eq!(v.get("b").and_then(|b| b.get("c")), Some(&s("x\ty")));
        assert_eq!(v.get("nope"), None);
        let Value::Object(members) = &v else { panic!() };
        assert_eq!(
            members[0].1,
            Value::Array(vec![
                Value::Number("1".into()),
                Value::Number("-2.5e3".into()),
                Value::Bool(true),
                Value::Bool(false),
                Value::Null,
            ])
        );
        assert_eq!(
            parse("18446744073709551615").unwrap().as_u64(),
            Some(u64::MAX)
        );
        assert_eq!(parse("-1").unwrap().as_u64(), None);
        assert_eq!(parse("[]").unwrap().as_array(), Some(&[][..]));
        assert_eq!(parse("{}").unwrap(), Value::Object(vec![]));
    }

    #[test]
    fn unescapes_like_go() {
        let v = parse(r#""\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800x\udc00""#).unwrap();
        assert_eq!(
            v.as_str(),
            Some("\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1f600}\u{fffd}x\u{fffd}")
        );
        // A high surrogate followed by an escape that is not a low one.
        assert_eq!(
            parse(r#""\ud800\u0041""#).unwrap().as_str(),
            Some("\u{fffd}A")
        );
        assert_eq!(parse("\"é ok\"").unwrap().as_str(), Some("é ok"));
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            " ",
            "{",
            "[1,]",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "{1:2}",
            "01",
            "1.",
            "-",
            "1e",
            "+1",
            "\"abc",
            "\"a\\x\"",
            "\"a\\u12\"",
            "\"a\\u12g4\"",
            "\"tab\there\"",
            "nul",
            "true false",
            "[\"a\"]x",
            "\"\\",
            "\"\\u",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert_eq!(parse(&deep).unwrap_err().reason, "nested too deeply");
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        assert_eq!(
            parse("{\"a\":}").unwrap_err(),
            Error {
                offset: 5,
                reason: "expected a value"
            }
        );
    }

    #[test]
    fn writes_what_it_reads_back() {
        let mut out = String::new();
        let mut o = Object::new(&mut out);
        o.str("name", "a\"b\\c\n\u{1}é")
            .opt_str("none", None)
            .u64("n", u64::MAX)
            .opt_u64("age", None)
            .strs("list", &["x", "y"]);
        array(o.key("nums"), [1u64, 2], |out, n| {
            let _ = write!(out, "{n}");
        });
        o.raw("obj", "{}");
        o.end();
        assert_eq!(
            out,
            r#"{"name":"a\"b\\c\n\u0001é","none":null,"n":18446744073709551615,"age":null,"list":["x","y"],"nums":[1,2],"obj":{}}"#
        );
        let v = parse(&out).unwrap();
        assert_eq!(
            v.get("name").and_then(Value::as_str),
            Some("a\"b\\c\n\u{1}é")
        );
        assert_eq!(v.get("n").and_then(Value::as_u64), Some(u64::MAX));
        assert_eq!(v.get("none"), Some(&Value::Null));
    }

    #[test]
    fn strings_mut_reaches_every_string() {
        let mut v = parse(r#"{"k":"secret","l":["a",{"m":"b"}],"n":1}"#).unwrap();
        let mut seen = Vec::new();
        v.strings_mut(&mut |s| {
            seen.push(s.clone());
            s.clear();
        });
        assert_eq!(seen, ["secret", "a", "b"]);
        assert_eq!(v.get("k"), Some(&s("")));
    }
}
