//! A sweep's page: its table (best first, by validation) and every
//! variant's validation loss per epoch overlaid.

use std::fmt::Write;

use html_escape::encode_text as esc;
use tables::sweep::SweepRow;
use tables::training::EpochRow;

/// The self-contained HTML page of sweep `name` over `keys`.
pub fn sweep_page(
    name: &str,
    keys: &[String],
    rows: &[SweepRow],
    histories: &[(String, Vec<EpochRow>)],
) -> anyhow::Result<String> {
    let svg = crate::plots::validation_losses(histories)?;
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Sweep {n}</title>\n\
         <style>{style}</style>\n</head>\n<body>\n<h1>Sweep {n}</h1>\n\
         <p>{count} variants, ranked by validation (never by test); the best first.</p>\n<table>\n<tr><th>rank</th><th>#</th>",
        n = esc(name),
        style = crate::page::STYLE,
        count = rows.len()
    );
    for key in keys {
        let _ = write!(html, "<th>{}</th>", esc(key));
    }
    for name in tables::sweep::FIGURES {
        let _ = write!(html, "<th>{name}</th>");
    }
    html.push_str("<th>head s</th><th>status</th></tr>\n");
    for r in rows {
        let _ = write!(
            html,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            r.rank,
            r.variant + 1
        );
        for key in keys {
            let _ = write!(
                html,
                "<td><code>{}</code></td>",
                esc(r.value_of(key).unwrap_or("-"))
            );
        }
        for figure in r.figures() {
            let _ = write!(html, "<td class=\"n\">{figure}</td>");
        }
        let _ = writeln!(
            html,
            "<td class=\"n\">{}</td><td>{}</td></tr>",
            r.head_time(),
            esc(&r.status)
        );
    }
    let _ = write!(html, "</table>\n<figure>{svg}</figure>\n</body>\n</html>\n");
    Ok(html)
}
