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
    let points = panel.series.iter().flat_map(|s| &s.points);
    let finite = |v: &f64| v.is_finite();
    let xs: Vec<f64> = points.clone().map(|p| p.0).filter(finite).collect();
    let ys: Vec<f64> = points.map(|p| p.1).filter(finite).collect();
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
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(e)?;
    for (i, series) in panel.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                series.points.iter().copied().filter(|p| p.1.is_finite()),
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
    fn flat_and_empty_data_get_a_usable_range() {
        assert_eq!(bounds(&[]), (0.0, 1.0));
        assert_eq!(bounds(&[2.0, 2.0]), (1.0, 3.0));
        assert_eq!(bounds(&[1.0, 3.0]), (1.0, 3.0));
    }
}
