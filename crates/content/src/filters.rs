//! containerd's filter language, shared by content, snapshot, image and lease listings.
//!
//! ```text
//! filters  := selector ("," selector)*          -- all selectors must match (AND)
//! selector := fieldpath [op value]              -- no operator: the field is present
//! op       := "==" | "!=" | "~="                -- "~=" is a regular expression match
//! fieldpath:= field ("." field)*                -- a field is [A-Za-z0-9_]+ or a quoted string
//! value    := quoted | run of characters up to "," or white space
//! quoted   := "…" (with Go escapes) | /…/ | |…|
//! ```
//!
//! Several filter strings are ORed ([`Filter::parse_all`]). Objects expose their fields
//! through [`Adaptor`].
//!
//! ```
//! use strata_content::filters::{Adaptor, Filter};
//! struct Blob { digest: &'static str, root: bool }
//! impl Adaptor for Blob {
//!     fn field(&self, path: &[String]) -> Option<String> {
//!         match path.first().map(String::as_str)? {
//!             "digest" => Some(self.digest.to_string()),
//!             "labels" if self.root && path.get(1)? == "containerd.io/gc.root" => Some("x".into()),
//!             _ => None,
//!         }
//!     }
//! }
//! let f = Filter::parse(r#"labels."containerd.io/gc.root",digest~=^sha256:a"#).unwrap();
//! assert!(f.matches(&Blob { digest: "sha256:abc", root: true }));
//! assert!(!f.matches(&Blob { digest: "sha256:abc", root: false }));
//! let any = Filter::parse_all(&["digest==sha256:b", "digest==sha256:abc"]).unwrap();
//! assert!(any.matches(&Blob { digest: "sha256:abc", root: false }));
//! ```

use crate::{Error, Result};
use regex::Regex;
use std::collections::BTreeMap;

/// Something a [`Filter`] can be evaluated against: returns the value at a field path,
/// or `None` when the field is absent.
pub trait Adaptor {
    /// The value of `fieldpath` (for example `["labels", "containerd.io/gc.root"]`).
    fn field(&self, fieldpath: &[String]) -> Option<String>;
}

/// Adapts a label map under the `labels` prefix: `labels.<key>`.
///
/// Helper for implementing [`Adaptor`]: `path` is the field path after `labels`.
pub fn label_field(labels: &BTreeMap<String, String>, rest: &[String]) -> Option<String> {
    if rest.is_empty() {
        return None;
    }
    labels.get(&rest.join(".")).cloned()
}

#[derive(Debug, Clone)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

#[derive(Debug, Clone)]
struct Selector {
    fieldpath: Vec<String>,
    op: Op,
}

impl Selector {
    fn matches(&self, a: &dyn Adaptor) -> bool {
        let value = a.field(&self.fieldpath);
        match &self.op {
            Op::Present => value.is_some(),
            Op::Equal(v) => value.as_deref() == Some(v.as_str()),
            Op::NotEqual(v) => value.as_deref().unwrap_or("") != v,
            Op::Matches(re) => re.is_match(value.as_deref().unwrap_or("")),
        }
    }
}

/// A parsed filter: an OR of AND-ed selectors. The empty filter matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    any_of: Vec<Vec<Selector>>,
}

impl Filter {
    /// A filter that matches everything.
    pub fn always() -> Self {
        Filter::default()
    }

    /// Parses one filter string (selectors joined by `,`, all of which must match).
    /// An empty string matches everything.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) naming the
    /// input and the position of the problem.
    pub fn parse(input: &str) -> Result<Self> {
        Self::parse_all(&[input])
    }

    /// Parses several filter strings; an object matches when any of them matches.
    /// No strings (or only empty ones) match everything.
    ///
    /// # Errors
    /// As [`Filter::parse`].
    pub fn parse_all<S: AsRef<str>>(inputs: &[S]) -> Result<Self> {
        let mut any_of = Vec::new();
        for input in inputs {
            let input = input.as_ref();
            if input.trim().is_empty() {
                return Ok(Filter::always());
            }
            any_of.push(Parser::new(input).parse()?);
        }
        Ok(Filter { any_of })
    }

    /// Whether `a` matches.
    pub fn matches(&self, a: &dyn Adaptor) -> bool {
        self.any_of.is_empty()
            || self
                .any_of
                .iter()
                .any(|all| all.iter().all(|s| s.matches(a)))
    }
}

struct Parser<'a> {
    input: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            input,
            chars: input.char_indices().collect(),
            pos: 0,
        }
    }

    fn err(&self, what: &str) -> Error {
        let at = self
            .chars
            .get(self.pos)
            .map(|c| c.0)
            .unwrap_or(self.input.len());
        Error::invalid_argument(format!("filter {:?}: {what} at offset {at}", self.input))
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|c| c.1)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, s: &str) -> bool {
        let mut p = self.pos;
        for want in s.chars() {
            match self.chars.get(p) {
                Some(&(_, c)) if c == want => p += 1,
                _ => return false,
            }
        }
        self.pos = p;
        true
    }

    fn parse(mut self) -> Result<Vec<Selector>> {
        let mut selectors = Vec::new();
        loop {
            self.skip_ws();
            selectors.push(self.selector()?);
            self.skip_ws();
            match self.peek() {
                None => return Ok(selectors),
                Some(',') => self.pos += 1,
                Some(_) => return Err(self.err("expected ',' or end of filter")),
            }
        }
    }

    fn selector(&mut self) -> Result<Selector> {
        let fieldpath = self.fieldpath()?;
        self.skip_ws();
        let op = if self.eat("==") {
            Op::Equal(self.value()?)
        } else if self.eat("!=") {
            Op::NotEqual(self.value()?)
        } else if self.eat("~=") {
            let v = self.value()?;
            let re = Regex::new(&v).map_err(|e| {
                self.err(&format!("bad regular expression {v:?}"))
                    .with_source(e)
            })?;
            Op::Matches(re)
        } else {
            match self.peek() {
                None | Some(',') => Op::Present,
                Some(c) if c.is_whitespace() => Op::Present,
                Some(_) => return Err(self.err("expected an operator (==, != or ~=)")),
            }
        };
        Ok(Selector { fieldpath, op })
    }

    fn fieldpath(&mut self) -> Result<Vec<String>> {
        let mut path = vec![self.field()?];
        while self.peek() == Some('.') {
            self.pos += 1;
            path.push(self.field()?);
        }
        Ok(path)
    }

    fn field(&mut self) -> Result<String> {
        match self.peek() {
            Some(q @ ('"' | '/' | '|' | '`')) => self.quoted(q),
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.pos += 1;
                }
                Ok(self.chars[start..self.pos].iter().map(|c| c.1).collect())
            }
            _ => Err(self.err("expected a field name")),
        }
    }

    fn value(&mut self) -> Result<String> {
        self.skip_ws();
        match self.peek() {
            Some(q @ ('"' | '/' | '|' | '`')) => self.quoted(q),
            Some(c) if c != ',' && !c.is_whitespace() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c != ',' && !c.is_whitespace()) {
                    self.pos += 1;
                }
                Ok(self.chars[start..self.pos].iter().map(|c| c.1).collect())
            }
            _ => Err(self.err("expected a value")),
        }
    }

    /// A quoted string. `"` strings take Go escapes; `/…/`, `|…|` and backquotes are raw
    /// except that `\<quote>` stands for the quote character.
    fn quoted(&mut self, quote: char) -> Result<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("unterminated quoted string"));
            };
            self.pos += 1;
            if c == quote {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.peek() else {
                return Err(self.err("unterminated escape"));
            };
            self.pos += 1;
            if quote != '"' {
                if e != quote {
                    out.push('\\');
                }
                out.push(e);
                continue;
            }
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                '\\' | '"' | '\'' => out.push(e),
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = (0..n)
                        .filter_map(|i| self.chars.get(self.pos + i))
                        .map(|c| c.1)
                        .collect();
                    let ch = u32::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == n)
                        .and_then(char::from_u32)
                        .ok_or_else(|| self.err("bad escape in quoted string"))?;
                    self.pos += n;
                    out.push(ch);
                }
                _ => return Err(self.err("bad escape in quoted string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Obj(HashMap<&'static str, &'static str>);
    impl Adaptor for Obj {
        fn field(&self, path: &[String]) -> Option<String> {
            self.0.get(path.join(".").as_str()).map(|s| s.to_string())
        }
    }
    fn obj(kv: &[(&'static str, &'static str)]) -> Obj {
        Obj(kv.iter().cloned().collect())
    }

    #[test]
    fn operators() {
        let o = obj(&[("name", "foo"), ("labels.a", "1"), ("kind", "active")]);
        for (f, want) in [
            ("name==foo", true),
            ("name==bar", false),
            ("name!=bar", true),
            ("name!=foo", false),
            ("name~=^f", true),
            ("name~=^b", false),
            ("labels.a", true),
            ("labels.b", false),
            ("labels.a==1,name==foo", true),
            ("labels.a==1,name==bar", false),
            ("parent!=\"\"", false),
            ("  name == foo , kind==active ", true),
            ("", true),
        ] {
            assert_eq!(Filter::parse(f).unwrap().matches(&o), want, "{f}");
        }
    }

    #[test]
    fn or_of_strings() {
        let o = obj(&[("name", "a")]);
        assert!(
            Filter::parse_all(&["name==b", "name==a"])
                .unwrap()
                .matches(&o)
        );
        assert!(
            !Filter::parse_all(&["name==b", "name==c"])
                .unwrap()
                .matches(&o)
        );
        assert!(Filter::parse_all::<&str>(&[]).unwrap().matches(&o));
    }

    #[test]
    fn quoted_fields_and_values() {
        let o = obj(&[
            ("labels.containerd.io/gc.root", "x y"),
            ("digest", "sha256:ab"),
        ]);
        assert!(
            Filter::parse(r#"labels."containerd.io/gc.root""#)
                .unwrap()
                .matches(&o)
        );
        assert!(
            Filter::parse(r#"labels."containerd.io/gc.root"=="x y""#)
                .unwrap()
                .matches(&o)
        );
        assert!(
            Filter::parse(r#"labels."containerd.io/gc.root"~=/^x\s/"#)
                .unwrap()
                .matches(&o)
        );
        assert!(Filter::parse("digest==sha256:ab").unwrap().matches(&o));
        assert!(
            Filter::parse(r#"digest=="sha256:\x61b""#)
                .unwrap()
                .matches(&o)
        );
    }

    #[test]
    fn errors_are_invalid_argument() {
        for f in [
            "name=foo",
            "==x",
            "name==",
            "labels.\"unterminated",
            "name~=(",
            "a,,b",
            "a b",
        ] {
            let e = Filter::parse(f).unwrap_err();
            assert!(e.is_invalid_argument(), "{f}: {e}");
            assert!(e.to_string().contains("filter"), "{e}");
        }
    }
}
