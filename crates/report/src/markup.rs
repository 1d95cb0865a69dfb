//! Escaping text for the markup the project writes, one home for each: HTML (and SVG) content
//! and attribute values, and Markdown table cells. The report, the experiment tables and the
//! ablation tables all escape through these.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_covers_markup_and_both_quotes() {
        assert_eq!(html(r#"<a href="x">O'Neil & co</a>"#), "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;");
        assert_eq!(html("plain ü"), "plain ü");
    }

    #[test]
    fn markdown_cells_keep_pipes_breaks_and_markup_inert() {
        assert_eq!(markdown_cell("a|b\nc *d* _e_ `f` <g>"), "a\\|b c \\*d\\* \\_e\\_ \\`f\\` &lt;g&gt;");
    }
}
