//! Reading and writing the RON format.
//!
//! [`parse_network`] turns text into a [`Network`] and reports syntax and
//! schema errors with `file:line:col`, the offending line and a caret, and
//! the valid alternatives; it does not check values (see
//! [`check_network`](crate::check::check_network)). The format is described in
//! the [`schema`](crate::schema) module doc.
//!
//! The parser enables ron's `implicit_some` extension, so an `Option` field
//! may be written as its value (`name: "lif1"`) or as `Some("lif1")`.

use std::path::Path;

use ron::error::{Error as RonError, SpannedError};
use ron::extensions::Extensions;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Visitor};

use crate::error::FrontendError;
use crate::schema::{FORMAT_VERSION, Layer, Network};

/// Nesting deeper than this is an error. The schema needs five levels
/// (network, layer list, layer, parameters, method); the limit keeps
/// malicious input from overflowing the stack.
const RECURSION_LIMIT: usize = 32;

fn options() -> ron::Options {
    ron::Options::default().with_default_extension(Extensions::IMPLICIT_SOME).with_recursion_limit(RECURSION_LIMIT)
}

/// Parses a network description in RON. `file` is used only in messages.
///
/// The version is checked first, so a file written for another version of
/// the format gets "unsupported version", not a confusing field error.
pub fn parse_network(text: &str, file: &str) -> Result<Network, FrontendError> {
    check_version(text, file)?;
    options().from_str::<Network>(text).map_err(|err| syntax_error(text, file, &err))
}

/// The largest network description [`load_network`] reads: 16 MiB, far
/// more than any network needs (the examples are under 2 KiB). Reading
/// stops there, so `/dev/zero` or a pipe that never ends is refused.
pub const MAX_NETWORK_BYTES: u64 = 16 << 20;

/// Reads and parses a network description from a file.
pub fn load_network(path: &Path) -> Result<Network, FrontendError> {
    let file = path.display().to_string();
    let bytes = read_bounded(path).map_err(|message| FrontendError::Io { file: file.clone(), message })?;
    let text = decode(&bytes, &file)?;
    parse_network(text, &file)
}

/// The bytes of `path`, at most [`MAX_NETWORK_BYTES`] (more is an error
/// naming the limit).
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_NETWORK_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_NETWORK_BYTES {
        return Err(format!(
            "it holds more than {} MiB, and a network description is a small text file; give the .ron file",
            MAX_NETWORK_BYTES >> 20
        ));
    }
    Ok(bytes)
}

/// The UTF-8 byte-order mark, which some editors write at the start.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The text of a file: UTF-8 after an optional byte-order mark. Anything
/// else is a syntax error at the first bad byte, with its byte offset in
/// the file.
fn decode<'a>(bytes: &'a [u8], file: &str) -> Result<&'a str, FrontendError> {
    let skipped = if bytes.starts_with(BOM) { BOM.len() } else { 0 };
    let err = match std::str::from_utf8(&bytes[skipped..]) {
        Ok(text) => return Ok(text),
        Err(err) => err,
    };
    let offset = skipped + err.valid_up_to();
    let line_start = bytes[..offset].iter().rposition(|&b| b == b'\n').map_or(skipped, |i| i + 1);
    let line_end = bytes[offset..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| offset + i);
    // Everything before `offset` is valid UTF-8.
    let col = 1 + std::str::from_utf8(&bytes[line_start..offset]).map_or(0, |s| s.chars().count());
    let line = 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
    let mut snippet = String::from_utf8_lossy(&bytes[line_start..line_end]).trim_end_matches('\r').to_string();
    let message = if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        // Its characters are not worth showing: every other byte is 0.
        snippet.clear();
        "not UTF-8 but UTF-16 (the file starts with a UTF-16 byte-order mark)".to_string()
    } else if err.error_len().is_none() {
        format!("not valid UTF-8: the file ends inside a character at byte offset {offset}")
    } else {
        format!("not valid UTF-8: byte 0x{:02X} at byte offset {offset}", bytes[offset])
    };
    Err(FrontendError::Syntax {
        file: file.to_string(),
        line,
        col,
        len: 1,
        message,
        snippet,
        help: Some("snnc reads UTF-8 text; save the file as UTF-8".to_string()),
    })
}

/// Writes a network as pretty RON that [`parse_network`] reads back to the
/// same value. Options are written without `Some(..)`.
pub fn to_ron(net: &Network) -> String {
    let config = ron::ser::PrettyConfig::default().extensions(Extensions::IMPLICIT_SOME);
    let mut text = options()
        .without_recursion_limit()
        .to_string_pretty(net, config)
        .expect("a Network always serializes: it holds no maps with non-string keys");
    text.push('\n');
    text
}

/// Only the version field, read before the whole description.
#[derive(Deserialize)]
#[serde(rename = "Network")]
struct VersionProbe {
    #[serde(default)]
    version: Option<u32>,
}

fn check_version(text: &str, file: &str) -> Result<(), FrontendError> {
    // Anything the probe can't read is left to the full parse, which
    // reports it properly.
    let Ok(VersionProbe { version: Some(version) }) = options().from_str::<VersionProbe>(text) else {
        return Ok(());
    };
    if version == FORMAT_VERSION {
        return Ok(());
    }
    let (line, col, len) = locate_field_value(text, "version").unwrap_or((1, 1, 1));
    Err(FrontendError::syntax_at(
        text,
        file,
        line,
        col,
        len,
        format!("unsupported format version {version}"),
        Some(format!("supported versions: {FORMAT_VERSION}")),
    ))
}

/// Finds the value of the first field `name: value` outside strings and
/// comments; returns its 1-based line, column and width in characters.
fn locate_field_value(text: &str, name: &str) -> Option<(usize, usize, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if is_ident_char(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if ident == name && chars.get(j) == Some(&':') {
                j += 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let value_start = j;
                while j < chars.len() && !matches!(chars[j], ',' | ')' | ']' | '}') && !chars[j].is_whitespace() {
                    j += 1;
                }
                let (line, col) = position_of(&chars, value_start);
                return Some((line, col, j - value_start));
            }
        } else {
            i += 1;
        }
    }
    None
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The 1-based line and column of the character at `index`.
fn position_of(chars: &[char], index: usize) -> (usize, usize) {
    let before = &chars[..index.min(chars.len())];
    let line = 1 + before.iter().filter(|&&c| c == '\n').count();
    let col = 1 + before.iter().rev().take_while(|&&c| c != '\n').count();
    (line, col)
}

/// Turns ron's error into ours: a lower-case message in our words where we
/// can say more, the token found, the valid alternatives, and a "did you
/// mean".
fn syntax_error(text: &str, file: &str, err: &SpannedError) -> FrontendError {
    let chars: Vec<char> = text.chars().collect();
    let (start, end) = (err.span.start, err.span.end);
    let mut len = if end.line == start.line && end.col > start.col { end.col - start.col } else { 1 };
    let mut index = index_of(&chars, start.line, start.col);
    if err.code == RonError::Eof {
        // Point just after the last token, not at the empty end.
        index = previous_token_end(&chars, chars.len()).unwrap_or(0);
        len = 1;
    } else if chars.get(index).is_some_and(|c| c.is_whitespace()) {
        // ron's span often starts at the whitespace before the token.
        while chars.get(index).is_some_and(|c| c.is_whitespace()) {
            index += 1;
        }
        len = 1;
    }
    let found = token_at(&chars, index);
    let after_digit = index > 0 && chars[index - 1].is_ascii_digit();
    let (mut message, mut help) = describe(&err.code, found.as_deref());
    if err.code == RonError::ExpectedComma
        && after_digit
        && found.as_deref().is_some_and(|t| t.starts_with(['.', 'e', 'E']))
    {
        // `steps: 3.5`: ron read `3` as the integer and stopped at `.5`.
        let start =
            (0..index).rev().take_while(|&i| chars[i].is_ascii_digit() || chars[i] == '-').last().unwrap_or(index);
        let number = chars[start..index].iter().collect::<String>() + found.as_deref().unwrap_or("");
        let (line, col) = position_of(&chars, start);
        return FrontendError::syntax_at(
            text,
            file,
            line,
            col,
            number.chars().count(),
            format!("expected a whole number, found `{number}`"),
            Some("sizes, `steps`, `version` and `seed` are integers".to_string()),
        );
    }
    if err.code == RonError::IntegerOutOfBounds && index > 0 && chars[index - 1] == '-' {
        // ron points after the minus sign of a negative integer.
        index -= 1;
        len += 1;
    }
    if is_expected_error(&err.code) {
        let (line, _) = position_of(&chars, index);
        match (&err.code, previous_token_end(&chars, index)) {
            // A missing comma at the end of a line: point after the value
            // that lacks it, as rustc does.
            (RonError::ExpectedComma, Some(prev)) if position_of(&chars, prev).0 < line => {
                (index, len) = (prev, 1);
                help = Some("a `,` may be missing at the end of this line".to_string());
            }
            _ => match &found {
                Some(token) => {
                    message = format!("{message}, found `{token}`");
                    len = token.chars().count();
                }
                None => message = format!("{message}, found the end of the text"),
            },
        }
    }
    let (line, col) = position_of(&chars, index);
    FrontendError::syntax_at(text, file, line, col, len, message, help)
}

/// The character index of a 1-based line and column (clamped to the text).
fn index_of(chars: &[char], line: usize, col: usize) -> usize {
    let mut index = 0;
    let mut current = 1;
    while current < line && index < chars.len() {
        if chars[index] == '\n' {
            current += 1;
        }
        index += 1;
    }
    let mut c = 1;
    while c < col && index < chars.len() && chars[index] != '\n' {
        index += 1;
        c += 1;
    }
    index
}

/// The token that starts at character `index`, shortened to 30 characters;
/// `None` at the end of the text.
fn token_at(chars: &[char], index: usize) -> Option<String> {
    let rest = chars.get(index..)?;
    let first = *rest.first()?;
    let token: Vec<char> = if first == '"' {
        let end = rest[1..].iter().position(|&c| c == '"' || c == '\n').map_or(rest.len(), |i| i + 2);
        rest[..end.min(rest.len())].to_vec()
    } else if is_ident_char(first) || matches!(first, '.' | '+' | '-') {
        rest.iter().copied().take_while(|&c| is_ident_char(c) || matches!(c, '.' | '+' | '-')).collect()
    } else {
        vec![first]
    };
    let shown: String = token.iter().take(30).collect();
    Some(if token.len() > 30 { format!("{shown}...") } else { shown })
}

/// The character index just after the last non-whitespace character before
/// `index`, ignoring `//` comments.
fn previous_token_end(chars: &[char], index: usize) -> Option<usize> {
    let mut i = index.min(chars.len());
    loop {
        let line_start = chars[..i].iter().rposition(|&c| c == '\n').map_or(0, |p| p + 1);
        let line = &chars[line_start..i];
        let code_len = line.windows(2).position(|w| w == ['/', '/']).unwrap_or(line.len());
        if let Some(last) = line[..code_len].iter().rposition(|c| !c.is_whitespace()) {
            return Some(line_start + last + 1);
        }
        if line_start == 0 {
            return None;
        }
        i = line_start - 1;
    }
}

/// Whether ron's message is "expected X" without saying what it found.
fn is_expected_error(code: &RonError) -> bool {
    matches!(
        code,
        RonError::ExpectedArray
            | RonError::ExpectedArrayEnd
            | RonError::ExpectedBoolean
            | RonError::ExpectedComma
            | RonError::ExpectedChar
            | RonError::ExpectedFloat
            | RonError::ExpectedInteger
            | RonError::ExpectedOption
            | RonError::ExpectedOptionEnd
            | RonError::ExpectedMap
            | RonError::ExpectedMapColon
            | RonError::ExpectedMapEnd
            | RonError::ExpectedStructLike
            | RonError::ExpectedNamedStructLike(_)
            | RonError::ExpectedStructLikeEnd
            | RonError::ExpectedUnit
            | RonError::ExpectedString
            | RonError::ExpectedStringEnd
            | RonError::ExpectedIdentifier
    )
}

/// What the user calls an enum of the schema, and how to introduce its
/// list of values.
fn enum_noun(outer: Option<&str>) -> (&'static str, &'static str) {
    match outer {
        Some("Layer") => ("layer kind", "the layer kinds are"),
        Some("Method") => ("surrogate method", "the methods (Norse's names) are"),
        Some("Encoder") => ("encoder", "the encoders are"),
        Some("Readout") => ("readout", "the readouts are"),
        Some("ResetMethod") => ("reset method", "the reset methods are"),
        _ => ("variant", "expected one of"),
    }
}

/// Our message and help for ron's error; `found` is the token at the error.
fn describe(code: &RonError, found: Option<&str>) -> (String, Option<String>) {
    match code {
        RonError::NoSuchEnumVariant { expected, found, outer } => {
            let (noun, intro) = enum_noun(outer.as_deref());
            let message = match (noun, outer) {
                ("variant", Some(outer)) => format!("unknown variant `{found}` of `{outer}`"),
                _ => format!("unknown {noun} `{found}`"),
            };
            let help = if outer.as_deref() == Some("Layer") && serde_names::<Network>().contains(&found.as_str()) {
                format!("`{found}` is a field of the network: a `]` closing `layers` may be missing before it")
            } else {
                with_suggestion(found, expected, intro)
            };
            (message, Some(help))
        }
        RonError::NoSuchStructField { expected, found, outer } => {
            let message = match outer {
                Some(outer) => format!("unknown field `{found}` in `{outer}`"),
                None => format!("unknown field `{found}`"),
            };
            let help = if serde_names::<Layer>().contains(&found.as_str()) {
                format!("`{found}` is a layer kind: a `)` closing the previous layer may be missing before it")
            } else if outer.as_deref() != Some("Network") && serde_names::<Network>().contains(&found.as_str()) {
                format!("`{found}` is a field of the network: a `)` or `]` may be missing before it")
            } else {
                with_suggestion(found, expected, "the fields are")
            };
            (message, Some(help))
        }
        RonError::MissingStructField { field, outer } => {
            let message = match outer {
                Some(outer) => format!("missing field `{field}` in `{outer}`"),
                None => format!("missing field `{field}`"),
            };
            let example = if *field == "version" { FORMAT_VERSION.to_string() } else { "...".to_string() };
            (message, Some(format!("add `{field}: {example}`")))
        }
        RonError::DuplicateStructField { field, outer } => {
            let message = match outer {
                Some(outer) => format!("field `{field}` given twice in `{outer}`"),
                None => format!("field `{field}` given twice"),
            };
            (message, Some("remove one of them".to_string()))
        }
        RonError::ExpectedDifferentStructName { expected, found } => (
            format!("expected `{expected}` but found `{found}`"),
            Some(format!("write `{expected}(...)` or leave the name out: `(...)`")),
        ),
        RonError::Eof => {
            ("unexpected end of the text".to_string(), Some("a closing `)` or `]` may be missing".to_string()))
        }
        RonError::ExceededRecursionLimit => (
            format!("nested more than {RECURSION_LIMIT} levels deep"),
            Some("a closing `)` or `]` may be missing".to_string()),
        ),
        RonError::TrailingCharacters => (
            "unexpected text after the end of the network".to_string(),
            Some("the description is one `(...)`; a `)` may be misplaced".to_string()),
        ),
        RonError::IntegerOutOfBounds => (
            "integer out of range".to_string(),
            Some(
                "sizes, `steps` and `version` are whole numbers from 0 to 4294967295, `seed` from 0 to 2^64-1"
                    .to_string(),
            ),
        ),
        other => {
            let message = lower_first(&other.to_string());
            let help = match (other, found) {
                (RonError::ExpectedIdentifier | RonError::ExpectedStructLike, Some(token))
                    if token.starts_with('"') =>
                {
                    Some("kinds, methods and readouts are written without quotes, e.g. `method: tanh`".to_string())
                }
                (RonError::ExpectedIdentifier, Some(",") | Some("]")) => {
                    Some("a closing `)` may be missing before it".to_string())
                }
                (RonError::ExpectedStructLike, Some("{")) => {
                    Some("fields are written in parentheses: `Linear(out: 10)`, not braces".to_string())
                }
                (RonError::ExpectedStructLike, Some(",") | Some(")") | Some("]")) => {
                    Some("every layer kind and encoder takes parentheses, even without fields: `Flatten()`".to_string())
                }
                (RonError::ExpectedComma, Some("(")) => {
                    Some("values such as `MaxLogSoftmax` or `true` take no parentheses".to_string())
                }
                _ => None,
            };
            (message, help)
        }
    }
}

/// The variant names (of an enum) or field names (of a struct) that serde
/// derives for `T`, read by a deserializer that stops at the first call.
fn serde_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    // The probe always fails; only the names it saw matter.
    let _ = T::deserialize(NameProbe(&mut names));
    names
}

struct NameProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> serde::Deserializer<'de> for NameProbe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("name probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("name probe"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = variants;
        Err(serde::de::Error::custom("name probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map identifier ignored_any
    }
}

/// "did you mean `x`?" when one alternative is close, then the list.
fn with_suggestion(found: &str, expected: &[&str], intro: &str) -> String {
    let list = expected.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ");
    match closest(found, expected) {
        Some(best) => format!("did you mean `{best}`? {} {list}", upper_first(intro)),
        None => format!("{intro} {list}"),
    }
}

/// The alternative nearest to `found` (case-insensitive edit distance), if
/// it is near enough to be a likely typo.
fn closest<'a>(found: &str, expected: &[&'a str]) -> Option<&'a str> {
    let found_lower = found.to_lowercase();
    expected
        .iter()
        .map(|e| (edit_distance(&found_lower, &e.to_lowercase()), *e))
        .filter(|(d, e)| *d <= (e.chars().count().max(found.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
