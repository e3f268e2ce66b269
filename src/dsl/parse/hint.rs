//! Targeted syntax errors. When pest rejects an item, its generic "expected …" message
//! rarely names the real mistake, so the item's text is scanned (outside strings and
//! comments) for the mistakes rule authors make most — `=` for `==`, `&&`, `||`, `!`,
//! keywords in the wrong case, single quotes, unclosed brackets and strings — and each
//! one found gets its own E001 with a precise span and a help line. This runs only on
//! text that already failed to parse, so it cannot reject a valid file.

use super::Diagnostic;
use crate::rules::ir::Span;

/// Keywords of expressions; the structural ones are suggested from pest's expectations.
const EXPR_KEYWORDS: [&str; 7] = ["and", "or", "not", "in", "true", "false", "null"];
const FACTORS: [&str; 5] = ["propensity", "relevance", "impact", "emphasis", "uplift"];
/// More diagnostics than this for one item would only repeat one mistake.
const MAX_HINTS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Number,
    Punct,
    /// A `"` string; `closed` is false when the line or the text ends first.
    Str {
        closed: bool,
    },
    /// A `'` string (or a lone `'`).
    Quoted {
        closed: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Token<'s> {
    kind: Kind,
    text: &'s str,
    start: usize,
}

impl Token<'_> {
    fn end(&self) -> usize {
        self.start + self.text.len()
    }

    fn is(&self, kind: Kind, text: &str) -> bool {
        self.kind == kind && self.text == text
    }
}

/// Diagnostics for the mistakes recognised in `item` (which starts at byte `offset` of
/// the file); empty when none is recognised. `failed_at` is where pest gave up.
pub(super) fn explain(item: &str, offset: usize, failed_at: usize) -> Vec<Diagnostic> {
    let tokens = tokens(item);
    let mut hints = token_hints(&tokens);
    let string_unclosed = tokens.iter().any(|t| t.kind == Kind::Str { closed: false });
    // An unclosed string swallows the rest of its line, brackets included.
    if !string_unclosed {
        hints.extend(bracket_hints(&tokens, failed_at));
    }
    hints.sort_by_key(|h| h.span.0);
    hints.truncate(MAX_HINTS);
    hints.into_iter().map(|h| h.at(offset)).collect()
}

/// A diagnostic with a span relative to the item.
struct Hint {
    span: (usize, usize),
    message: String,
    help: String,
}

impl Hint {
    fn new(t: &Token, message: impl Into<String>, help: impl Into<String>) -> Hint {
        Hint { span: (t.start, t.end()), message: message.into(), help: help.into() }
    }

    fn at(self, offset: usize) -> Diagnostic {
        let span = Span::new(offset + self.span.0, offset + self.span.1);
        Diagnostic::error("E001", span, self.message).with_help(Some(self.help))
    }
}

/// `True` → `true`: an expression keyword written in another case.
pub(super) fn wrong_case(word: &str) -> Option<&'static str> {
    EXPR_KEYWORDS.into_iter().find(|k| *k != word && k.eq_ignore_ascii_case(word))
}

pub(super) fn wrong_case_message(word: &str, keyword: &str) -> (String, String) {
    (format!("`{word}` is not a keyword; did you mean `{keyword}`?"), "keywords are written in lower case".into())
}

fn token_hints(tokens: &[Token]) -> Vec<Hint> {
    let mut hints = Vec::new();
    let mut brace_depth = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        let hint = match t.kind {
            Kind::Punct => {
                brace_depth = match t.text {
                    "{" => brace_depth + 1,
                    "}" => brace_depth.saturating_sub(1),
                    _ => brace_depth,
                };
                operator_hint(tokens, i, brace_depth)
            }
            Kind::Word => word_hint(tokens, i),
            Kind::Quoted { closed } => Some(quote_hint(t, closed)),
            Kind::Str { closed: false } => Some(Hint::new(
                &Token { text: "\"", ..*t },
                "this string is never closed",
                "end it with `\"` on the same line",
            )),
            Kind::Str { closed: true } | Kind::Number => None,
        };
        hints.extend(hint);
    }
    hints
}

fn operator_hint(tokens: &[Token], i: usize, brace_depth: usize) -> Option<Hint> {
    let t = &tokens[i];
    let instead = |word: &str| {
        let message = format!("`{}` is not an operator here; did you mean `{word}`?", t.text);
        Hint::new(t, message, "logic is written with the words `and`, `or` and `not`")
    };
    match t.text {
        "=" => equals_hint(tokens, i, brace_depth),
        "=>" | "=<" => {
            let flipped: String = t.text.chars().rev().collect();
            let message = format!("`{}` is not an operator; did you mean `{flipped}`?", t.text);
            Some(Hint::new(t, message, "comparisons are `== != < <= > >=`"))
        }
        "&&" | "&" => Some(instead("and")),
        "||" | "|" => Some(instead("or")),
        "!" => Some(instead("not")),
        _ => None,
    }
}

/// A lone `=`: fine in `let <name> =`, a comparison typo in an expression, and simply
/// not needed after an option (`priority 5`) or a weight (`propensity 0.5`).
fn equals_hint(tokens: &[Token], i: usize, brace_depth: usize) -> Option<Hint> {
    let t = &tokens[i];
    let before = |n: usize| i.checked_sub(n).map(|j| &tokens[j]);
    if before(2).is_some_and(|k| k.is(Kind::Word, "let")) && before(1).is_some_and(|n| n.kind == Kind::Word) {
        return None;
    }
    let prev = before(1).filter(|p| p.kind == Kind::Word).map(|p| p.text);
    let in_weights = brace_depth > 0 && last_body_keyword(&tokens[..i]) == Some("weights");
    match prev {
        Some(option @ ("priority" | "multiplier")) if brace_depth == 0 => {
            let message = format!("`{option}` takes its value without `=`");
            Some(Hint::new(t, message, format!("write `{option} <number>`")))
        }
        Some(factor) if in_weights && FACTORS.contains(&factor) => Some(Hint::new(
            t,
            "a weight takes its value without `=`",
            format!("write `{factor} <number>`, weights separated by commas"),
        )),
        _ => Some(Hint::new(
            t,
            "`=` is not a comparison; did you mean `==`?",
            "compare with `==`; a single `=` only names an expression in `let <name> = ...`",
        )),
    }
}

/// The last `weights` or `formula` before a position.
fn last_body_keyword<'s>(tokens: &[Token<'s>]) -> Option<&'s str> {
    tokens.iter().rev().find(|t| t.kind == Kind::Word && matches!(t.text, "weights" | "formula")).map(|t| t.text)
}

fn word_hint(tokens: &[Token], i: usize) -> Option<Hint> {
    let t = &tokens[i];
    let dot = |j: Option<usize>| j.and_then(|j| tokens.get(j)).is_some_and(|d| d.is(Kind::Punct, "."));
    // A path segment such as `customer.In` is a field name, not a keyword.
    if dot(i.checked_sub(1)) || dot(Some(i + 1)) {
        return None;
    }
    let keyword = wrong_case(t.text)?;
    let (message, help) = wrong_case_message(t.text, keyword);
    Some(Hint::new(t, message, help))
}

fn quote_hint(t: &Token, closed: bool) -> Hint {
    let help = if closed {
        format!("write \"{}\"", &t.text[1..t.text.len() - 1])
    } else {
        "write strings between `\"` and `\"`".to_string()
    };
    Hint::new(t, "strings use double quotes, not `'`", help)
}

/// Unclosed `{ ( [`, and closers without an opener. Counts per kind of bracket keep
/// it linear: a closer with no opener of its kind never searches the stack.
fn bracket_hints(tokens: &[Token], failed_at: usize) -> Vec<Hint> {
    let mut hints = Vec::new();
    let mut open: Vec<(&Token, usize)> = Vec::new();
    let mut counts = [0usize; 3];
    for (i, t) in tokens.iter().enumerate().filter(|(_, t)| t.kind == Kind::Punct) {
        if hints.len() >= MAX_HINTS {
            break;
        }
        match bracket(t.text) {
            Some((kind, true)) => {
                counts[kind] += 1;
                open.push((t, kind));
            }
            Some((kind, false)) if counts[kind] == 0 => hints.push(unmatched(tokens, i, failed_at)),
            Some((kind, false)) => {
                let at = open.iter().rposition(|&(_, k)| k == kind).expect("an opener was counted");
                // Openers above the matching one were never closed.
                for (o, k) in open.drain(at..).skip(1) {
                    counts[k] -= 1;
                    hints.push(never_closed(o));
                }
                counts[kind] -= 1;
            }
            None => {}
        }
    }
    hints.extend(open.into_iter().take(MAX_HINTS).map(|(o, _)| never_closed(o)));
    hints
}

/// Which bracket (0 `{}`, 1 `()`, 2 `[]`) and whether it opens.
fn bracket(text: &str) -> Option<(usize, bool)> {
    match text {
        "{" => Some((0, true)),
        "(" => Some((1, true)),
        "[" => Some((2, true)),
        "}" => Some((0, false)),
        ")" => Some((1, false)),
        "]" => Some((2, false)),
        _ => None,
    }
}

fn opener_of(closer: &str) -> &'static str {
    match closer {
        "}" => "{",
        ")" => "(",
        _ => "[",
    }
}

fn never_closed(t: &Token) -> Hint {
    let help = match t.text {
        "{" => "add `}` at the end of the body",
        "(" => "add `)` to close it",
        _ => "add `]` at the end of the list",
    };
    Hint::new(t, format!("this `{}` is never closed", t.text), help)
}

/// A closer with no opener. For a `}` with no `{` since the place pest gave up, the `{`
/// was most likely left out there (`rule "x" customer.a > 1 }`).
fn unmatched(tokens: &[Token], i: usize, failed_at: usize) -> Hint {
    let t = &tokens[i];
    let opener = opener_of(t.text);
    let gap = tokens[..i].iter().filter(|k| k.start >= failed_at);
    if t.text == "}" && failed_at < t.start && !gap.clone().any(|k| k.is(Kind::Punct, "{")) {
        if let Some(at) = tokens[..i].iter().find(|k| k.start >= failed_at) {
            let message = "expected `{` before the body; the `}` after it closes nothing";
            return Hint::new(at, message, "a body goes between `{` and `}`: rule \"name\" { <condition> }");
        }
    }
    let message = format!("this `{}` has no matching `{opener}`", t.text);
    Hint::new(t, message, format!("remove it, or add `{opener}` where the group starts"))
}

/// Words, numbers, strings and punctuation of an item; comments and whitespace dropped.
fn tokens(src: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(c) = src[at..].chars().next() {
        let rest = &src[at..];
        let len = match c {
            _ if c.is_whitespace() => c.len_utf8(),
            '#' => line_len(rest),
            '/' if rest.starts_with("//") => line_len(rest),
            '"' => {
                let (len, closed) = string_len(rest);
                out.push(Token { kind: Kind::Str { closed }, text: &rest[..len], start: at });
                len
            }
            _ => {
                let (kind, len) = token_at(rest, c);
                out.push(Token { kind, text: &rest[..len], start: at });
                len
            }
        };
        at += len;
    }
    out
}

fn token_at(rest: &str, c: char) -> (Kind, usize) {
    let word = |s: &str| s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    match c {
        'a'..='z' | 'A'..='Z' | '_' => (Kind::Word, word(rest)),
        '0'..='9' => (Kind::Number, word(rest)),
        '\'' => match rest[1..].find(['\'', '\n']) {
            Some(n) if rest.as_bytes()[n + 1] == b'\'' => (Kind::Quoted { closed: true }, n + 2),
            _ => (Kind::Quoted { closed: false }, 1),
        },
        _ => {
            let pairs = ["==", "!=", "<=", ">=", "&&", "||", "??", "=>", "=<"];
            let len = if pairs.iter().any(|p| rest.starts_with(p)) { 2 } else { c.len_utf8() };
            (Kind::Punct, len)
        }
    }
}

fn line_len(rest: &str) -> usize {
    rest.find('\n').unwrap_or(rest.len())
}

/// Length of the `"` string at the start of `rest`, and whether it is closed. Strings
/// cannot span lines, as in the grammar.
fn string_len(rest: &str) -> (usize, bool) {
    let mut chars = rest.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => return (i + 1, true),
            '\n' => return (i, false),
            _ => {}
        }
    }
    (rest.len(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<&str> {
        tokens(src).iter().map(|t| t.text).collect()
    }

    #[test]
    fn tokens_skip_comments_and_keep_strings_whole() {
        assert_eq!(texts("a==b // x = y\n'c d' \"e = f\" # g"), ["a", "==", "b", "'c d'", "\"e = f\""]);
        assert_eq!(texts("x != 1 && !y"), ["x", "!=", "1", "&&", "!", "y"]);
        assert_eq!(texts("\"é\\\"\" 'é"), ["\"é\\\"\"", "'", "é"]);
    }

    #[test]
    fn let_equals_is_not_a_mistake() {
        assert!(explain("let a = customer.x > 1 let b = a", 0, 0).is_empty());
        assert_eq!(explain("let a = customer.x = 1", 0, 0).len(), 1);
    }

    #[test]
    fn a_string_cut_at_the_line_end_hides_bracket_hints() {
        let hints = explain("rule \"r\" { customer.tier == \"gold }\n", 0, 0);
        assert_eq!(hints.len(), 1, "{hints:?}");
        assert_eq!(hints[0].message, "this string is never closed");
    }

    #[test]
    fn brackets_match_by_kind() {
        let messages = |src| explain(src, 0, 0).into_iter().map(|d| d.message).collect::<Vec<_>>();
        assert_eq!(messages("rule \"r\" { (a [b] }"), ["this `(` is never closed"]);
        assert_eq!(messages("rule \"r\" { a) }"), ["this `)` has no matching `(`"]);
        assert!(messages("rule \"r\" { (a [b]) }").is_empty());
    }

    #[test]
    fn many_brackets_stay_linear() {
        let src = format!("rule \"r\" {}{}", "{".repeat(200_000), ")".repeat(200_000));
        let started = std::time::Instant::now();
        assert_eq!(explain(&src, 0, 0).len(), MAX_HINTS);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
