//! `switchyard.toml(5)`, made from the config reference page (`docs/config.md`) at build time.
//!
//! The page is the one source: the binary embeds it (`include_str!`) and this module turns its
//! small Markdown subset into roff when `switchyard gen man` runs, so the man page cannot say
//! anything the docs page does not. The subset is what the page uses: `#`/`##` headings,
//! paragraphs, fenced code blocks, inline code and links. Anything else passes through as text
//! (escaped), never as a roff request.

/// The config reference page, as the repository has it.
pub const CONFIG_MD: &str = include_str!("../../docs/config.md");

/// The roff source of `switchyard.toml(5)` for release `version`, from `markdown` (the config
/// reference page).
pub fn config_page(markdown: &str, version: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        ".TH SWITCHYARD.TOML 5 \"\" \"switchyard {}\" \"File Formats\"\n",
        quote_arg(version)
    ));
    out.push_str(".SH NAME\nswitchyard.toml \\- the network config file of switchyard(8)\n");
    out.push_str(".SH SYNOPSIS\n/etc/switchyard/switchyard.toml\n");
    out.push_str(".SH DESCRIPTION\n");
    let mut paragraph: Vec<String> = Vec::new();
    let mut fence = false;
    let flush = |out: &mut String, paragraph: &mut Vec<String>| {
        if !paragraph.is_empty() {
            out.push_str(".PP\n");
            for line in paragraph.drain(..) {
                out.push_str(&text_line(&inline(&line)));
            }
        }
    };
    for line in markdown.lines() {
        if line.starts_with("```") {
            flush(&mut out, &mut paragraph);
            out.push_str(if fence {
                ".fi\n.RE\n"
            } else {
                ".PP\n.RS 2\n.nf\n"
            });
            fence = !fence;
            continue;
        }
        if fence {
            out.push_str(&text_line(&escape(line)));
            continue;
        }
        if line.starts_with("# ") {
            // The page's own title: the .TH line says it already.
            continue;
        }
        if line.starts_with("##") {
            flush(&mut out, &mut paragraph);
            let title = line.trim_start_matches('#').trim();
            out.push_str(&format!(
                ".SH \"{}\"\n",
                quote_arg(&plain(title)).to_uppercase()
            ));
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut out, &mut paragraph);
        } else {
            paragraph.push(line.trim().to_string());
        }
    }
    flush(&mut out, &mut paragraph);
    if fence {
        out.push_str(".fi\n.RE\n");
    }
    out.push_str(".SH \"SEE ALSO\"\nswitchyard(8), switchyard\\-check(8)\n");
    out
}

/// Backslashes escaped, so no text becomes an escape sequence.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e")
}

/// A line of text that roff will not read as a request (`.` or `'` first).
fn text_line(line: &str) -> String {
    if line.starts_with('.') || line.starts_with('\'') {
        format!("\\&{line}\n")
    } else {
        format!("{line}\n")
    }
}

/// A value for a quoted macro argument.
fn quote_arg(text: &str) -> String {
    text.replace('"', "\"\"")
}

/// Inline Markdown as roff: `code` in bold, [text](target) as its text, the rest escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            if let Some(end) = rest[1..].find('`') {
                out.push_str("\\fB");
                out.push_str(&escape(&rest[1..1 + end]));
                out.push_str("\\fR");
                rest = &rest[end + 2..];
                continue;
            }
        }
        if c == '[' {
            if let Some((label, after)) = link(rest) {
                out.push_str(&inline(label));
                rest = after;
                continue;
            }
        }
        out.push_str(&escape(&rest[..c.len_utf8()]));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `[label](target)` at the start of `text`: the label and what follows the link.
fn link(text: &str) -> Option<(&str, &str)> {
    let close = text.find("](")?;
    let label = &text[1..close];
    if label.contains('[') {
        return None;
    }
    let after = &text[close + 2..];
    let end = after.find(')')?;
    Some((label, &after[end + 1..]))
}

/// A heading's text without its Markdown (for `.SH`).
fn plain(text: &str) -> String {
    inline(text).replace("\\fB", "").replace("\\fR", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_page_becomes_a_man_page() {
        let page = config_page(CONFIG_MD, "0.1.0");
        assert!(page.starts_with(".TH SWITCHYARD.TOML 5 "));
        // Every table of the reference is in the page, in the code block, as the docs say it.
        for key in [
            "[network]",
            "[switch]",
            "[dhcp]",
            "[dns]",
            "[[host]]",
            "[[port]]",
        ] {
            assert!(page.contains(&format!("\n{key}")), "{key} missing");
        }
        // Links become their text; no Markdown link syntax is left.
        assert!(!page.contains("]("), "a link was left as Markdown");
        assert!(page.contains("the guard"));
        // No line of text can be read as a request except the ones written here.
        for line in page.lines().filter(|l| l.starts_with('.')) {
            let request = line.split_whitespace().next().unwrap();
            assert!(
                [".TH", ".SH", ".PP", ".RS", ".RE", ".nf", ".fi"].contains(&request),
                "{line}"
            );
        }
    }

    #[test]
    fn markup_and_escapes() {
        let md = "# T\n\nUse `a\\b` and [the page](x.md#y).\n.starts with a dot\n\n## Two words\n\n```\n.x = 1\n```\n";
        let page = config_page(md, "1");
        assert!(page.contains("Use \\fBa\\eb\\fR and the page.\n"), "{page}");
        assert!(page.contains("\\&.starts with a dot\n"));
        assert!(page.contains(".SH \"TWO WORDS\"\n"));
        assert!(page.contains(".nf\n\\&.x = 1\n.fi\n"));
        assert!(!page.contains("\nT\n"), "the title is the .TH line");
    }
}
