//! Diagnostics of the rule language: a stable code, a message, a byte span, and an
//! optional help line. Line and column are computed only when rendering, with
//! codespan-reporting for people and as JSON for editors and CI.

use codespan_reporting::diagnostic::{Diagnostic as Report, Label, Severity as ReportSeverity};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor::NoColor};
use serde::Serialize;

use crate::rules::ir::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Error, code, message: message.into(), span, help: None }
    }

    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, code, message: message.into(), span, help: None }
    }

    pub fn with_help(mut self, help: Option<String>) -> Diagnostic {
        self.help = help;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A diagnostic located in a file, as `--format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// Start offsets of every line, so many locations in one file cost a binary search each
/// instead of a scan from the top.
pub struct LineIndex<'s> {
    source: &'s str,
    starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub fn new(source: &'s str) -> LineIndex<'s> {
        let starts = std::iter::once(0).chain(source.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { source, starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.source, offset.min(self.source.len()));
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        (line, self.source[start..offset].chars().count() + 1)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub fn locate(file: &str, source: &str, d: &Diagnostic) -> Located {
    let (line, column) = line_col(source, d.span.start as usize);
    let (end_line, end_column) = line_col(source, d.span.end as usize);
    Located {
        file: file.to_string(),
        line,
        column,
        end_line,
        end_column,
        severity: d.severity,
        code: d.code,
        message: d.message.clone(),
        help: d.help.clone(),
    }
}

/// Renders diagnostics as rustc-style text with a caret excerpt.
pub fn render(file: &str, source: &str, diags: &[Diagnostic]) -> String {
    let files = SimpleFile::new(file, source);
    let config = term::Config::default();
    let mut out = NoColor::new(Vec::new());
    for d in diags {
        let severity = if d.is_error() { ReportSeverity::Error } else { ReportSeverity::Warning };
        let start = floor_char_boundary(source, (d.span.start as usize).min(source.len()));
        let end = floor_char_boundary(source, (d.span.end as usize).clamp(start, source.len()));
        let mut report = Report::new(severity)
            .with_code(d.code)
            .with_message(&d.message)
            .with_labels(vec![Label::primary((), start..end)]);
        if let Some(help) = &d.help {
            report = report.with_notes(vec![format!("help: {help}")]);
        }
        // Writing to a Vec cannot fail; a failure would only lose this one report.
        let _ = term::emit(&mut out, &config, &files, &report);
    }
    String::from_utf8_lossy(&out.into_inner()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_in_characters() {
        let src = "ab\ncé d";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 3), (2, 1));
        assert_eq!(line_col(src, 6), (2, 3));
    }

    #[test]
    fn line_index_agrees_with_line_col() {
        let src = "ab\ncé d\n\nxyz";
        let index = LineIndex::new(src);
        for offset in 0..=src.len() {
            assert_eq!(index.line_col(offset), line_col(src, offset), "offset {offset}");
        }
    }

    #[test]
    fn render_shows_code_location_and_caret() {
        let src = "rule \"x\" {\n  customer.tenure >= 6\n}\n";
        let d = Diagnostic::error("E201", Span::new(13, 28), "unknown attribute `customer.tenure`")
            .with_help(Some("did you mean `customer.tenureMonths`?".into()));
        let text = render("a.rules", src, &[d]);
        assert!(text.contains("error[E201]: unknown attribute `customer.tenure`"), "{text}");
        assert!(text.contains("a.rules:2:3"), "{text}");
        assert!(text.contains("^^^^^^^^^^^^^^^"), "{text}");
        assert!(text.contains("help: did you mean"), "{text}");
    }
}
