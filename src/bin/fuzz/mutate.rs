//! Mutations of text files: the RON network operators, and the byte-level
//! ones that JSON tensor files share.

use std::ops::Range;

use crate::rng::Rng;

/// Numbers that find edges: zero, signs, integer widths, float extremes,
/// non-finite values (RON spells them `NaN`, `inf`).
pub const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "255",
    "65536",
    "2147483647",
    "-2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e30",
    "1e300",
    "-1e300",
    "1.0e400",
    "NaN",
    "inf",
    "-inf",
    "-0.0",
    "1e-45",
    "1e-320",
    "0.5",
    "0.001",
    "100000000",
];

/// Identifiers of the RON schema: layer kinds, encoders, readouts, methods,
/// fields, options.
const WORDS: &[&str] = &[
    "Linear",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "SumPool2d",
    "LPPool2d",
    "Flatten",
    "Scale",
    "ReLU",
    "LIF",
    "LIFRecurrent",
    "LI",
    "LILinear",
    "LSNN",
    "LSNNRecurrent",
    "LIFBox",
    "LIFAdEx",
    "Neuron",
    "IAF",
    "Izhikevich",
    "LIFEx",
    "LIFRefrac",
    "LIFAdExRefrac",
    "CobaLIF",
    "LIBox",
    "TsodyksMarkram",
    "plasticity",
    "STDP",
    "multiplicative_pow",
    "additive_step",
    "hardbound",
    "tonic_spiking",
    "accomodation",
    "SignedPoisson",
    "Population",
    "Identity",
    "Dropout",
    "add",
    "concat",
    "ConstantCurrent",
    "SpikeLatency",
    "Poisson",
    "Direct",
    "Sequence",
    "MaxLogSoftmax",
    "Max",
    "LastStep",
    "Mean",
    "SpikeCount",
    "Pattern",
    "Constant",
    "SpikesAt",
    "super",
    "tanh",
    "circ",
    "triangle",
    "heavi_erfc",
    "heaviside",
    "value",
    "subtract",
    "Some",
    "None",
    "true",
    "false",
];

/// Replacements of a string literal's contents: empty, long, paths, NUL,
/// names that collide with the IR's naming.
const STRINGS: &[&str] = &[
    "",
    "a/b",
    "../../etc/passwd",
    "/",
    "\\u{0}",
    "a\\u{0}b",
    "lif.v",
    "x",
    "output",
    "readout",
    "grad.x",
    "encoder",
    "ñ€𝄞",
    " ",
    "\\n",
    "fc",
    "v = v +",
    "v = exp(v, v)",
    "z = z * 2",
    "v - v_th",
    "x_rec",
    "1e308 * (v * v)",
    "v = v / 0",
    "clamp(v, 1, -1)",
    "lif",
    "conv",
];

/// The operators on a RON network, by name (for the reproduction notes).
pub const RON_OPS: &[&str] = &[
    "number",
    "list",
    "layer-delete",
    "layer-duplicate",
    "layer-swap",
    "line-delete",
    "line-duplicate",
    "line-swap",
    "byte-delete",
    "byte-insert",
    "bit-flip",
    "splice",
    "identifier",
    "bom",
    "bad-utf8",
    "string",
    "field-insert",
    "deep-nesting",
    "truncate",
    "comment",
];

/// Applies 1 to 3 operators to a RON network; returns the operators' names.
pub fn mutate_ron(rng: &mut Rng, text: &mut Vec<u8>, others: &[Vec<u8>]) -> Vec<&'static str> {
    let n = if rng.chance(0.6) { 1 } else { rng.range(2, 3) };
    (0..n)
        .map(|_| {
            let op = rng.below(RON_OPS.len());
            apply_ron(rng, op, text, others);
            RON_OPS[op]
        })
        .collect()
}

fn apply_ron(rng: &mut Rng, op: usize, t: &mut Vec<u8>, others: &[Vec<u8>]) {
    match RON_OPS[op] {
        "number" => replace_number(rng, t, NUMBERS),
        "list" => {
            let lists = spans(t, b'[', b']');
            if !lists.is_empty() {
                let r = rng.pick(&lists).clone();
                let body = huge_list(rng);
                t.splice(r.start + 1..r.end - 1, body.into_bytes());
            }
        }
        "layer-delete" | "layer-duplicate" | "layer-swap" => {
            let items = layer_items(t);
            if items.is_empty() {
                return;
            }
            let a = rng.pick(&items).clone();
            match RON_OPS[op] {
                "layer-delete" => {
                    let end = if t.get(a.end) == Some(&b',') { a.end + 1 } else { a.end };
                    t.drain(a.start..end);
                }
                "layer-duplicate" => {
                    let mut copy = t[a.clone()].to_vec();
                    copy.extend_from_slice(b", ");
                    t.splice(a.start..a.start, copy);
                }
                _ => {
                    let b = rng.pick(&items).clone();
                    let (x, y) = if a.start <= b.start { (a, b) } else { (b, a) };
                    if x.end <= y.start {
                        let mut out = t[..x.start].to_vec();
                        out.extend_from_slice(&t[y.clone()]);
                        out.extend_from_slice(&t[x.end..y.start]);
                        out.extend_from_slice(&t[x.clone()]);
                        out.extend_from_slice(&t[y.end..]);
                        *t = out;
                    }
                }
            }
        }
        "line-delete" | "line-duplicate" | "line-swap" => {
            let mut lines: Vec<Vec<u8>> = t.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            let i = rng.below(lines.len());
            match RON_OPS[op] {
                "line-delete" => {
                    lines.remove(i);
                }
                "line-duplicate" => lines.insert(i, lines[i].clone()),
                _ => {
                    let j = rng.below(lines.len());
                    lines.swap(i, j);
                }
            }
            *t = lines.join(&b'\n');
        }
        "splice" => {
            let Some(other) = (!others.is_empty()).then(|| rng.pick(others)) else { return };
            if other.is_empty() {
                return;
            }
            let a = rng.below(other.len());
            let b = rng.range(a, other.len().min(a + 200));
            let piece = other[a..b].to_vec();
            let at = rng.below(t.len() + 1);
            let end = if rng.chance(0.5) { rng.range(at, t.len().min(at + 100)) } else { at };
            t.splice(at..end, piece);
        }
        "identifier" => {
            let ids = identifiers(t);
            if !ids.is_empty() {
                let r = rng.pick(&ids).clone();
                let w = if rng.chance(0.3) {
                    rng.pick(crate::locate::FIELDS).to_string()
                } else {
                    rng.pick(WORDS).to_string()
                };
                t.splice(r, w.into_bytes());
            }
        }
        "bom" => {
            let at = if rng.chance(0.7) { 0 } else { rng.below(t.len() + 1) };
            t.splice(at..at, [0xEF, 0xBB, 0xBF]);
        }
        "bad-utf8" => {
            let bad: &[&[u8]] = &[&[0xFF], &[0xC3, 0x28], &[0xED, 0xA0, 0x80], &[0xF4, 0x90, 0x80, 0x80], &[0x80]];
            let at = rng.below(t.len() + 1);
            t.splice(at..at, rng.pick(bad).to_vec());
        }
        "string" => {
            let strings = string_literals(t);
            if !strings.is_empty() {
                let r = rng.pick(&strings).clone();
                let s = match rng.below(4) {
                    0 => "n/".repeat(rng.range(100, 5000)),
                    1 => "x".repeat(rng.range(256, 100_000)),
                    2 => "a\0b".to_string(),
                    _ => rng.pick(STRINGS).to_string(),
                };
                t.splice(r, s.into_bytes());
            }
        }
        "field-insert" => {
            let opens: Vec<usize> = t.iter().enumerate().filter(|&(_, &b)| b == b'(').map(|(i, _)| i + 1).collect();
            if !opens.is_empty() {
                let at = *rng.pick(&opens);
                let value = match rng.below(4) {
                    0 => rng.pick(NUMBERS).to_string(),
                    1 => "\"q\"".to_string(),
                    2 => format!("[{}]", rng.pick(NUMBERS)),
                    _ => rng.pick(WORDS).to_string(),
                };
                let field = format!("{}: {value}, ", rng.pick(crate::locate::FIELDS));
                t.splice(at..at, field.into_bytes());
            }
        }
        "deep-nesting" => {
            let depth = *rng.pick(&[64usize, 1000, 100_000]);
            let (open, close) = *rng.pick(&[("[", "]"), ("(", ")"), ("Some(", ")"), ("{", "}")]);
            let s = format!("{}{}", open.repeat(depth), close.repeat(depth));
            let at = rng.below(t.len() + 1);
            t.splice(at..at, s.into_bytes());
        }
        "comment" => {
            let c = *rng.pick(&["//", "/*", "*/", "/* /* */", "\n"]);
            let at = rng.below(t.len() + 1);
            t.splice(at..at, c.bytes());
        }
        other => mutate_bytes_named(rng, other, t),
    }
}

/// The byte operators shared with JSON files.
pub const BYTE_OPS: &[&str] = &["byte-delete", "byte-insert", "bit-flip", "truncate"];

/// Applies one byte operator.
pub fn mutate_bytes(rng: &mut Rng, t: &mut Vec<u8>) -> &'static str {
    let op = *rng.pick(BYTE_OPS);
    mutate_bytes_named(rng, op, t);
    op
}

fn mutate_bytes_named(rng: &mut Rng, op: &str, t: &mut Vec<u8>) {
    match op {
        "byte-delete" if !t.is_empty() => {
            let at = rng.below(t.len());
            let n = rng.range(1, 4).min(t.len() - at);
            t.drain(at..at + n);
        }
        "byte-insert" => {
            let interesting = b"()[]{},:\"\\/*\n\0-.e+";
            let b = if rng.chance(0.7) { *rng.pick(interesting) } else { rng.below(256) as u8 };
            let at = rng.below(t.len() + 1);
            t.insert(at, b);
        }
        "bit-flip" if !t.is_empty() => {
            let at = rng.below(t.len());
            t[at] ^= 1 << rng.below(8);
        }
        "truncate" => {
            let at = rng.below(t.len() + 1);
            t.truncate(at);
        }
        _ => {}
    }
}

/// Replaces one number token with one of `values`.
pub fn replace_number(rng: &mut Rng, t: &mut Vec<u8>, values: &[&str]) {
    let nums = numbers(t);
    if !nums.is_empty() {
        let r = rng.pick(&nums).clone();
        t.splice(r, rng.pick(values).bytes());
    }
}

/// A list body: long, empty, nested, or of extreme dimensions.
fn huge_list(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => String::new(),
        1 => vec!["1"; rng.range(100, 20_000)].join(", "),
        2 => "65536, 65536, 65536".into(),
        3 => "4294967295, 2".into(),
        4 => "[1], [2]".into(),
        _ => vec!["2"; rng.range(8, 64)].join(","),
    }
}

/// The ranges of number tokens (with a leading `-`).
pub fn numbers(t: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let starts = t[i].is_ascii_digit() && (i == 0 || !(t[i - 1].is_ascii_alphanumeric() || t[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let start = if i > 0 && t[i - 1] == b'-' { i - 1 } else { i };
        let mut j = i;
        while j < t.len()
            && (t[j].is_ascii_digit()
                || matches!(t[j], b'.' | b'_' | b'e' | b'E')
                || (matches!(t[j], b'+' | b'-') && matches!(t[j - 1], b'e' | b'E')))
        {
            j += 1;
        }
        out.push(start..j);
        i = j;
    }
    out
}

/// The ranges of identifiers outside string literals.
fn identifiers(t: &[u8]) -> Vec<Range<usize>> {
    let strings = string_literals(t);
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if (t[i].is_ascii_alphabetic() || t[i] == b'_') && (i == 0 || !t[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < t.len() && (t[j].is_ascii_alphanumeric() || t[j] == b'_') {
                j += 1;
            }
            if !strings.iter().any(|s| s.start <= i && i < s.end) {
                out.push(i..j);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The ranges of the contents of `"..."` literals.
fn string_literals(t: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if t[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            while j < t.len() && t[j] != b'"' && t[j] != b'\n' {
                j += if t[j] == b'\\' { 2 } else { 1 };
            }
            if j < t.len() && t[j] == b'"' {
                out.push(start..j);
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The ranges `open .. close` (inclusive) of balanced spans, innermost too.
fn spans(t: &[u8], open: u8, close: u8) -> Vec<Range<usize>> {
    let mut stack = Vec::new();
    let mut out = Vec::new();
    for (i, &b) in t.iter().enumerate() {
        if b == open {
            stack.push(i);
        } else if b == close
            && let Some(s) = stack.pop()
        {
            out.push(s..i + 1);
        }
    }
    out
}

/// The items of the `layers: [...]` list (trimmed ranges), split at the
/// commas of its top level.
pub fn layer_items(t: &[u8]) -> Vec<Range<usize>> {
    let Some(key) = t.windows(7).position(|w| w == b"layers:") else { return vec![] };
    let Some(open) = t[key..].iter().position(|&b| b == b'[').map(|p| key + p) else { return vec![] };
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut start = open + 1;
    let mut i = open + 1;
    let mut in_str = false;
    while i < t.len() {
        let b = t[i];
        if in_str {
            if b == b'\\' {
                i += 1;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'/' && t.get(i + 1) == Some(&b'/') {
            while i < t.len() && t[i] != b'\n' {
                i += 1;
            }
            continue;
        } else {
            match b {
                b'"' => in_str = true,
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' if depth == 0 => {
                    push_trimmed(&mut items, t, start..i);
                    break;
                }
                b')' | b']' | b'}' => depth -= 1,
                b',' if depth == 0 => {
                    push_trimmed(&mut items, t, start..i);
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    items
}

fn push_trimmed(items: &mut Vec<Range<usize>>, t: &[u8], r: Range<usize>) {
    let mut s = r.start;
    let mut e = r.end;
    // Skip whitespace and line comments before the item.
    loop {
        while s < e && t[s].is_ascii_whitespace() {
            s += 1;
        }
        if s + 1 < e && t[s] == b'/' && t[s + 1] == b'/' {
            while s < e && t[s] != b'\n' {
                s += 1;
            }
        } else {
            break;
        }
    }
    while e > s && t[e - 1].is_ascii_whitespace() {
        e -= 1;
    }
    if s < e {
        items.push(s..e);
    }
}

/// The layer names of a network text (`name: "X"` inside `layers`), for
/// matching messages.
pub fn layer_names(t: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(t);
    text.match_indices("name:")
        .filter_map(|(i, _)| {
            let rest = text[i + 5..].trim_start().strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_string())
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &[u8] = b"(version: 1, name: \"n\", steps: 4, input: [1, 6, 6],\n layers: [\n  // c\n  Conv2d(name: \"conv\", out_channels: 2, kernel_size: 3),\n  LIF(name: \"lif\", p: (method: tanh, alpha: 2.0)),\n  Linear(name: \"fc\", out: 3),\n ],\n readout: LastStep)";

    #[test]
    fn finds_layers_numbers_names() {
        let items: Vec<String> =
            layer_items(NET).into_iter().map(|r| String::from_utf8_lossy(&NET[r]).into_owned()).collect();
        assert_eq!(items.len(), 3, "{items:?}");
        assert!(items[0].starts_with("Conv2d(") && items[2] == "Linear(name: \"fc\", out: 3)", "{items:?}");
        let nums: Vec<&[u8]> = numbers(b"a: -1.5e-3, b2: 7").into_iter().map(|r| &b"a: -1.5e-3, b2: 7"[r]).collect();
        assert_eq!(nums, [&b"-1.5e-3"[..], b"7"]);
        assert_eq!(layer_names(NET), ["n", "conv", "lif", "fc"]);
    }

    #[test]
    fn mutations_are_deterministic() {
        let others = vec![NET.to_vec()];
        for case in 0..200 {
            let run = || {
                let mut rng = Rng::for_case(5, case);
                let mut t = NET.to_vec();
                let ops = mutate_ron(&mut rng, &mut t, &others);
                (t, ops)
            };
            assert_eq!(run(), run());
        }
    }
}
