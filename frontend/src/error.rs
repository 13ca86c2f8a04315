//! The frontend's error type and how it renders.
//!
//! Errors are for people: a syntax error names `file:line:col`, shows the
//! offending line with a caret under the place, and says what was expected;
//! a semantic error lists every problem with its place in the description
//! (`` layers[1] `lif1` (LIF): p.tau_mem_inv ``) and the valid range.
//!
//! Rendered examples:
//!
//! ```text
//! net.ron:5:9: error: unknown layer kind `Lenear`
//!   |
//! 5 |         Lenear(out: 10),
//!   |         ^^^^^^
//!   = help: did you mean `Linear`? The layer kinds are `Linear`, `Conv2d`, ...
//! ```
//!
//! ```text
//! net.ron: error: dt: must be greater than 0, found 0
//!   = help: dt is the time step in seconds; Norse's default is 0.001
//! net.ron: error: layers[1] `lif1` (LIFRecurrent): p.tau_mem_inv: must be greater than 0, found -1
//!   = help: an inverse time constant in 1/s (1/tau); Norse's default is 100
//! ```

use std::fmt;

use crate::schema::Layer;

/// Everything that can go wrong between a description and a checked
/// [`Network`](crate::Network).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrontendError {
    /// The text is not valid RON or does not fit the schema.
    Syntax {
        /// The file name as given by the caller (used only for messages).
        file: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error, counted in characters.
        col: usize,
        /// The width of the caret underline in characters (at least 1).
        len: usize,
        /// What is wrong, in one line.
        message: String,
        /// The source line that holds the error (without its newline).
        snippet: String,
        /// How to fix it, if we know.
        help: Option<String>,
    },
    /// The description parsed but is wrong: bad parameters, shapes that
    /// don't fit. One entry per problem.
    Invalid {
        /// The file name as given by the caller (used only for messages).
        file: String,
        /// Every problem found, in the order of the description.
        problems: Vec<Problem>,
    },
    /// The file could not be read.
    Io {
        /// The path as given.
        file: String,
        /// The operating system's message.
        message: String,
    },
}

/// One thing wrong with a parsed description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, as a path into the description, e.g.
    /// ``layers[1] `lif1` (LIF): p.tau_mem_inv``, `dt` or `input[0]`.
    /// [`layer_at`] builds the layer part.
    pub at: String,
    /// What is wrong, ideally with the valid range and the value found.
    pub message: String,
    /// How to fix it, if we know.
    pub help: Option<String>,
}

impl Problem {
    /// A problem without help.
    pub fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { at: at.into(), message: message.into(), help: None }
    }

    /// The same problem with a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.at, self.message)?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

/// The place of layer `index` in a description, as used in
/// [`Problem::at`]: ``layers[1] `lif1` (LIF)``. Append `: field` for a field.
pub fn layer_at(index: usize, layer: &Layer) -> String {
    format!("layers[{index}] `{}` ({})", shown_name(&layer.name(index)), layer.kind())
}

/// Names longer than this many characters are shortened in messages.
const MAX_SHOWN_NAME: usize = 40;

/// A name as a message shows it: control characters escaped (`\n`, `\0`),
/// so a message stays on its line, and a long name cut to its first
/// characters and `...`.
pub fn shown_name(name: &str) -> String {
    let escaped: String = name.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() <= MAX_SHOWN_NAME {
        escaped
    } else {
        escaped.chars().take(MAX_SHOWN_NAME - 3).chain("...".chars()).collect()
    }
}

impl FrontendError {
    /// The file name the error refers to.
    pub fn file(&self) -> &str {
        match self {
            FrontendError::Syntax { file, .. }
            | FrontendError::Invalid { file, .. }
            | FrontendError::Io { file, .. } => file,
        }
    }

    /// A syntax error at a 1-based line and column of `text`; the snippet is
    /// taken from `text`.
    pub(crate) fn syntax_at(
        text: &str,
        file: &str,
        line: usize,
        col: usize,
        len: usize,
        message: String,
        help: Option<String>,
    ) -> Self {
        let snippet = text.lines().nth(line.saturating_sub(1)).unwrap_or("").trim_end_matches('\r').to_string();
        FrontendError::Syntax {
            file: file.to_string(),
            line: line.max(1),
            col: col.max(1),
            len: len.max(1),
            message,
            snippet,
            help,
        }
    }
}

/// Lines longer than this are shown as a window around the error.
const MAX_SNIPPET: usize = 100;

/// The part of `line` to show and where the caret goes in it: the whole
/// line if it is short, else `MAX_SNIPPET` characters around `caret` with
/// `...` where the line was cut.
fn window(line: &str, caret: usize) -> (String, usize) {
    let n = line.chars().count();
    if n <= MAX_SNIPPET {
        return (line.to_string(), caret);
    }
    let start = caret.saturating_sub(MAX_SNIPPET / 2).min(n - MAX_SNIPPET);
    let mut shown: String = line.chars().skip(start).take(MAX_SNIPPET).collect();
    let mut caret_at = caret - start.min(caret);
    if start > 0 {
        shown.insert_str(0, "...");
        caret_at += 3;
    }
    if start + MAX_SNIPPET < n {
        shown.push_str("...");
    }
    (shown, caret_at)
}

impl fmt::Display for FrontendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontendError::Syntax { file, line, col, len, message, snippet, help } => {
                writeln!(f, "{file}:{line}:{col}: error: {message}")?;
                let gutter = " ".repeat(line.to_string().len());
                let (shown, caret_at) = window(snippet, col.saturating_sub(1));
                let len = (*len).min(shown.chars().count().saturating_sub(caret_at)).max(1);
                writeln!(f, "{gutter} |")?;
                if shown.is_empty() {
                    writeln!(f, "{line} |")?;
                } else {
                    writeln!(f, "{line} | {shown}")?;
                }
                // Copy tabs from the source line so the caret stays aligned.
                let pad: String = shown
                    .chars()
                    .chain(std::iter::repeat(' '))
                    .take(caret_at)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                write!(f, "{gutter} | {pad}{}", "^".repeat(len))?;
                if let Some(help) = help {
                    write!(f, "\n{gutter} = help: {help}")?;
                }
                Ok(())
            }
            FrontendError::Invalid { file, problems } => {
                if problems.is_empty() {
                    return write!(f, "{file}: error: invalid network description");
                }
                for (i, problem) in problems.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{file}: error: {problem}")?;
                }
                Ok(())
            }
            FrontendError::Io { file, message } => {
                write!(f, "{file}: error: cannot read the network description: {message}")
            }
        }
    }
}
