//! The expressions of the neuron language: a lexer and a recursive-descent
//! parser for one assignment `name = expr` or one expression, keeping the
//! byte span of every part for messages.
//!
//! Grammar (Python's precedence; no operator is reassociated, so
//! `a + b + c` is `(a + b) + c`, as Python evaluates it):
//!
//! ```text
//! assignment := NAME '=' expr
//! expr       := sum (('<' | '<=' | '>' | '>=' | '==' | '!=') sum)?
//! sum        := product (('+' | '-') product)*
//! product    := unary (('*' | '/') unary)*
//! unary      := '-' unary | atom
//! atom       := NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'
//! ```

use std::fmt;

/// A byte range of the source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    fn to(self, other: Span) -> Span {
        Span { start: self.start, end: other.end }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// The height of the expression's tree (1 for a number or a name),
    /// bounded by [`MAX_DEPTH`] so that walking it cannot overflow a stack.
    pub depth: usize,
}

impl Expr {
    /// A node over its children, or an error where the tree would grow
    /// deeper than [`MAX_DEPTH`].
    fn new(kind: ExprKind, span: Span) -> Result<Expr, ExprError> {
        let children: usize = match &kind {
            ExprKind::Num(_) | ExprKind::Name(_) => 0,
            ExprKind::Neg(a) => a.depth,
            ExprKind::Bin(_, a, b) | ExprKind::Cmp(_, a, b) => a.depth.max(b.depth),
            ExprKind::Call { args, .. } => args.iter().map(|a| a.depth).max().unwrap_or(0),
        };
        if children >= MAX_DEPTH {
            return Err(ExprError::new(span, format!("the expression is more than {MAX_DEPTH} operations deep"))
                .with_help("split it into several assignments"));
        }
        Ok(Expr { kind, span, depth: children + 1 })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Num(f64),
    Name(String),
    Neg(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// A function call; the span of the function's name is `name_span`.
    Call {
        name: String,
        name_span: Span,
        args: Vec<Expr>,
    },
}

/// `target = value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub target: String,
    pub target_span: Span,
    pub value: Expr,
}

/// A mistake in an equation, at a place of its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    pub message: String,
    pub span: Span,
    pub help: Option<String>,
}

impl ExprError {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        ExprError { message: message.into(), span, help: None }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The message with the equation and a caret line under the place:
    ///
    /// ```text
    /// column 6: unknown name `vv`
    ///     v_ = vv + 1
    ///          ^^
    /// ```
    pub fn render(&self, text: &str) -> String {
        let start = self.span.start.min(text.len());
        let end = self.span.end.clamp(start, text.len());
        let col = text[..start].chars().count();
        let width = text[start..end].chars().count().max(1);
        let shown: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        format!("column {}: {}\n    {shown}\n    {}{}", col + 1, self.message, " ".repeat(col), "^".repeat(width))
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (bytes {}..{})", self.message, self.span.start, self.span.end)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Op(&'static str),
    End,
}

struct Lexer {
    toks: Vec<(Tok, Span)>,
}

const OPS: [&str; 14] = ["<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/", "(", ")", ",", "="];

fn lex(text: &str) -> Result<Lexer, ExprError> {
    let bytes = text.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                let mut j = i + 1;
                if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                    j += 1;
                }
                if j < bytes.len() && bytes[j].is_ascii_digit() {
                    i = j;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let span = Span { start, end: i };
            let value: f64 = text[start..i]
                .parse()
                .map_err(|_| ExprError::new(span, format!("`{}` is not a number", &text[start..i])))?;
            if !value.is_finite() {
                return Err(ExprError::new(span, format!("`{}` is too large for a number", &text[start..i])));
            }
            toks.push((Tok::Num(value), span));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            toks.push((Tok::Name(text[start..i].to_string()), Span { start, end: i }));
            continue;
        }
        if let Some(op) = OPS.iter().find(|op| text[i..].starts_with(**op)) {
            i += op.len();
            toks.push((Tok::Op(op), Span { start, end: i }));
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or('?');
        let span = Span { start, end: i + ch.len_utf8() };
        let help = match ch {
            '^' => "there is no power operator: write `v * v` for v squared",
            '*' if text[i..].starts_with("**") => "there is no power operator: write `v * v` for v squared",
            _ => "an equation holds numbers, names, + - * /, comparisons, parentheses and function calls",
        };
        return Err(ExprError::new(span, format!("unexpected character `{}`", ch.escape_debug())).with_help(help));
    }
    toks.push((Tok::End, Span { start: text.len(), end: text.len() }));
    Ok(Lexer { toks })
}

struct Parser {
    toks: Vec<(Tok, Span)>,
    pos: usize,
    /// How deeply the expression being parsed nests (parentheses, calls,
    /// unary minus), bounded by [`MAX_DEPTH`].
    depth: usize,
}

/// The deepest nesting an equation may have (the parser recurses once per
/// level).
const MAX_DEPTH: usize = 200;

/// Parses `target = expr`.
pub fn parse_assignment(text: &str) -> Result<Assignment, ExprError> {
    let mut p = Parser { toks: lex(text)?.toks, pos: 0, depth: 0 };
    let (target, target_span) = match p.peek().clone() {
        (Tok::Name(n), span) => {
            p.pos += 1;
            (n, span)
        }
        (_, span) => {
            return Err(ExprError::new(span, "expected the name of the value this assignment sets")
                .with_help("an assignment is `name = expression`, e.g. `v = v + dt * x`"));
        }
    };
    match p.peek() {
        (Tok::Op("="), _) => p.pos += 1,
        (_, span) => {
            return Err(ExprError::new(*span, format!("expected `=` after `{target}`"))
                .with_help("an assignment is `name = expression`, e.g. `v = v + dt * x`"));
        }
    }
    let value = p.expr()?;
    p.end()?;
    Ok(Assignment { target, target_span, value })
}

/// Parses one expression (the whole text).
pub fn parse_expr(text: &str) -> Result<Expr, ExprError> {
    let mut p = Parser { toks: lex(text)?.toks, pos: 0, depth: 0 };
    let e = p.expr()?;
    p.end()?;
    Ok(e)
}

impl Parser {
    fn peek(&self) -> &(Tok, Span) {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn end(&self) -> Result<(), ExprError> {
        match self.peek() {
            (Tok::End, _) => Ok(()),
            (Tok::Op("="), span) => {
                Err(ExprError::new(*span, "unexpected `=`").with_help("one assignment per string; `==` compares"))
            }
            (_, span) => Err(ExprError::new(*span, "unexpected text after the end of the expression")
                .with_help("put an operator between two values, e.g. `a * b`")),
        }
    }

    fn expr(&mut self) -> Result<Expr, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(self.peek().1, format!("the expression nests more than {MAX_DEPTH} deep"))
                .with_help("split it into several assignments"));
        }
        let e = self.comparison();
        self.depth -= 1;
        e
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        let lhs = self.sum()?;
        let op = match self.peek().0 {
            Tok::Op("<") => CmpOp::Lt,
            Tok::Op("<=") => CmpOp::Le,
            Tok::Op(">") => CmpOp::Gt,
            Tok::Op(">=") => CmpOp::Ge,
            Tok::Op("==") => CmpOp::Eq,
            Tok::Op("!=") => CmpOp::Ne,
            _ => return Ok(lhs),
        };
        let op_span = self.peek().1;
        self.pos += 1;
        let rhs = self.sum()?;
        if let Tok::Op("<" | "<=" | ">" | ">=" | "==" | "!=") = self.peek().0 {
            return Err(ExprError::new(self.peek().1, "comparisons cannot be chained")
                .with_help("write `a < b` once; combine conditions with `*` (and) of their 0/1 values"));
        }
        let _ = op_span;
        let span = lhs.span.to(rhs.span);
        Expr::new(ExprKind::Cmp(op, Box::new(lhs), Box::new(rhs)), span)
    }

    fn sum(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.product()?;
        loop {
            let op = match self.peek().0 {
                Tok::Op("+") => BinOp::Add,
                Tok::Op("-") => BinOp::Sub,
                _ => return Ok(lhs),
            };
            self.pos += 1;
            let rhs = self.product()?;
            let span = lhs.span.to(rhs.span);
            lhs = Expr::new(ExprKind::Bin(op, Box::new(lhs), Box::new(rhs)), span)?;
        }
    }

    fn product(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek().0 {
                Tok::Op("*") => BinOp::Mul,
                Tok::Op("/") => BinOp::Div,
                _ => return Ok(lhs),
            };
            self.pos += 1;
            if let Tok::Op("*") = self.peek().0 {
                return Err(ExprError::new(self.peek().1, "there is no power operator")
                    .with_help("write `v * v` for v squared"));
            }
            let rhs = self.unary()?;
            let span = lhs.span.to(rhs.span);
            lhs = Expr::new(ExprKind::Bin(op, Box::new(lhs), Box::new(rhs)), span)?;
        }
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if let (Tok::Op("-"), span) = self.peek().clone() {
            self.pos += 1;
            let arg = self.expr_depth(Self::unary)?;
            let span = span.to(arg.span);
            return Expr::new(ExprKind::Neg(Box::new(arg)), span);
        }
        self.atom()
    }

    /// `parse` one level deeper (see [`MAX_DEPTH`]).
    fn expr_depth(&mut self, parse: fn(&mut Self) -> Result<Expr, ExprError>) -> Result<Expr, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(self.peek().1, format!("the expression nests more than {MAX_DEPTH} deep"))
                .with_help("split it into several assignments"));
        }
        let e = parse(self);
        self.depth -= 1;
        e
    }

    fn atom(&mut self) -> Result<Expr, ExprError> {
        let (tok, span) = self.peek().clone();
        self.pos += 1;
        match tok {
            Tok::Num(x) => Expr::new(ExprKind::Num(x), span),
            Tok::Name(name) => {
                if !matches!(self.peek().0, Tok::Op("(")) {
                    return Expr::new(ExprKind::Name(name), span);
                }
                self.pos += 1;
                let mut args = vec![self.expr()?];
                loop {
                    match self.peek().clone() {
                        (Tok::Op(","), _) => {
                            self.pos += 1;
                            args.push(self.expr()?);
                        }
                        (Tok::Op(")"), close) => {
                            self.pos += 1;
                            let kind = ExprKind::Call { name, name_span: span, args };
                            return Expr::new(kind, span.to(close));
                        }
                        (_, at) => {
                            return Err(ExprError::new(at, format!("expected `,` or `)` in the call of `{name}`")));
                        }
                    }
                }
            }
            Tok::Op("(") => {
                let inner = self.expr()?;
                match self.peek().clone() {
                    (Tok::Op(")"), close) => {
                        self.pos += 1;
                        Ok(Expr { span: span.to(close), ..inner })
                    }
                    (_, at) => Err(ExprError::new(at, "expected `)`")
                        .with_help(format!("the `(` at byte {} is not closed", span.start))),
                }
            }
            Tok::End => Err(ExprError::new(span, "the expression ends too early: a value is missing")),
            Tok::Op(op) => Err(ExprError::new(span, format!("expected a value, found `{op}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Num(x) => format!("{x}"),
            ExprKind::Name(n) => n.clone(),
            ExprKind::Neg(a) => format!("(-{})", show(a)),
            ExprKind::Bin(op, a, b) => format!("({} {} {})", show(a), op.symbol(), show(b)),
            ExprKind::Cmp(op, a, b) => format!("({} {} {})", show(a), op.symbol(), show(b)),
            ExprKind::Call { name, args, .. } => {
                format!("{name}({})", args.iter().map(show).collect::<Vec<_>>().join(", "))
            }
        }
    }

    #[test]
    fn precedence_and_left_to_right_order_are_pythons() {
        let a = parse_assignment("v_ = v + k*((((sq*(v*v) + mn*v) + bias) - u) + x)").unwrap();
        assert_eq!(a.target, "v_");
        assert_eq!(show(&a.value), "(v + (k * (((((sq * (v * v)) + (mn * v)) + bias) - u) + x)))");
        assert_eq!(show(&parse_expr("a - b - c * d / e").unwrap()), "((a - b) - ((c * d) / e))");
        assert_eq!(show(&parse_expr("-dt*tau").unwrap()), "((-dt) * tau)");
        assert_eq!(show(&parse_expr("clamp(v, -1, 1e-3) >= 2.5e2").unwrap()), "(clamp(v, (-1), 0.001) >= 250)");
    }

    #[test]
    fn spans_point_at_the_parts() {
        let a = parse_assignment("u = u + d").unwrap();
        assert_eq!(a.target_span, Span { start: 0, end: 1 });
        assert_eq!(a.value.span, Span { start: 4, end: 9 });
    }

    #[test]
    fn mistakes_are_located() {
        let e = parse_assignment("v = v +").unwrap_err();
        assert_eq!(e.span, Span { start: 7, end: 7 });
        let e = parse_assignment("v = v ** 2").unwrap_err();
        assert!(e.help.as_deref().unwrap().contains("v * v"), "{e}");
        let e = parse_assignment("v = (v + 1").unwrap_err();
        assert_eq!(e.message, "expected `)`");
        let e = parse_assignment("v + 1").unwrap_err();
        assert_eq!(e.span, Span { start: 2, end: 3 });
        let e = parse_expr("a < b < c").unwrap_err();
        assert!(e.message.contains("chained"));
        let e = parse_expr("a $ b").unwrap_err();
        assert_eq!(e.span, Span { start: 2, end: 3 });
        assert_eq!(e.render("a $ b"), "column 3: unexpected character `$`\n    a $ b\n      ^");
        let e = parse_expr("1.2.3").unwrap_err();
        assert!(e.message.contains("not a number"));
        let e = parse_expr("1e999 * v").unwrap_err();
        assert!(e.message.contains("too large"), "{e}");
        // Deep nesting is an error, not a stack overflow.
        let deep = format!("{}v{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse_expr(&deep).unwrap_err().message.contains("nests more than"));
        let deep = format!("{}v", "-".repeat(100_000));
        assert!(parse_expr(&deep).unwrap_err().message.contains("nests more than"));
        let deep = format!("{}v{}", "exp(".repeat(100_000), ")".repeat(100_000));
        assert!(parse_expr(&deep).unwrap_err().message.contains("nests more than"));
        let long = vec!["v"; 100_000].join(" + ");
        assert!(parse_expr(&long).unwrap_err().message.contains("operations deep"));
        let nested = format!("{}v{}", "(v + ".repeat(150), ")".repeat(150));
        assert!(parse_expr(&nested).is_ok());
    }
}
