//! The report's three SVG images, drawn with plotters' SVG backend. SVG
//! leaves text to the viewer, so no font files are needed to draw them.

use anyhow::{Result, anyhow};
use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use tables::encoded::LengthHistogram;
use tables::training::EpochRow;

const SIZE: (u32, u32) = (720, 420);
const TRAIN_COLOUR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOUR: RGBColor = RGBColor(255, 127, 14);
const CUT_COLOUR: RGBColor = RGBColor(214, 39, 40);

/// plotters' errors borrow the backend; keep only their text.
fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot failed: {e:?}")
}

/// Both line-style plots: f64 on both axes.
type LineChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The series labels, boxed in the upper right corner.
fn draw_legend<'a, 'b: 'a>(chart: &mut LineChart<'a, 'b>) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_err)
}

/// Axes for losses over epochs 1..=`epochs`, up to 10 % above `highest`, with
/// its caption and mesh drawn.
fn epoch_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    epochs: usize,
    highest: f64,
) -> Result<LineChart<'a, 'b>> {
    let top = highest.max(1e-3) * 1.1;
    let right = epochs.max(1) as f64 + 0.5;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.5..right, 0.0..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels(epochs.clamp(1, 20))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(plot_err)?;
    Ok(chart)
}

/// Train and validation loss per epoch; the kept (best validation) epoch marked.
pub fn loss_curves(history: &[EpochRow], best_epoch: usize) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let losses = history.iter().flat_map(|e| [e.train_loss, e.val_loss]);
        let mut chart = epoch_chart(
            &root,
            "Loss per epoch (class-weighted NLL)",
            "loss",
            history.len(),
            losses.fold(0.0f64, f64::max),
        )?;
        for (name, colour, value) in [
            (
                "train",
                TRAIN_COLOUR,
                (|e: &EpochRow| e.train_loss) as fn(&EpochRow) -> f64,
            ),
            ("validation", VAL_COLOUR, |e: &EpochRow| e.val_loss),
        ] {
            let points: Vec<(f64, f64)> =
                history.iter().map(|e| (e.epoch as f64, value(e))).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(plot_err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(plot_err)?;
        }
        if let Some(best) = history.iter().find(|e| e.epoch == best_epoch) {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (best.epoch as f64, best.val_loss),
                    7,
                    BLACK.stroke_width(2),
                )))
                .map_err(plot_err)?
                .label(format!("kept: epoch {best_epoch}"))
                .legend(|(x, y)| Circle::new((x + 9, y), 5, BLACK.stroke_width(2)));
        }
        draw_legend(&mut chart)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Training-split token counts ([CLS] and [SEP] included) with `max_len`
/// marked: everything right of the line was truncated.
pub fn token_lengths(hist: &LengthHistogram) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let longest = hist.counts.iter().map(|c| c.0).max().unwrap_or(0);
        let right = longest.max(hist.max_len) as f64 + 1.5;
        // Headroom for the legend.
        let top = hist.counts.iter().map(|c| c.1).max().unwrap_or(1).max(1) as f64 * 1.3;
        let total: usize = hist.counts.iter().map(|c| c.1).sum();
        let truncated: usize = hist
            .counts
            .iter()
            .filter(|c| c.0 > hist.max_len)
            .map(|c| c.1)
            .sum();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Tokens per training sentence: {truncated} of {total} longer than max_len"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..right, 0.0..top)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("tokens ([CLS] and [SEP] included)")
            .y_desc("sentences")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(hist.counts.iter().map(|&(n, rows)| {
                let colour = if n > hist.max_len {
                    CUT_COLOUR.mix(0.5)
                } else {
                    TRAIN_COLOUR.mix(0.8)
                };
                Rectangle::new(
                    [(n as f64 - 0.45, 0.0), (n as f64 + 0.45, rows as f64)],
                    colour.filled(),
                )
            }))
            .map_err(plot_err)?;
        let cut = hist.max_len as f64 + 0.5;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(cut, 0.0), (cut, top)],
                CUT_COLOUR.stroke_width(2),
            )))
            .map_err(plot_err)?
            .label(format!(
                "max_len = {} ({})",
                hist.max_len, hist.max_len_rule
            ))
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], CUT_COLOUR.stroke_width(2))
            });
        draw_legend(&mut chart)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// The confusion matrix: rows are true classes, columns predicted ones;
/// each cell shows its count and is shaded by its share of the true class.
pub fn confusion_matrix(confusion: &[Vec<usize>], classes: &[String]) -> Result<String> {
    let k = classes.len();
    anyhow::ensure!(
        k >= 2,
        "a confusion matrix needs at least two classes, got {k}"
    );
    let last = k - 1;
    let mut svg = String::new();
    {
        let side = (SIZE.1 + 60).max(120 + 60 * k as u32);
        let root = SVGBackend::with_string(&mut svg, (side + 60, side)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let longest_name = classes.iter().map(|c| c.chars().count()).max().unwrap_or(1);
        let mut chart = ChartBuilder::on(&root)
            .caption("Confusion matrix (test split)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size((48 + 8 * longest_name as u32).min(260))
            // A segmented 0..n has n + 1 segments.
            .build_cartesian_2d((0..last).into_segmented(), (0..last).into_segmented())
            .map_err(plot_err)?;
        // y runs bottom-up; show the first class at the top, as sklearn does.
        let name_at = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(i) if *i < k => {
                classes[if flip { k - 1 - i } else { *i }].clone()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("true")
            .x_labels(k)
            .y_labels(k)
            .x_label_formatter(&|v| name_at(v, false))
            .y_label_formatter(&|v| name_at(v, true))
            .draw()
            .map_err(plot_err)?;
        for (t, row) in confusion.iter().enumerate() {
            let row_total = row.iter().sum::<usize>().max(1) as f64;
            for (p, &count) in row.iter().enumerate() {
                let share = count as f64 / row_total;
                let y = k - 1 - t;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (SegmentValue::Exact(p), SegmentValue::Exact(y)),
                            (SegmentValue::Exact(p + 1), SegmentValue::Exact(y + 1)),
                        ],
                        TRAIN_COLOUR.mix(0.08 + 0.85 * share).filled(),
                    )))
                    .map_err(plot_err)?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                chart
                    .draw_series(std::iter::once(Text::new(
                        count.to_string(),
                        (SegmentValue::CenterOf(p), SegmentValue::CenterOf(y)),
                        ("sans-serif", 22).into_font().color(&ink).pos(
                            plotters::style::text_anchor::Pos::new(
                                plotters::style::text_anchor::HPos::Center,
                                plotters::style::text_anchor::VPos::Center,
                            ),
                        ),
                    )))
                    .map_err(plot_err)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Validation loss per epoch of several runs overlaid (a sweep's variants),
/// each labelled; plotters' palette, cycling.
pub fn validation_losses(runs: &[(String, Vec<EpochRow>)]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let highest = runs
            .iter()
            .flat_map(|(_, h)| h.iter().map(|e| e.val_loss))
            .fold(0.0f64, f64::max);
        let mut chart = epoch_chart(
            &root,
            "Validation loss per epoch, by variant",
            "validation loss",
            runs.iter().map(|(_, h)| h.len()).max().unwrap_or(1),
            highest,
        )?;
        for (i, (name, history)) in runs.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = history
                .iter()
                .map(|e| (e.epoch as f64, e.val_loss))
                .collect();
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(plot_err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        draw_legend(&mut chart)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}
