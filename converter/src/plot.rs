//! Line charts as PNG: the loss curves and the forecast-against-actual plots `tinyrnn train` saves.
//!
//! Drawn with plotters' bitmap backend and an embedded font (Roboto, Apache-2.0, in
//! `converter/assets/fonts`), so plotting needs no system fonts and no fontconfig.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, ensure, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// The embedded font, registered once under this family name.
const FAMILY: &str = "sans-serif";
static FONT: &[u8] = include_bytes!("../assets/fonts/Roboto-Regular.ttf");
static REGISTER: Once = Once::new();

/// Colours of successive series: blue, orange, green, red, purple (the usual plotting palette).
const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// One line: its legend label and its points.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(x, y)` points, in order of x.
    pub points: Vec<(f64, f64)>,
}

/// One chart: a title, axis labels and its lines.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The lines, drawn in palette order.
    pub series: Vec<Series>,
    /// A logarithmic y axis (for losses that fall by orders of magnitude); values ≤ 0 are not drawn.
    pub log_y: bool,
}

fn font_ready() -> Result<()> {
    let mut failed = false;
    REGISTER.call_once(|| {
        failed = register_font(FAMILY, FontStyle::Normal, FONT).is_err();
    });
    ensure!(!failed, "the embedded plot font does not load");
    Ok(())
}

/// Draws `panels` stacked vertically into a PNG of `width` pixels wide, `panel_height` pixels per panel.
pub fn save_png(path: &Path, panels: &[Panel], width: u32, panel_height: u32) -> Result<()> {
    ensure!(!panels.is_empty(), "nothing to plot");
    font_ready()?;
    let height = panel_height * panels.len() as u32;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((panels.len(), 1));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(area, panel).map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    // A log axis is drawn as log10 of the values on a linear axis: plotters' own log axis labels only
    // the top decade of a range like 0.002..0.09.
    let log = panel.log_y;
    let to_axis = move |p: (f64, f64)| if log { (p.0, p.1.log10()) } else { p };
    let drawable = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let points = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|&p| to_axis(p)))
        .filter(drawable);
    let xs: Vec<f64> = points.clone().map(|p| p.0).collect();
    let ys: Vec<f64> = points.map(|p| p.1).collect();
    let (x0, x1) = bounds(&xs);
    let (y0, y1) = bounds(&ys);
    let pad = (y1 - y0) * 0.05;
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e:?}");
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(e)?;
    let y_label = |y: &f64| {
        if log {
            significant(10f64.powf(*y))
        } else {
            number(*y)
        }
    };
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .x_label_formatter(&|x| number(*x))
        .y_label_formatter(&y_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(e)?;
    for (i, series) in panel.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                series.points.iter().map(|&p| to_axis(p)).filter(drawable),
                color.stroke_width(2),
            ))
            .map_err(e)?
            .label(&series.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(e)?;
    Ok(())
}

/// An axis label: whole numbers without decimals, others with up to 4 significant digits.
fn number(v: f64) -> String {
    if v == v.round() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 0.01 {
        let text = format!("{v:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// A value with two significant digits, e.g. `0.0032` or `45`.
fn significant(v: f64) -> String {
    if v <= 0.0 || !v.is_finite() {
        return number(v);
    }
    let decimals = (1 - v.log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

/// The range of `values`, widened when it is a single value; `(0, 1)` when there are none.
fn bounds(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let half = lo.abs().max(1.0) * 0.5;
        return (lo - half, hi + half);
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_two_panels() {
        let dir = std::env::temp_dir().join(format!("tinyrnn-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("two.png");
        let line = |label: &str, k: f64| Series {
            label: label.into(),
            points: (0..50).map(|i| (i as f64, (i as f64 * k).sin())).collect(),
        };
        let panel = |title: &str| Panel {
            title: title.into(),
            x_label: "step".into(),
            y_label: "value".into(),
            series: vec![line("a", 0.1), line("b", 0.2)],
            log_y: false,
        };
        save_png(&path, &[panel("one"), panel("two")], 400, 200).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        // Width and height in the IHDR chunk.
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 400);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 400);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn labels_read_as_numbers() {
        assert_eq!(number(3300.0), "3300");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(0.0012), "1.2e-3");
        assert_eq!(significant(0.003162), "0.0032");
        assert_eq!(significant(45.2), "45");
    }

    #[test]
    fn flat_and_empty_data_get_a_usable_range() {
        assert_eq!(bounds(&[]), (0.0, 1.0));
        assert_eq!(bounds(&[2.0, 2.0]), (1.0, 3.0));
        assert_eq!(bounds(&[1.0, 3.0]), (1.0, 3.0));
    }
}
