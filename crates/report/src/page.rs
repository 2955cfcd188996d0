//! `report.html`: one self-contained page (images inlined) with the headline
//! numbers, the classification report, the plots, the training history and
//! the parameters of every stage that produced them.

use std::fmt::Write;

use html_escape::encode_text as esc;
use tables::training::EpochRow;

use crate::Metrics;

pub struct Page<'a> {
    pub metrics: &'a Metrics,
    pub report_text: &'a str,
    pub history: &'a [EpochRow],
    pub best_epoch: usize,
    pub loss_svg: &'a str,
    pub lengths_svg: &'a str,
    pub confusion_svg: &'a str,
    /// (`stage.parameter`, value) of every stage, as the stages were keyed.
    pub params: &'a [(String, String)],
    pub held_out: &'a crate::HeldOut,
    /// The audit's section, rendered (`crate::audit::section`).
    pub audit_section: &'a str,
}

pub(crate) const STYLE: &str = "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
table{border-collapse:collapse}td,th{padding:.2rem .7rem;border-bottom:1px solid #ddd;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}pre{background:#f6f6f6;padding:1rem}\
.big{font-size:1.6rem;margin-right:2rem}figure{margin:1rem 0}svg{max-width:100%;height:auto}";

pub fn render(page: &Page) -> String {
    let m = page.metrics;
    let mut html = String::new();
    let total: usize = m.support.iter().sum();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Sentiment head: test accuracy {acc:.4}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Sentiment classifier on frozen BERT features</h1>\n\
         <p><span class=\"big\">accuracy {acc:.4}</span><span class=\"big\">macro F1 {f1:.4}</span>\
         on the {total} sentences of the test split; weights of epoch {best} (best validation loss).</p>\n\
         <p><span class=\"big\">{held}</span></p>\n",
        acc = m.accuracy,
        f1 = m.macro_f1,
        best = page.best_epoch,
        held = crate::audit::held_out_phrase(page.held_out),
    );
    let _ = write!(
        html,
        "<h2>Classification report</h2>\n<pre>{}</pre>\n\
         {}<h2>Confusion matrix</h2>\n<figure>{}</figure>\n\
         <h2>Training</h2>\n<figure>{}</figure>\n",
        esc(page.report_text),
        page.audit_section,
        page.confusion_svg,
        page.loss_svg
    );
    html.push_str(
        "<table>\n<tr><th>epoch</th><th>train loss</th><th>val loss</th>\
         <th>val accuracy</th><th>seconds</th></tr>\n",
    );
    for e in page.history {
        let kept = if e.epoch == page.best_epoch {
            " (kept)"
        } else {
            ""
        };
        let _ = writeln!(
            html,
            "<tr><td>{}{kept}</td><td class=\"n\">{:.4}</td><td class=\"n\">{:.4}</td>\
             <td class=\"n\">{:.4}</td><td class=\"n\">{:.2}</td></tr>",
            e.epoch, e.train_loss, e.val_loss, e.val_accuracy, e.seconds
        );
    }
    html.push_str("</table>\n");
    let _ = write!(
        html,
        "<h2>Token lengths</h2>\n<figure>{}</figure>\n<h2>Parameters</h2>\n\
         <table>\n<tr><th>parameter</th><th>value</th></tr>\n",
        page.lengths_svg
    );
    for (key, value) in page.params {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td><code>{}</code></td></tr>",
            esc(key),
            esc(value)
        );
    }
    html.push_str("</table>\n</body>\n</html>\n");
    html
}
