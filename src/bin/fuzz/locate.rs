//! Does an exit-2 message locate its problem? The CLI's contract is that a
//! message about the user's input names the place: the file and line, the
//! layer, the field, the tensor, the flag, or the byte offset.

/// What a command was given, to match a message's names against.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// The file arguments, as given on the command line.
    pub files: Vec<String>,
    /// The layer names of the network (as far as they could be read).
    pub layers: Vec<String>,
    /// Every argument of the command line.
    pub args: Vec<String>,
    /// The tensor names in the JSON files given.
    pub tensors: Vec<String>,
    /// The message must name a place inside the file (a node, a field):
    /// the file's name with a whole-file word does not do (structural NIR
    /// mutants, which are well-formed HDF5).
    pub inside_only: bool,
}

/// The schema's field names (`frontend/src/schema.rs`).
pub const FIELDS: &[&str] = &[
    "adaptation_current",
    "adaptation_spike",
    "alpha",
    "autapses",
    "beta",
    "bias",
    "count_include_pad",
    "dilation",
    "dt",
    "encoder",
    "example_input",
    "f_max",
    "factor",
    "groups",
    "hidden",
    "in_channels",
    "input",
    "input_density",
    "inputs",
    "kernel_size",
    "layers",
    "merge",
    "method",
    "name",
    "norm_type",
    "out",
    "out_channels",
    "p",
    "padding",
    "readout",
    "recurrent_inputs",
    "reset_method",
    "seed",
    "steps",
    "stride",
    "tau_ada_inv",
    "tau_adapt_inv",
    "tau_mem_inv",
    "tau_syn_inv",
    "v_leak",
    "v_reset",
    "v_th",
    "version",
];

/// The keys of a NIR file's nodes and graph (NIR's own names).
const NIR_FIELDS: &[&str] = &[
    "type",
    "edges",
    "nodes",
    "weight",
    "bias",
    "tau",
    "tau_mem",
    "tau_syn",
    "r",
    "v_leak",
    "v_threshold",
    "v_reset",
    "w_in",
    "shape",
    "input_type",
    "output_type",
    "stride",
    "padding",
    "dilation",
    "groups",
    "kernel_size",
    "start_dim",
    "end_dim",
    "delay",
    "metadata",
];

/// Words that make a message about a whole file: reading, writing or
/// decoding it, its name, or what its top level must be (for the binary
/// formats, which have no lines: its format, its header, its dtype or a zip
/// member). A file name locates such a message on its own; any other
/// message about a file must name a place inside it.
const WHOLE_FILE: &[&str] = &[
    "not a valid",
    "not an .npz",
    "not a numpy",
    "header",
    "dtype",
    "member",
    "compressed data",
    "malformed hdf5",
    "not a nir file",
    "the graph",
    "node",
    "cannot read",
    "cannot write",
    "cannot create",
    "cannot open",
    "no such file",
    "permission denied",
    "utf-8",
    "is a directory",
    "not a directory",
    "is empty",
    "file name",
    "too large",
    "already exists",
    "extension",
    "name the file",
    "does not exist",
    "is a folder",
    "not a folder",
    "no rows",
    "top level",
    "named tensors",
    // A property of the whole network, not of one place in it.
    "no trainable parameter",
];

/// Which kind of place `msg` names, or `None` when it names none. The
/// kinds, tried in this order: `line` (`:L:C`, `FILE:L` of a file given,
/// `line N`, `column N`, a CSV column `` column `X` `` or `` `X` column ``),
/// `byte` (`byte N`, `offset N`), `flag` (`--name`), `layer` (a layer name
/// of the network in backticks or quotes, or `layers[N]`), `field` (a schema
/// field followed by `:` or `[`, or in backticks, or `field `X``), `tensor` (a
/// tensor name of the JSON files given, or a dotted name such as
/// `fc.weight`, in backticks or quotes), `argument` (an argument of the
/// command line in quotes or backticks, as clap names a bad one), `file` (a
/// file or other argument given, as a whole word, when the message is about
/// the whole file: see
/// [`WHOLE_FILE`]). A file name alone does not locate a problem inside the
/// file, and a bare word does not count: names must be quoted.
pub fn locate(msg: &str, cx: &Context) -> Option<&'static str> {
    let line_of_file = cx.files.iter().chain(&cx.args).any(|f| {
        !f.is_empty()
            && msg
                .match_indices(&format!("{f}:"))
                .any(|(i, _)| msg[i + f.len() + 1..].starts_with(|c: char| c.is_ascii_digit()))
    });
    if has_line_col(msg)
        || line_of_file
        || number_after(msg, &["line ", "column "])
        || msg.contains("column `")
        || msg.contains("` column")
    {
        return Some("line");
    }
    if number_after(msg, &["byte ", "offset "]) {
        return Some("byte");
    }
    if has_flag(msg) {
        return Some("flag");
    }
    let quoted = quoted_words(msg);
    if quoted.iter().any(|q| cx.layers.iter().any(|l| l == q)) || msg.contains("layers[") || msg.contains("encoder (") {
        return Some("layer");
    }
    if quoted.iter().any(|q| FIELDS.contains(&q.as_str()) || NIR_FIELDS.contains(&q.as_str()))
        || FIELDS.iter().any(|f| has_word_then(msg, f, ':') || has_word_then(msg, f, '['))
        || msg.contains("field `")
    {
        return Some("field");
    }
    if quoted.iter().any(|q| cx.tensors.iter().any(|t| t == q) || is_dotted(q)) {
        return Some("tensor");
    }
    if quoted.iter().any(|q| !q.is_empty() && cx.args.iter().any(|a| a == q)) {
        return Some("argument");
    }
    let lower = msg.to_lowercase();
    let tokens: Vec<&str> = msg.split_whitespace().map(|t| t.trim_matches(|c| "'\"`:,;()".contains(c))).collect();
    let named = |f: &String| !f.is_empty() && tokens.contains(&f.as_str());
    if !cx.inside_only
        && (cx.files.iter().any(named) || cx.args.iter().any(named))
        && WHOLE_FILE.iter().any(|w| lower.contains(w))
    {
        return Some("file");
    }
    None
}

/// `:L:C` with digits, as in `net.ron:3:7`.
fn has_line_col(msg: &str) -> bool {
    let b = msg.as_bytes();
    (0..b.len()).any(|i| {
        if b[i] != b':' {
            return false;
        }
        let d1 = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if d1 == 0 || b.get(i + 1 + d1) != Some(&b':') {
            return false;
        }
        b.get(i + 2 + d1).is_some_and(u8::is_ascii_digit)
    })
}

/// One of `prefixes` followed by a digit.
fn number_after(msg: &str, prefixes: &[&str]) -> bool {
    let lower = msg.to_lowercase();
    prefixes
        .iter()
        .any(|p| lower.match_indices(p).any(|(i, _)| lower[i + p.len()..].starts_with(|c: char| c.is_ascii_digit())))
}

/// A long flag: `--` then a lowercase letter, not preceded by a word
/// character or `-`.
fn has_flag(msg: &str) -> bool {
    msg.match_indices("--").any(|(i, _)| {
        let before_ok = msg[..i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_'));
        before_ok && msg[i + 2..].starts_with(|c: char| c.is_ascii_lowercase())
    })
}

/// `word` as a whole word directly followed by `then`.
fn has_word_then(msg: &str, word: &str, then: char) -> bool {
    msg.match_indices(word).any(|(i, _)| {
        let before_ok = msg[..i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        before_ok && msg[i + word.len()..].starts_with(then)
    })
}

/// The texts between backticks, single or double quotes.
fn quoted_words(msg: &str) -> Vec<String> {
    let mut out = Vec::new();
    for q in ['`', '\'', '"'] {
        let parts: Vec<&str> = msg.split(q).collect();
        out.extend(parts.iter().skip(1).step_by(2).take(parts.len() / 2).map(|s| s.to_string()));
    }
    out
}

/// A dotted name such as `fc.weight` or `lif.v`: identifier characters
/// with one or more inner dots.
fn is_dotted(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 2
        && !parts[0].starts_with(|c: char| c.is_ascii_digit())
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context {
        Context {
            files: vec!["net.ron".into(), "w.json".into(), "model.nir".into(), "in.npz".into()],
            layers: vec!["conv".into(), "fc".into()],
            args: vec!["run".into(), "missing.json".into(), "--batch".into(), "abc".into(), "frob".into()],
            tensors: vec!["x".into(), "extra7".into()],
            inside_only: false,
        }
    }

    #[test]
    fn real_messages_locate() {
        let cases = [
            ("b.ron:9:5: error: unknown layer kind `Lineer`", "line"),
            ("w.json: error: expected value at line 1 column 7", "line"),
            ("error: invalid value 'abc' for '--batch <BATCH>': invalid digit found in string", "flag"),
            ("net.ron: error: layers[0] `conv` (Conv2d): kernel_size: must be 1 or more, found 0", "layer"),
            ("net.ron: error: layer `fc` is too wide", "layer"),
            ("net.ron: error: steps: must be 1 or more", "field"),
            ("w.json: error: tensor `fc.weight` has shape [3] but the network needs [3, 18]", "tensor"),
            ("input.json: error: `x` holds 5 values", "tensor"),
            ("error: unrecognized subcommand 'frob'", "argument"),
            ("net.ron: error: cannot read the network description: stream did not contain valid UTF-8", "file"),
            ("w.json: error: invalid data at byte 1234", "byte"),
            ("error: w.json:3: 2 values, but the header has 3 columns", "line"),
            ("error: w.json: no `batch` column; the header is `a,b`", "line"),
            ("net.ron: error: encoder (SpikeLatency): p.v_th: must be a finite number, found inf", "layer"),
            ("error: model.nir: malformed HDF5: HDF5 format error: invalid local heap signature", "file"),
            ("error: model.nir: `type`: missing: every NIR node has a string `type`", "field"),
            ("error: in.npz (array 'z'): bad compressed data: Invalid checksum", "file"),
            ("error: missing.json: the folder out does not exist; create it first", "file"),
            ("error: w.json: weights file: weight `extra7`: not a tensor", "tensor"),
            ("error: w.json: expected a tensor {...} or an object of named tensors", "file"),
            ("net.ron: error: input[0]: must be 1 or more, found 0", "field"),
            ("missing.json: error: cannot read the network description: No such file", "file"),
            ("error: frob: a figure is written as SVG or PNG; name the file `.svg` or `.png`", "file"),
            ("error: net.ron: network `a\\0b`: no trainable parameter reaches the loss; training needs", "file"),
        ];
        for (msg, kind) in cases {
            assert_eq!(locate(msg, &cx()), Some(kind), "{msg}");
        }
    }

    #[test]
    fn vague_messages_do_not_locate() {
        for msg in [
            "",
            "error: something went wrong",
            "net.ron: error: the network is invalid",
            "w.json: error: the shapes do not match",
            "error: out of range",
            "error: expected 3 values, found 4",
            "error: the input must not be empty", // `input` unquoted and not followed by `:`
            "error: net.ronx: cannot read it",    // not a file given
            "error: net.ron: 3 values",           // no line number after the file
            "net.ron: error: fc is wrong",        // a bare layer name does not count
            "error: a--b",
            "error: `zzz` is unknown",
        ] {
            assert_eq!(locate(msg, &cx()), None, "{msg}");
        }
    }

    #[test]
    fn helpers() {
        assert!(has_line_col("a:1:2"));
        assert!(!has_line_col("a:1:"));
        assert!(!has_line_col("12:30 ok"));
        assert!(is_dotted("fc.weight") && is_dotted("$lif.v") && !is_dotted("1.") && !is_dotted("fc"));
        assert!(!is_dotted("0.5"));
        assert!(has_flag("use --target interp") && !has_flag("x--y") && !has_flag("-- "));
    }
}
