//! The `.npy` header: a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`, parsed by
//! a small literal parser (strings, integers, booleans, `None`, tuples,
//! lists, dicts; nesting at most [`MAX_DEPTH`] deep), and the dtype its
//! `descr` names.

/// The deepest nesting of brackets a header may have (a record's descr is
/// a list of tuples: depth 3; nested records go deeper and are refused).
const MAX_DEPTH: usize = 16;

/// A Python literal of a header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    /// A tuple or a list (the header does not tell them apart where it matters).
    Seq {
        items: Vec<Lit>,
        tuple: bool,
    },
    Dict(Vec<(Lit, Lit)>),
}

/// Shows a literal as Python writes it (`'shape'`, `-1`, `True`, `None`,
/// `(1, 2)`), for messages.
impl std::fmt::Display for Lit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lit::Str(s) => write!(f, "'{}'", s.escape_debug()),
            Lit::Int(i) => write!(f, "{i}"),
            Lit::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            Lit::None => f.write_str("None"),
            Lit::Seq { items, tuple } => {
                let (open, close) = if *tuple { ('(', ')') } else { ('[', ']') };
                write!(f, "{open}")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                if *tuple && items.len() == 1 {
                    f.write_str(",")?;
                }
                write!(f, "{close}")
            }
            Lit::Dict(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// Parses one Python literal filling all of `text` (surrounding blanks aside).
pub(crate) fn parse_literal(text: &str) -> Result<Lit, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0, text };
    let lit = p.value(0)?;
    p.blank();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after the header's dict at byte {}", p.i));
    }
    Ok(lit)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn blank(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.blank();
        self.s.get(self.i).copied()
    }

    fn fail<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("the header is not a valid Python literal: {what} at byte {}", self.i))
    }

    fn value(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_DEPTH {
            return self.fail("brackets nested too deep");
        }
        match self.peek() {
            None => self.fail("unexpected end"),
            Some(b'{') => {
                self.i += 1;
                let mut pairs = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Ok(Lit::Dict(pairs));
                    }
                    let key = self.value(depth + 1)?;
                    if self.peek() != Some(b':') {
                        return self.fail("expected ':'");
                    }
                    self.i += 1;
                    let value = self.value(depth + 1)?;
                    pairs.push((key, value));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return self.fail("expected ',' or '}'"),
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                let mut comma = false;
                loop {
                    if self.peek() == Some(close) {
                        self.i += 1;
                        // `(3)` is the integer 3; `(3,)` a tuple.
                        if open == b'(' && items.len() == 1 && !comma {
                            return Ok(items.pop().expect("one item"));
                        }
                        return Ok(Lit::Seq { items, tuple: open == b'(' });
                    }
                    items.push(self.value(depth + 1)?);
                    comma = false;
                    match self.peek() {
                        Some(b',') => {
                            self.i += 1;
                            comma = true;
                        }
                        Some(c) if c == close => {}
                        _ => return self.fail("expected ',' or a closing bracket"),
                    }
                }
            }
            Some(b'\'' | b'"') => self.string(),
            Some(b'u' | b'b') if matches!(self.s.get(self.i + 1), Some(b'\'' | b'"')) => {
                self.i += 1;
                self.string()
            }
            Some(c) if c == b'-' || c == b'+' || c.is_ascii_digit() => self.integer(),
            Some(_) => {
                let rest = &self.s[self.i..];
                for (word, lit) in [("True", Lit::Bool(true)), ("False", Lit::Bool(false)), ("None", Lit::None)] {
                    if rest.starts_with(word.as_bytes())
                        && !rest.get(word.len()).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    {
                        self.i += word.len();
                        return Ok(lit);
                    }
                }
                self.fail("unexpected character")
            }
        }
    }

    fn string(&mut self) -> Result<Lit, String> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(&c) = self.s.get(self.i) else { return self.fail("unterminated string") };
            if c == quote {
                self.i += 1;
                return Ok(Lit::Str(out));
            }
            if c == b'\\' {
                let Some(&e) = self.s.get(self.i + 1) else { return self.fail("unterminated string") };
                out.push(match e {
                    b'n' => '\n',
                    b't' => '\t',
                    b'\\' | b'\'' | b'"' => char::from(e),
                    _ => return self.fail("an escape sequence snnc does not read"),
                });
                self.i += 2;
                continue;
            }
            // Copy one whole UTF-8 character (the header is valid UTF-8).
            let ch = self.text[self.i..].chars().next().expect("in bounds");
            out.push(ch);
            self.i += ch.len_utf8();
        }
    }

    fn integer(&mut self) -> Result<Lit, String> {
        let negative = self.s[self.i] == b'-';
        if matches!(self.s[self.i], b'-' | b'+') {
            self.i += 1;
        }
        let start = self.i;
        let mut n: i128 = 0;
        while let Some(&d) = self.s.get(self.i).filter(|d| d.is_ascii_digit()) {
            n = match n.checked_mul(10).and_then(|n| n.checked_add(i128::from(d - b'0'))) {
                Some(n) if n <= i128::from(u64::MAX) => n,
                _ => return self.fail("an integer too large"),
            };
            self.i += 1;
        }
        if self.i == start {
            return self.fail("expected digits");
        }
        // Python 2's long integers (`3L`), as old NumPy wrote shapes.
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        Ok(Lit::Int(if negative { -n } else { n }))
    }
}

/// A scalar element type: `bool`, an integer or a float, with its size in
/// bytes and whether it is stored big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scalar {
    pub kind: Kind,
    pub size: usize,
    pub big: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int,
    UInt,
    Float,
}

/// One field of a record: `None` for padding (`('', '|V4')`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub name: String,
    pub offset: usize,
    pub scalar: Option<Scalar>,
}

/// The dtype an `.npy` header's `descr` names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Dtype {
    Scalar(Scalar),
    Record { fields: Vec<Field>, itemsize: usize },
}

impl Dtype {
    pub fn itemsize(&self) -> usize {
        match self {
            Dtype::Scalar(s) => s.size,
            Dtype::Record { itemsize, .. } => *itemsize,
        }
    }
}

/// NumPy's name of a type code, for messages.
fn numpy_name(code: &str) -> String {
    let (kind, size) = code.split_at(code.find(|c: char| c.is_ascii_digit()).unwrap_or(code.len()));
    let bits = size.parse::<usize>().map(|b| b * 8).unwrap_or(0);
    match kind {
        "O" => "object".into(),
        "c" => format!("complex{bits}"),
        "f" => format!("float{bits}"),
        "i" => format!("int{bits}"),
        "u" => format!("uint{bits}"),
        "U" => "str (unicode)".into(),
        "S" | "a" => "bytes".into(),
        "V" => "void (raw bytes)".into(),
        k if k.starts_with('M') => "datetime64".into(),
        k if k.starts_with('m') => "timedelta64".into(),
        _ => "an unknown type".into(),
    }
}

/// The message for an object array.
pub(crate) const OBJECT_ARRAYS: &str = "the array holds Python objects (dtype '|O'); pickled objects are not read; \
     save numeric arrays (for example arr.astype(numpy.float32))";

/// Parses a scalar descr such as `<f4`, `|u1`, `>i8`, `|b1`.
pub(crate) fn parse_scalar(descr: &str) -> Result<Scalar, String> {
    let (big, code) = match descr.as_bytes().first() {
        Some(b'<' | b'|' | b'=') => (false, &descr[1..]),
        Some(b'>' | b'!') => (true, &descr[1..]),
        _ => (false, descr),
    };
    let unsupported = || {
        if code == "O" || code.starts_with("O") {
            return OBJECT_ARRAYS.to_string();
        }
        format!(
            "dtype '{descr}' ({}) is not supported; snnc reads bool, integer (int8..int64, uint8..uint64) and \
             float (float16, float32, float64) arrays and records of them: convert it, for example with \
             arr.astype(numpy.float32)",
            numpy_name(code)
        )
    };
    let (kind, size) = match code {
        "b1" | "?" => (Kind::Bool, 1),
        "i1" | "b" => (Kind::Int, 1),
        "i2" | "h" => (Kind::Int, 2),
        "i4" => (Kind::Int, 4),
        "i8" => (Kind::Int, 8),
        "u1" | "B" => (Kind::UInt, 1),
        "u2" | "H" => (Kind::UInt, 2),
        "u4" => (Kind::UInt, 4),
        "u8" => (Kind::UInt, 8),
        "f2" | "e" => (Kind::Float, 2),
        "f4" => (Kind::Float, 4),
        "f8" | "d" => (Kind::Float, 8),
        _ => return Err(unsupported()),
    };
    Ok(Scalar { kind, size, big })
}

/// The padding size of a `|V4`-style descr, if it is one.
fn void_size(descr: &str) -> Option<usize> {
    descr.strip_prefix('|').unwrap_or(descr).strip_prefix('V')?.parse().ok()
}

/// Parses a header's `descr`: a scalar string or a record's list of
/// `(name, descr)` fields. Returns the dtype and the descr as text (the
/// string itself, or the record's list written as NumPy writes it).
pub(crate) fn parse_descr(descr: &Lit) -> Result<(Dtype, String), String> {
    match descr {
        Lit::Str(s) => Ok((Dtype::Scalar(parse_scalar(s)?), s.clone())),
        Lit::Seq { items, tuple: false } => {
            let mut fields: Vec<Field> = Vec::new();
            let mut offset = 0usize;
            let mut text = Vec::new();
            for item in items {
                let Lit::Seq { items: parts, .. } = item else {
                    return Err("a record's descr must be a list of (name, dtype) tuples".into());
                };
                let name = match parts.first() {
                    Some(Lit::Str(n)) => n.clone(),
                    // `((title, name), dtype)`: a titled field.
                    Some(Lit::Seq { items: t, .. }) => match t.get(1) {
                        Some(Lit::Str(n)) => n.clone(),
                        _ => return Err("a titled record field must be ((title, name), dtype)".into()),
                    },
                    _ => return Err("a record field's name must be a string".into()),
                };
                let field_descr = match parts.get(1) {
                    Some(Lit::Str(d)) => d.clone(),
                    Some(Lit::Seq { .. }) => {
                        return Err(format!("record field '{name}' is itself a record; only flat records are read"));
                    }
                    _ => return Err(format!("record field '{name}' has no dtype string")),
                };
                if let Some(shape) = parts.get(2) {
                    return Err(format!(
                        "record field '{name}' has the sub-array shape {shape:?}; only scalar fields are read \
                         (split it into one field per element)"
                    ));
                }
                let (scalar, size) = match void_size(&field_descr) {
                    Some(n) if name.is_empty() => (None, n),
                    _ => {
                        let s = parse_scalar(&field_descr).map_err(|e| format!("record field '{name}': {e}"))?;
                        (Some(s), s.size)
                    }
                };
                if scalar.is_some() && fields.iter().any(|f| f.scalar.is_some() && f.name == name) {
                    return Err(format!("record field '{name}' appears twice"));
                }
                text.push(format!("('{name}', '{field_descr}')"));
                fields.push(Field { name, offset, scalar });
                offset = offset.checked_add(size).ok_or("the record's size overflows")?;
            }
            if !fields.iter().any(|f| f.scalar.is_some()) {
                return Err("a record with no fields".into());
            }
            Ok((Dtype::Record { fields, itemsize: offset }, format!("[{}]", text.join(", "))))
        }
        other => Err(format!("'descr' is {other}, neither a dtype string nor a record's list of fields")),
    }
}

/// The parts of a parsed header.
#[derive(Debug)]
pub(crate) struct Header {
    pub dtype: Dtype,
    pub descr: String,
    pub fortran: bool,
    pub shape: Vec<usize>,
}

/// Reads the header dict (its keys must be exactly `descr`,
/// `fortran_order` and `shape`, as NumPy requires).
pub(crate) fn parse_header(text: &str) -> Result<Header, String> {
    let Lit::Dict(pairs) = parse_literal(text)? else {
        return Err("the header is not a dict".into());
    };
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (key, value) in &pairs {
        let slot = match key {
            Lit::Str(k) if k == "descr" => &mut descr,
            Lit::Str(k) if k == "fortran_order" => &mut fortran,
            Lit::Str(k) if k == "shape" => &mut shape,
            _ => {
                return Err(format!(
                    "the header has the key {key}; a NumPy header has 'descr', 'fortran_order', 'shape'"
                ));
            }
        };
        if slot.replace(value).is_some() {
            return Err(format!("the header has the key {key} twice"));
        }
    }
    let (Some(descr), Some(fortran), Some(shape)) = (descr, fortran, shape) else {
        return Err("the header lacks one of the keys descr, fortran_order, shape".into());
    };
    let Lit::Bool(fortran) = *fortran else {
        return Err(format!("'fortran_order' is {fortran:?}, not True or False"));
    };
    let Lit::Seq { items, .. } = shape else {
        return Err(format!("'shape' is {shape:?}, not a tuple of sizes"));
    };
    let shape = items
        .iter()
        .map(|d| match d {
            Lit::Int(n) if *n >= 0 => usize::try_from(*n).map_err(|_| format!("the size {n} in 'shape' is too large")),
            _ => Err(format!("the header's 'shape' holds {d}, not a size (a whole number at least 0)")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (dtype, descr) = parse_descr(descr)?;
    Ok(Header { dtype, descr, fortran, shape })
}

/// The header dict NumPy writes for a C-order array: `descr` is a scalar
/// descr string.
pub(crate) fn header_text(descr: &str, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
}
