//! The markup the project writes, one home for each part: escaping text for HTML (and SVG)
//! content and attribute values, Markdown table cells and Markdown code spans; and the tables
//! themselves, Markdown ([`markdown_table`]) and HTML ([`html_table`]). The report, the
//! experiment tables and the ablation tables all escape and lay out their tables through these.

use std::fmt::Write;

/// Escapes text for HTML and SVG content and attribute values.
pub fn html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Escapes text for a Markdown table cell: no pipes, no line breaks, no inline markup or HTML.
pub fn markdown_cell(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '|' | '\\' | '*' | '_' | '`' | '[' | ']' | '#' => {
                escaped.push('\\');
                escaped.push(character);
            }
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '\n' | '\r' => escaped.push(' '),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Text as a Markdown code span inside a table cell: backticks become `'` (a span cannot hold
/// them) and pipes are escaped.
pub fn markdown_code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'").replace('|', "\\|"))
}

/// How a Markdown column's cells sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A Markdown table: `| a | b |`, the rule (`|---|---:|`), one line a row. Header and cells are
/// markup already: escape text with [`markdown_cell`] (or [`markdown_code`]) first.
pub fn markdown_table<S: AsRef<str>>(header: &[(&str, Align)], rows: impl IntoIterator<Item = Vec<S>>) -> String {
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::from("|");
        for cell in cells {
            let _ = write!(line, " {cell} |");
        }
        line + "\n"
    };
    let mut table = line(&mut header.iter().map(|(title, _)| *title));
    table.push('|');
    for (_, align) in header {
        table.push_str(match align {
            Align::Left => "---|",
            Align::Right => "---:|",
        });
    }
    table.push('\n');
    for row in rows {
        table += &line(&mut row.iter().map(AsRef::as_ref));
    }
    table
}

/// One cell of an HTML table row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtmlCell {
    /// Markup already: escape text with [`html`] first.
    pub html: String,
    /// Its `class` attribute, if any.
    pub class: Option<String>,
    /// A row header (`<th>`) rather than data (`<td>`).
    pub header: bool,
}

impl HtmlCell {
    /// A data cell of escaped `text`.
    pub fn text(text: &str) -> Self {
        Self { html: html(text), class: None, header: false }
    }

    /// A data cell of markup.
    pub fn markup(html: String) -> Self {
        Self { html, class: None, header: false }
    }

    /// The cell with a `class` attribute.
    #[must_use]
    pub fn with_class(mut self, class: impl Into<String>) -> Self {
        self.class = Some(class.into());
        self
    }

    /// The cell as a row header.
    #[must_use]
    pub fn as_header(mut self) -> Self {
        self.header = true;
        self
    }
}

/// One row of an HTML table: its cells and its `class` attribute, if any.
pub struct HtmlRow {
    pub class: Option<&'static str>,
    pub cells: Vec<HtmlCell>,
}

/// An HTML table: `<table>`, the header row of `header` (markup already), one `<tr>` line a
/// row, `</table>`, each on its own line.
pub fn html_table(header: &[&str], rows: impl IntoIterator<Item = HtmlRow>) -> String {
    let mut table = String::from("<table>\n<tr>");
    for title in header {
        let _ = write!(table, "<th>{title}</th>");
    }
    table.push_str("</tr>\n");
    for row in rows {
        match row.class {
            Some(class) => {
                let _ = write!(table, "<tr class=\"{class}\">");
            }
            None => table.push_str("<tr>"),
        }
        for cell in row.cells {
            let tag = if cell.header { "th" } else { "td" };
            match cell.class {
                Some(class) => {
                    let _ = write!(table, "<{tag} class=\"{class}\">{}</{tag}>", cell.html);
                }
                None => {
                    let _ = write!(table, "<{tag}>{}</{tag}>", cell.html);
                }
            }
        }
        table.push_str("</tr>\n");
    }
    table.push_str("</table>\n");
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_covers_markup_and_both_quotes() {
        assert_eq!(html(r#"<a href="x">O'Neil & co</a>"#), "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;");
        assert_eq!(html("plain ü"), "plain ü");
    }

    #[test]
    fn markdown_tables_align_columns_and_keep_cells_as_given() {
        let table =
            markdown_table(&[("label", Align::Left), ("AP", Align::Right)], [vec!["a\\|b", "1.00"], vec!["c", "—"]]);
        assert_eq!(table, "| label | AP |\n|---|---:|\n| a\\|b | 1.00 |\n| c | — |\n");
        assert_eq!(markdown_code("a`b|c"), "`a'b\\|c`");
    }

    #[test]
    fn html_tables_carry_row_and_cell_classes_and_row_headers() {
        let rows = [
            HtmlRow { class: Some("best"), cells: vec![HtmlCell::text("<x>"), HtmlCell::text("1").with_class("num")] },
            HtmlRow { class: None, cells: vec![HtmlCell::markup("<code>y</code>".into()).as_header()] },
        ];
        assert_eq!(
            html_table(&["a", "b"], rows),
            "<table>\n<tr><th>a</th><th>b</th></tr>\n<tr class=\"best\"><td>&lt;x&gt;</td><td class=\"num\">1</td></tr>\n\
             <tr><th><code>y</code></th></tr>\n</table>\n"
        );
    }

    #[test]
    fn markdown_cells_keep_pipes_breaks_and_markup_inert() {
        assert_eq!(markdown_cell("a|b\nc *d* _e_ `f` <g>"), "a\\|b c \\*d\\* \\_e\\_ \\`f\\` &lt;g&gt;");
    }
}
