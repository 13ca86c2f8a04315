//! Bad input never panics the frontend: random strings and mutated valid
//! RON (bit flips, deletions, insertions, truncation, numbers swapped for
//! negative, NaN, huge or malformed ones) go through `parse_network` and
//! `check_network`, which must return `Ok` or a `FrontendError` that renders
//! a non-empty message pointing into the text.
//!
//! [`mutated_ron`] and [`valid_ron`] are meant for reuse by later stages
//! (e.g. lowering): `proptest!(|(text in mutated_ron())| { ... })`.
//!
//! The property tests run fixed cases (`common::proptest_config`; set
//! `SNNC_PROPTEST_EXPLORE=1` and `PROPTEST_CASES` to fuzz further). Every
//! failure found so far is a case of [`past_failures`]; add new ones there.

mod common;

use proptest::prelude::*;
use snnc_frontend::{FrontendError, Layer, Network, Pair, check_network, parse_network, to_ron};

/// One edit of a text. Positions are taken modulo the text's length (plus
/// one where the end is a valid position).
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flip one bit of one byte (may make the text invalid UTF-8, which is
    /// then replaced by U+FFFD).
    FlipBit { at: usize, bit: u8 },
    /// Delete up to `len` bytes.
    Delete { at: usize, len: usize },
    /// Insert a snippet.
    Insert { at: usize, text: String },
    /// Cut the text short.
    Truncate { at: usize },
    /// Replace one of the text's numbers.
    ReplaceNumber { nth: usize, with: String },
    /// Repeat a stretch of the text right after itself.
    Duplicate { at: usize, len: usize },
}

/// Values a number may be swapped for: out of range, not finite, negative,
/// malformed, or of the wrong type.
const NUMBERS: &[&str] = &[
    "-1",
    "0",
    "-0.0",
    "0.0",
    "NaN",
    "-NaN",
    "inf",
    "-inf",
    "1e308",
    "1e400",
    "-1e400",
    "5e-324",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-99999999999999999999",
    "3.5",
    "0x10",
    "0b101",
    "1_000",
    "1e",
    ".5",
    "+1",
    "\"1\"",
    "()",
    "true",
];

/// Snippets worth inserting: brackets, RON syntax, names that matter.
const SNIPPETS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "'",
    "//",
    "/*",
    "*/",
    "\n",
    "\r\n",
    "\t",
    "é",
    "\u{0}",
    "Some(",
    "None",
    "NaN",
    "r#",
    "b\"",
    "#![enable(implicit_some)]",
    "#![enable(unwrap_variant_newtypes)]",
    "Network",
    "version: 2,",
    "LIF(),",
    "name: \"encoder\",",
    "name: \"output\",",
    "p: (),",
    "method: heavi_erfc,",
    "alpha: -1,",
    "in: 0,",
    "steps: 0,",
    "dt: -0.001,",
    "layers: [],",
    "encoder: Poisson(f_max: -5),",
];

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let snippet = prop_oneof![prop::sample::select(SNIPPETS).prop_map(str::to_string), "[ -~]{0,8}", any::<String>()];
    // Swapped numbers keep the text valid RON more often than the other
    // edits, so they reach `check_network`; they get the most weight.
    prop_oneof![
        1 => (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => (any::<usize>(), 1..16usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        2 => (any::<usize>(), snippet).prop_map(|(at, text)| Mutation::Insert { at, text }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        4 => (any::<usize>(), prop::sample::select(NUMBERS))
            .prop_map(|(nth, with)| Mutation::ReplaceNumber { nth, with: with.to_string() }),
        1 => (any::<usize>(), 1..40usize).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

/// The byte spans of the numbers in `text` (a digit, or `-` then a digit,
/// followed by digits, `.`, `e`, `+`, `-`, `_`).
fn number_spans(text: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let starts = text[i].is_ascii_digit() || (text[i] == b'-' && text.get(i + 1).is_some_and(u8::is_ascii_digit));
        let in_word = i > 0 && (text[i - 1].is_ascii_alphanumeric() || text[i - 1] == b'_');
        if starts && !in_word {
            let start = i;
            i += 1;
            while i < text.len() && (text[i].is_ascii_digit() || b".eE+-_".contains(&text[i])) {
                i += 1;
            }
            spans.push((start, i));
        } else {
            i += 1;
        }
    }
    spans
}

/// Applies one mutation to a text.
pub fn apply(text: &str, mutation: &Mutation) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let n = bytes.len();
    match mutation {
        Mutation::FlipBit { at, bit } => {
            if n > 0 {
                bytes[at % n] ^= 1 << bit;
            }
        }
        Mutation::Delete { at, len } => {
            let start = at % (n + 1);
            bytes.drain(start..(start + len).min(n));
        }
        Mutation::Insert { at, text } => {
            let start = at % (n + 1);
            bytes.splice(start..start, text.bytes());
        }
        Mutation::Truncate { at } => bytes.truncate(at % (n + 1)),
        Mutation::ReplaceNumber { nth, with } => {
            let spans = number_spans(&bytes);
            if !spans.is_empty() {
                let (start, end) = spans[nth % spans.len()];
                bytes.splice(start..end, with.bytes());
            }
        }
        Mutation::Duplicate { at, len } => {
            let start = at % (n + 1);
            let stretch = bytes[start..(start + len).min(n)].to_vec();
            let end = start + stretch.len();
            bytes.splice(end..end, stretch);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Valid RON texts: the fixed ones of `common` and `to_ron` of arbitrary
/// networks (whose values need not pass `check_network`).
pub fn valid_ron() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(common::seed_texts()).prop_map(str::to_string),
        common::arb_network().prop_map(|net| to_ron(&net)),
    ]
}

/// A valid RON text with one to four mutations applied.
pub fn mutated_ron() -> impl Strategy<Value = String> {
    (valid_ron(), prop::collection::vec(mutation(), 1..=4))
        .prop_map(|(text, mutations)| mutations.iter().fold(text, |text, m| apply(&text, m)))
}

/// Token soup: RON-ish words joined by spaces.
fn ron_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(SNIPPETS).prop_map(str::to_string),
        prop::sample::select(NUMBERS).prop_map(str::to_string),
        prop::sample::select(vec!["version", "name", "steps", "input", "layers", "LIF", "Linear", "out", "p", "v_th"])
            .prop_map(str::to_string),
    ];
    prop::collection::vec(token, 0..60).prop_map(|tokens| tokens.join(" "))
}

/// Parses and checks `text`; what a caller of the frontend sees.
pub fn parse_and_check(text: &str) -> Result<Network, FrontendError> {
    let net = parse_network(text, "fuzz.ron")?;
    check_network(&net, "fuzz.ron")?;
    Ok(net)
}

/// The result is `Ok`, or an error that renders sensibly and points into
/// the text.
fn assert_well_formed(text: &str) -> Result<(), TestCaseError> {
    let err = match parse_and_check(text) {
        Ok(net) => {
            // A checked network lowers to valid IR, or gives a shape error.
            match snnc_frontend::lower(&net, "fuzz.ron", &snnc_frontend::LowerOptions::default()) {
                Ok(module) => {
                    let valid = snnc_ir::validate(&module);
                    prop_assert!(valid.is_ok(), "invalid IR for {:?}: {:?}", text, valid);
                    return Ok(());
                }
                Err(e) => e,
            }
        }
        Err(e) => e,
    };
    let rendered = err.to_string();
    prop_assert!(!rendered.trim().is_empty(), "empty message for {:?}", text);
    prop_assert!(!rendered.ends_with('\n'), "trailing newline: {:?}", rendered);
    prop_assert!(rendered.starts_with("fuzz.ron"), "no file name: {:?}", rendered);
    match &err {
        FrontendError::Syntax { line, col, snippet, message, .. } => {
            prop_assert!(!message.is_empty());
            let source_line = text.lines().nth(line - 1).unwrap_or("").trim_end_matches('\r');
            prop_assert_eq!(snippet.as_str(), source_line, "line {} of {:?}", line, text);
            prop_assert!(*col >= 1 && *col <= snippet.chars().count() + 1, "col {} in {:?}", col, snippet);
            prop_assert!(*line == 1 || *line <= text.lines().count() + 1, "line {} of {:?}", line, text);
        }
        FrontendError::Invalid { problems, .. } => {
            prop_assert!(!problems.is_empty());
            prop_assert!(problems.iter().all(|p| !p.at.is_empty() && !p.message.is_empty()));
        }
        FrontendError::Io { .. } => prop_assert!(false, "no file is read"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(common::proptest_config(1024))]

    #[test]
    fn mutated_ron_never_panics(text in mutated_ron()) {
        assert_well_formed(&text)?;
    }
}

proptest! {
    #![proptest_config(common::proptest_config(512))]

    #[test]
    fn random_strings_never_panic(text in any::<String>()) {
        assert_well_formed(&text)?;
    }

    #[test]
    fn ron_like_strings_never_panic(text in "[(){}\\[\\]:,a-zA-Z0-9_\" .\n#!/*+-]{0,200}") {
        assert_well_formed(&text)?;
    }

    #[test]
    fn ron_soup_never_panics(text in ron_soup()) {
        assert_well_formed(&text)?;
    }

    #[test]
    fn a_valid_text_in_a_wrapper_never_panics(text in valid_ron(), prefix in "[(\\[ ]{0,3}", suffix in "[)\\] ,]{0,3}") {
        assert_well_formed(&format!("{prefix}{text}{suffix}"))?;
    }
}

/// Sizes that overflow when multiplied, added or doubled, and small ones.
fn any_size() -> impl Strategy<Value = u32> {
    prop_oneof![1..8u32, prop::sample::select(vec![65535, 65536, 1 << 31, u32::MAX - 1, u32::MAX]), any::<u32>()]
}

/// A size pair of any sizes (often square).
fn any_pair() -> impl Strategy<Value = Pair> {
    prop_oneof![any_size().prop_map(Pair::square), (any_size(), any_size()).prop_map(|(h, w)| Pair([h, w]))]
}

fn opt_pair() -> impl Strategy<Value = Option<Pair>> {
    proptest::option::of(any_pair())
}

/// A padding pair: small, or any.
fn pad_pair() -> impl Strategy<Value = Pair> {
    let p = || prop_oneof![0..4u32, any_size()];
    (p(), p()).prop_map(|(h, w)| Pair([h, w]))
}

/// A layer with valid parameters and any sizes.
fn sized_layer() -> impl Strategy<Value = Layer> {
    let opt = || proptest::option::of(any_size());
    prop_oneof![
        (opt(), any_size(), any::<bool>()).prop_map(|(input, out, bias)| Layer::Linear {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: None,
            input,
            out,
            bias,
            input_density: None,
            plasticity: None,
        }),
        (
            opt(),
            any_size(),
            any_pair(),
            any_pair(),
            pad_pair(),
            any_pair(),
            prop_oneof![1..4u32, any_size()],
            any::<bool>()
        )
            .prop_map(|(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)| {
                Layer::Conv2d {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name: None,
                    in_channels,
                    out_channels,
                    kernel_size,
                    stride,
                    padding,
                    dilation,
                    groups,
                    bias,
                    input_density: None,
                    plasticity: None,
                }
            }),
        (any_pair(), opt_pair(), pad_pair(), 0..4u8).prop_map(|(kernel_size, stride, padding, kind)| {
            let name = None;
            match kind {
                0 => Layer::MaxPool2d {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name,
                    kernel_size,
                    stride,
                    padding,
                },
                1 => Layer::AvgPool2d {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name,
                    kernel_size,
                    stride,
                    padding,
                    count_include_pad: true,
                },
                2 => Layer::SumPool2d {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name,
                    kernel_size,
                    stride,
                    padding,
                },
                _ => Layer::LPPool2d {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name,
                    norm_type: 1.0,
                    kernel_size,
                    stride,
                },
            }
        }),
        Just(Layer::Flatten { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name: None }),
        Just(Layer::LIF {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: None,
            p: Default::default()
        }),
        (opt(), any_size(), any::<bool>()).prop_map(|(input, hidden, autapses)| Layer::LIFRecurrent {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: None,
            input,
            hidden,
            p: Default::default(),
            autapses,
            input_density: None,
        }),
        (opt(), any_size()).prop_map(|(input, out)| Layer::LILinear {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: None,
            input,
            out,
            p: Default::default(),
            input_density: None
        }),
    ]
}

/// A network whose every value is in range but whose sizes may overflow
/// any shape arithmetic.
fn sized_network() -> impl Strategy<Value = Network> {
    (any_size(), prop::collection::vec(any_size(), 1..4), any::<bool>(), prop::collection::vec(sized_layer(), 1..4))
        .prop_map(|(steps, input, encoder, layers)| {
            let mut net = parse_and_check("(version: 1, name: \"n\", steps: 1, input: [1], layers: [LIF()])")
                .expect("a valid network");
            net.steps = steps;
            net.input = input;
            net.encoder = encoder.then_some(snnc_frontend::Encoder::ConstantCurrent { p: Default::default() });
            net.layers = layers;
            net
        })
}

proptest! {
    #![proptest_config(common::proptest_config(1024))]

    /// Shape arithmetic never overflows: a network of any sizes lowers, or
    /// the error names a layer (or the input) and says what to change.
    #[test]
    fn any_sizes_lower_or_name_the_layer(net in sized_network()) {
        let text = to_ron(&net);
        assert_well_formed(&text)?;
    }
}

#[test]
fn the_mutations_do_what_they_say() {
    let text = "(steps: 32, dt: -0.5, input: [1, 28])";
    assert_eq!(number_spans(text.as_bytes()).len(), 4);
    let swapped = apply(text, &Mutation::ReplaceNumber { nth: 5, with: "NaN".into() });
    assert_eq!(swapped, "(steps: 32, dt: NaN, input: [1, 28])");
    // Positions wrap around: `len + 1` is the start again.
    assert_eq!(apply(text, &Mutation::Truncate { at: text.len() + 1 }), "");
    assert_eq!(apply(text, &Mutation::Truncate { at: 7 }), "(steps:");
    assert_eq!(apply("ab", &Mutation::Duplicate { at: 0, len: 1 }), "aab");
    assert_eq!(apply("ab", &Mutation::Insert { at: 2, text: "x".into() }), "abx");
    assert_eq!(apply("ab", &Mutation::Delete { at: 0, len: 5 }), "");
    assert_eq!(apply("a", &Mutation::FlipBit { at: 1, bit: 0 }), "`");
}

/// Inputs that failed before, in the order they were found (the first two
/// were `fuzz_ron.proptest-regressions`): a huge network, a huge Linear
/// input, a Conv2d padding that overflowed `n + 2 * padding` in the IR's
/// typing rule, and a kernel whose `in_channels * k * k` overflowed.
const PAST_FAILURES: &[&str] = &[
    "(\n    version: 1,\n    name: \"\u{11390} \u{a66}0®0\",\n    steps: 1000000000,\n    dt: 418.8412337766608,\n    input: [\n        1000000000,\n        1000000000,\n        1000000000,\n    ],\n    encoder: Poisson(\n        f_max: 1.4854736922907263E276,\n        seed: 10000000000000000000,\n    ),\n    layers: [],\n    readout: Max,\n    seed: 1000000000000000000,\n)\n",
    "(\n    version: 1,\n    name: \"\",\n    steps: 1,\n    dt: 121.86151695454159,\n    input: [\n        15,\n        1255976337,\n        979144991,\n    ],\n    encoder: None,\n    layers: [\n        Linear(\n            name: None,\n            in: None,\n            out: 1,\n            bias: false,\n        ),\n    ],\n    readout: Sequence,\n    seed: 0,\n)\n",
    PADDING_OVERFLOW,
    "(version: 1, name: \"k\", steps: 2, input: [1, 3, 3], encoder: ConstantCurrent(), \
     layers: [Conv2d(name: \"conv1\", out_channels: 2, kernel_size: 65536, padding: 32767), LIF()])",
];

/// A Conv2d whose padded input does not fit in 32 bits.
const PADDING_OVERFLOW: &str = "(version: 1, name: \"pad\", steps: 2, input: [1, 5, 7], encoder: ConstantCurrent(), \
     layers: [Conv2d(name: \"conv1\", out_channels: 2, kernel_size: 3, padding: 4294967295), LIF()])";

#[test]
fn past_failures() {
    for text in PAST_FAILURES {
        assert_well_formed(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
}

#[test]
fn an_overflowing_padding_names_the_layer_and_the_field() {
    let net = parse_and_check(PADDING_OVERFLOW).expect("the values are in range one by one");
    let err = snnc_frontend::lower(&net, "fuzz.ron", &snnc_frontend::LowerOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "fuzz.ron: error: layers[0] `conv1` (Conv2d): padding: 4294967295 makes the padded input 8589934597 wide \
         (7 + 2 * 4294967295), more than 2^32 - 1\n  = help: use a padding of at most 2147483644"
    );
    // The largest padding that fits lowers (a stride as wide keeps the
    // output small).
    let net = parse_and_check(&PADDING_OVERFLOW.replace("4294967295", "2147483644, stride: 4294967295")).unwrap();
    let module = snnc_frontend::lower(&net, "fuzz.ron", &snnc_frontend::LowerOptions::default()).unwrap();
    snnc_ir::validate(&module).unwrap();
}

#[test]
fn known_tricky_inputs() {
    for text in [
        "",
        "(",
        ")",
        "\"",
        "/*",
        "//",
        "r#",
        "(version: 1",
        "(version: 2",
        "(version: 99999999999999999999)",
        "(version: NaN)",
        "(version: 1, version: 2)",
        "#![enable(implicit_some)]",
        "#![enable(nonsense)] ()",
        "(version: 1, name: \"\\u{110000}\")",
        "(version: 1, name: \"a\nb\", steps: 1.5)",
        "\r\n\r\n(version: 1,\r\n steps: 1.5)",
        "(version: 1, name: \"x\", steps: 1, input: [1], layers: [LIF(p: (method: super, alpha: NaN))])",
    ] {
        assert_well_formed(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
}
