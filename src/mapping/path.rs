//! JSON paths into a vendor message: `hoSo.chuHoSo.hoTen`, `phiLePhi[].soTien`, `a[0].b`.
//!
//! # Format
//! Dot-separated object keys; a key may be followed by `[N]` (one array element) or `[]`
//! (every element: only where a list is meant). Keys are taken literally (Vietnamese or
//! not); they cannot contain `.`, `[` or `]`. A path is parsed once, when the mapping is
//! loaded, never per message.
//!
//! Paths display as `$.hoSo.chuHoSo.hoTen`, `$.phiLePhi[1].soTien`: the form used in every
//! error message.

use std::fmt;

use serde_json::{Map, Value};
use thiserror::Error;

/// Why a path text could not be parsed ([`JsonPath::parse`], at load time), or a value could
/// not be written at a path ([`JsonPath::set`], while building a vendor message). `path` is the
/// text as written (parse) or the path's display form (set).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("the path is empty")]
    Empty,
    #[error("`{path}` has an empty key (two dots, or a leading `[`)")]
    EmptyKey { path: String },
    #[error("`{path}`: `]` without `[` in key `{key}`")]
    StrayClose { path: String, key: String },
    #[error("`{path}`: `[` is not closed")]
    UnclosedBracket { path: String },
    #[error("`{path}`: `[{inner}]` is not an index: write [] or [0], [1], …")]
    NotAnIndex { path: String, inner: String },
    #[error("`{path}`: a dot is missing after `]`")]
    DotMissing { path: String },
    /// Writing: an existing value that is not an object is where a key goes.
    #[error("{path}: `{key}` is inside a value that is not an object")]
    NotAnObject { path: String, key: String },
    /// Writing: an existing value that is not an array is where an index goes.
    #[error("{path}: `[{index}]` is applied to a value that is not an array")]
    NotAnArray { path: String, index: usize },
    /// Writing through `[]`: which element is meant is unknown.
    #[error("{path}: cannot write through `[]`")]
    WriteThroughEach { path: String },
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// An object member.
    Key(String),
    /// One array element.
    Index(usize),
    /// Every array element (`[]`).
    Each,
}

/// A parsed JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    segs: Vec<Seg>,
}

impl JsonPath {
    /// Parse `a.b[0].c` / `a[].b`. The error says what is wrong with the text.
    pub fn parse(text: &str) -> Result<JsonPath, PathError> {
        let t = text.trim();
        let t = t.strip_prefix("$.").unwrap_or(t);
        if t.is_empty() {
            return Err(PathError::Empty);
        }
        let mut segs = Vec::new();
        for part in t.split('.') {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if key.is_empty() {
                return Err(PathError::EmptyKey { path: text.into() });
            }
            if key.contains(']') {
                return Err(PathError::StrayClose {
                    path: text.into(),
                    key: key.into(),
                });
            }
            segs.push(Seg::Key(key.to_string()));
            while !rest.is_empty() {
                let close = rest
                    .find(']')
                    .ok_or_else(|| PathError::UnclosedBracket { path: text.into() })?;
                let inner = &rest[1..close];
                if inner.is_empty() {
                    segs.push(Seg::Each);
                } else {
                    let n: usize = inner.parse().map_err(|_| PathError::NotAnIndex {
                        path: text.into(),
                        inner: inner.into(),
                    })?;
                    segs.push(Seg::Index(n));
                }
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(PathError::DotMissing { path: text.into() });
                }
            }
        }
        Ok(JsonPath { segs })
    }

    pub fn segs(&self) -> &[Seg] {
        &self.segs
    }

    /// Whether the path holds `[]` anywhere.
    pub fn has_each(&self) -> bool {
        self.segs.contains(&Seg::Each)
    }

    /// The same path without a trailing `[]` (a list rule may be written `phiLePhi[]`).
    pub fn without_trailing_each(mut self) -> JsonPath {
        if self.segs.last() == Some(&Seg::Each) {
            self.segs.pop();
        }
        self
    }

    /// The value at this path; `None` when any step is missing. `[]` steps are not allowed
    /// here (use [`JsonPath::get_all`]); they make the lookup fail.
    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut cur = v;
        for s in &self.segs {
            cur = match s {
                Seg::Key(k) => cur.as_object()?.get(k)?,
                Seg::Index(i) => cur.as_array()?.get(*i)?,
                Seg::Each => return None,
            };
        }
        Some(cur)
    }

    /// Every value the path reaches, each with its concrete display path (`$.a[2].b`).
    pub fn get_all<'a>(&self, v: &'a Value) -> Vec<(String, &'a Value)> {
        let mut out = Vec::new();
        walk(&self.segs, v, "$".to_string(), &mut out);
        out
    }

    /// Write `new` at this path, creating objects (and, for `[N]`, array elements as `null`)
    /// on the way. Fails when an existing value of another type is in the way, or on `[]`.
    pub fn set(&self, root: &mut Value, new: Value) -> Result<(), PathError> {
        let mut cur = root;
        for (i, s) in self.segs.iter().enumerate() {
            let last = i + 1 == self.segs.len();
            match s {
                Seg::Key(k) => {
                    if cur.is_null() {
                        *cur = Value::Object(Map::new());
                    }
                    let obj = cur.as_object_mut().ok_or_else(|| PathError::NotAnObject {
                        path: self.to_string(),
                        key: k.clone(),
                    })?;
                    let slot = obj.entry(k.clone()).or_insert(Value::Null);
                    if last {
                        *slot = new;
                        return Ok(());
                    }
                    cur = slot;
                }
                Seg::Index(n) => {
                    if cur.is_null() {
                        *cur = Value::Array(Vec::new());
                    }
                    let arr = cur.as_array_mut().ok_or_else(|| PathError::NotAnArray {
                        path: self.to_string(),
                        index: *n,
                    })?;
                    while arr.len() <= *n {
                        arr.push(Value::Null);
                    }
                    if last {
                        arr[*n] = new;
                        return Ok(());
                    }
                    cur = &mut arr[*n];
                }
                Seg::Each => {
                    return Err(PathError::WriteThroughEach {
                        path: self.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Display this path below a base display path (`$.phiLePhi[1]` + `soTien`).
    pub fn under(&self, base: &str) -> String {
        let mut s = base.to_string();
        push_segs(&mut s, &self.segs);
        s
    }
}

fn push_segs(s: &mut String, segs: &[Seg]) {
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
            Seg::Each => s.push_str("[]"),
        }
    }
}

fn walk<'a>(segs: &[Seg], v: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    let Some((first, rest)) = segs.split_first() else {
        out.push((at, v));
        return;
    };
    match first {
        Seg::Key(k) => {
            if let Some(n) = v.as_object().and_then(|o| o.get(k)) {
                walk(rest, n, format!("{at}.{k}"), out);
            }
        }
        Seg::Index(i) => {
            if let Some(n) = v.as_array().and_then(|a| a.get(*i)) {
                walk(rest, n, format!("{at}[{i}]"), out);
            }
        }
        Seg::Each => {
            if let Some(a) = v.as_array() {
                for (i, n) in a.iter().enumerate() {
                    walk(rest, n, format!("{at}[{i}]"), out);
                }
            }
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.under("$"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_displays() {
        let p = JsonPath::parse("hoSo.chuHoSo.hoTen").unwrap();
        assert_eq!(p.to_string(), "$.hoSo.chuHoSo.hoTen");
        let p = JsonPath::parse("phiLePhi[].soTien").unwrap();
        assert_eq!(p.segs()[1], Seg::Each);
        assert!(p.has_each());
        let p = JsonPath::parse("a[0][2].b").unwrap();
        assert_eq!(p.to_string(), "$.a[0][2].b");
        for bad in ["", "a..b", "a[x]", "a[0", "a]b", "a[0]b", "[0]"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gets_sets_and_expands() {
        let v = json!({"hoSo": {"phi": [{"soTien": 1}, {"soTien": 2}]}});
        let p = JsonPath::parse("hoSo.phi[1].soTien").unwrap();
        assert_eq!(p.get(&v), Some(&json!(2)));
        let all = JsonPath::parse("hoSo.phi[].soTien").unwrap().get_all(&v);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].0, "$.hoSo.phi[1].soTien");
        let mut out = Value::Null;
        JsonPath::parse("a.b[1].c")
            .unwrap()
            .set(&mut out, json!("x"))
            .unwrap();
        assert_eq!(out, json!({"a": {"b": [null, {"c": "x"}]}}));
        let mut s = json!({"a": 1});
        assert!(JsonPath::parse("a.b")
            .unwrap()
            .set(&mut s, json!(1))
            .is_err());
    }
}
