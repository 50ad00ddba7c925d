//! # ddpm-viz
//!
//! Pictures: image grids as PNG, and plots (loss curves, 2-D point sets) as SVG.
//! Every file is written atomically (temporary file + rename), so a viewer never sees half a file.
//! One owner of drawing for the data crate's previews, the samplers' figures and the trainer's
//! report and TensorBoard images.

pub mod ticks;

use std::fmt::Write as _;
use std::path::Path;

/// One channel value in [-1, 1] to 8 bits: round((x + 1) 127.5), clamped.
pub fn to_u8(x: f32) -> u8 {
    ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

/// Pictures are written atomically (a viewer or a browser refreshing a report never sees half
/// a file): see [`ddpm_io::write_atomic`].
pub use ddpm_io::write_atomic;

/// PNG bytes of 8-bit pixels, row-major, `channels` = 1 (grey) or 3 (RGB) interleaved.
pub fn encode_png(
    width: u32,
    height: u32,
    channels: usize,
    pixels: &[u8],
) -> std::io::Result<Vec<u8>> {
    use image::ImageEncoder;
    let color =
        if channels == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(pixels, width, height, color)
        .map_err(std::io::Error::other)?;
    Ok(out)
}

/// The gutter between the cells of an image grid: mid-grey, so it parts black backgrounds
/// (digits, MNIST) as well as white ones. torchvision's `make_grid` pads with black by default,
/// which runs digits on black into each other.
pub const GUTTER: u8 = 128;

/// An 8-bit picture: `pixels` row-major with `channels` interleaved values per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

impl Picture {
    pub fn to_png(&self) -> std::io::Result<Vec<u8>> {
        encode_png(self.width as u32, self.height as u32, self.channels, &self.pixels)
    }
}

/// `n` images (N x C x H x W floats in [-1, 1], C = 1 or 3) as one grid with `nrow` images per
/// row, each pixel repeated `scale` times, laid out like torchvision's `make_grid`: a gutter of
/// [`GUTTER`] around and between the cells, empty cells of the last row filled too. The gutter
/// is `pad` pixels, or a sixth of a cell's side when that is wider ([`gutter`]), so that each
/// image stands alone: strokes that reach a cell's edge do not seem to run on into the next
/// cell, as they did across a 2-pixel line between 64-pixel digits. `pad` 0: no gutter.
pub fn image_grid(
    images: &[f32],
    shape: [usize; 4],
    nrow: usize,
    scale: usize,
    pad: usize,
) -> Picture {
    let [n, c, h, w] = shape;
    assert!(c == 1 || c == 3, "grids take 1 or 3 channels, got {c}");
    assert_eq!(images.len(), n * c * h * w, "image buffer does not match its shape");
    let scale = scale.max(1);
    let nrow = nrow.max(1).min(n.max(1));
    let rows = n.div_ceil(nrow).max(1);
    let (ch, cw) = (h * scale, w * scale);
    let pad = gutter(pad, ch.max(cw));
    let gw = nrow * cw + (nrow + 1) * pad;
    let gh = rows * ch + (rows + 1) * pad;
    let mut px = vec![GUTTER; gw * gh * c];
    for i in 0..n {
        let (r, col) = (i / nrow, i % nrow);
        let (y0, x0) = (pad + r * (ch + pad), pad + col * (cw + pad));
        for y in 0..ch {
            for x in 0..cw {
                for k in 0..c {
                    let v = images[((i * c + k) * h + y / scale) * w + x / scale];
                    px[((y0 + y) * gw + x0 + x) * c + k] = to_u8(v);
                }
            }
        }
    }
    Picture { width: gw, height: gh, channels: c, pixels: px }
}

/// The gutter of a grid of cells `cell` pixels wide: `pad`, or `cell / 6` (rounded up) when
/// wider; 0 stays 0.
pub fn gutter(pad: usize, cell: usize) -> usize {
    match pad {
        0 => 0,
        p => p.max(cell.div_ceil(6)),
    }
}

/// [`image_grid`] encoded as PNG bytes (for a file, a TensorBoard image or a report).
pub fn image_grid_png(
    images: &[f32],
    shape: [usize; 4],
    nrow: usize,
    scale: usize,
    pad: usize,
) -> std::io::Result<Vec<u8>> {
    image_grid(images, shape, nrow, scale, pad).to_png()
}

/// Saves [`image_grid`] as a PNG file.
pub fn save_image_grid(
    path: &Path,
    images: &[f32],
    shape: [usize; 4],
    nrow: usize,
    scale: usize,
    pad: usize,
) -> std::io::Result<()> {
    write_atomic(path, &image_grid_png(images, shape, nrow, scale, pad)?)
}

/// Saves one image (C x H x W floats in [-1, 1]) as a PNG at its own resolution.
pub fn save_image(path: &Path, image: &[f32], c: usize, h: usize, w: usize) -> std::io::Result<()> {
    save_image_grid(path, image, [1, c, h, w], 1, 1, 0)
}

/// Text for SVG/HTML content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The colours of successive series: matplotlib's tab10 without its grey (which the dashed
/// reference lines use), then tab20b's dark indigo, so that ten series (the sampler sweep's
/// nine samplers and more) stay apart.
pub const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#393b79",
];

/// One named curve of a [`LinePlot`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// A CSS colour; `None` takes the next of [`COLORS`].
    pub color: Option<String>,
    pub dashed: bool,
    /// Dots at the points (for sparse series such as evaluations).
    pub markers: bool,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points, color: None, dashed: false, markers: false }
    }
    pub fn color(mut self, color: impl Into<String>) -> Self {
        self.color = Some(color.into());
        self
    }
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
    pub fn markers(mut self) -> Self {
        self.markers = true;
        self
    }
}

/// A line plot: several series over a shared x axis, round ticks ([`ticks`]), optionally log
/// axes, a legend on the right when there is more than one series.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub log_x: bool,
    pub log_y: bool,
    pub width: f64,
    pub height: f64,
}

impl LinePlot {
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            log_x: false,
            log_y: false,
            width: 720.0,
            height: 420.0,
        }
    }
    pub fn log_x(mut self, on: bool) -> Self {
        self.log_x = on;
        self
    }
    pub fn log_y(mut self, on: bool) -> Self {
        self.log_y = on;
        self
    }
    pub fn size(mut self, width: f64, height: f64) -> Self {
        (self.width, self.height) = (width, height);
        self
    }
    pub fn with(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Whether a point can be drawn on this plot's axes.
    fn drawable(&self, p: &(f64, f64)) -> bool {
        p.0.is_finite()
            && p.1.is_finite()
            && (!self.log_x || p.0 > 0.0)
            && (!self.log_y || p.1 > 0.0)
    }

    /// The plot as one `<svg>` element (standalone: it carries its namespace).
    pub fn to_svg(&self) -> String {
        let (w, h) = (self.width, self.height);
        let legend = self.series.len() > 1;
        let (ml, mr, mt, mb) = (64.0, if legend { 170.0 } else { 20.0 }, 36.0, 46.0);
        let pts = || self.series.iter().flat_map(|s| s.points.iter()).filter(|p| self.drawable(p));
        let has_data = pts().next().is_some();
        let fold = |it: &mut dyn Iterator<Item = f64>| {
            it.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)))
        };
        let (xlo, xhi) = fold(&mut pts().map(|p| p.0));
        let (ylo, yhi) = fold(&mut pts().map(|p| p.1));
        let xt = if self.log_x { ticks::log(xlo, xhi) } else { ticks::linear(xlo, xhi) };
        let yt = if self.log_y { ticks::log(ylo, yhi) } else { ticks::linear(ylo, yhi) };
        let fx = |x: f64| if self.log_x { x.log10() } else { x };
        let fy = |y: f64| if self.log_y { y.log10() } else { y };
        let (x0, x1) = (fx(xt.range().0), fx(xt.range().1));
        let (y0, y1) = (fy(yt.range().0), fy(yt.range().1));
        let (pw, ph) = (w - ml - mr, h - mt - mb);
        let sx = |x: f64| ml + (fx(x) - x0) / (x1 - x0) * pw;
        let sy = |y: f64| mt + (1.0 - (fy(y) - y0) / (y1 - y0)) * ph;
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\" role=\"img\" aria-label=\"{}\">\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
             <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
            esc(&self.title),
            ml + pw / 2.0,
            esc(&self.title)
        );
        for (v, label) in xt.values.iter().zip(&xt.labels) {
            let px = sx(*v);
            let _ = write!(
                s,
                "<line x1=\"{px:.1}\" y1=\"{mt}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#e4e4e4\"/>\
                 <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
                mt + ph + 5.0,
                mt + ph + 18.0,
                esc(label)
            );
        }
        for (v, label) in yt.values.iter().zip(&yt.labels) {
            let py = sy(*v);
            let _ = write!(
                s,
                "<line x1=\"{:.1}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#e4e4e4\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}</text>",
                ml - 5.0,
                ml + pw,
                ml - 8.0,
                py + 4.0,
                esc(label)
            );
        }
        let _ = write!(
            s,
            "<rect x=\"{ml}\" y=\"{mt}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
            ml + pw / 2.0,
            h - 8.0,
            esc(&self.x_label),
            mt + ph / 2.0,
            mt + ph / 2.0,
            esc(&self.y_label)
        );
        if !has_data {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#888\">no data yet</text>",
                ml + pw / 2.0,
                mt + ph / 2.0
            );
        }
        let mut auto = 0;
        for (k, series) in self.series.iter().enumerate() {
            let color = series.color.clone().unwrap_or_else(|| {
                auto += 1;
                COLORS[(auto - 1) % COLORS.len()].to_string()
            });
            let screen: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter(|p| self.drawable(p))
                .map(|&(x, y)| (sx(x), sy(y)))
                .collect();
            let screen = decimate(&screen, pw as usize);
            let dash = if series.dashed { " stroke-dasharray=\"6 4\"" } else { "" };
            if screen.len() > 1 {
                let d: Vec<String> = screen.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = write!(
                    s,
                    "<polyline class=\"series\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\"{dash} points=\"{}\"/>",
                    d.join(" ")
                );
            }
            if series.markers || screen.len() == 1 {
                for (x, y) in &screen {
                    let _ =
                        write!(s, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>");
                }
            }
            if legend {
                let (lx, ly) = (w - mr + 12.0, mt + 10.0 + 18.0 * k as f64);
                let _ = write!(
                    s,
                    "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2.5\"{dash}/>\
                     <text x=\"{}\" y=\"{}\">{}</text>",
                    lx + 18.0,
                    lx + 24.0,
                    ly + 4.0,
                    esc(&series.name)
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_atomic(path, self.to_svg().as_bytes())
    }
}

/// At most two points (the lowest and the highest) per pixel column, in order, so a plot of
/// 100k logged steps stays a few kilobytes and looks the same.
fn decimate(screen: &[(f64, f64)], columns: usize) -> Vec<(f64, f64)> {
    if screen.len() <= 2 * columns.max(1) {
        return screen.to_vec();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < screen.len() {
        let col = screen[i].0.floor();
        let mut j = i;
        let (mut lo, mut hi) = (i, i);
        while j < screen.len() && screen[j].0.floor() == col {
            if screen[j].1 < screen[lo].1 {
                lo = j;
            }
            if screen[j].1 > screen[hi].1 {
                hi = j;
            }
            j += 1;
        }
        let (a, b) = (lo.min(hi), lo.max(hi));
        out.push(screen[a]);
        if b != a {
            out.push(screen[b]);
        }
        i = j;
    }
    out
}

/// A line plot (several named series over a shared x axis) as an SVG file, optionally with a
/// log y axis.
pub fn line_plot_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    log_y: bool,
) -> std::io::Result<()> {
    let mut plot = LinePlot::new(title, x_label, y_label).log_y(log_y);
    for (name, points) in series {
        plot = plot.with(Series::new(*name, points.clone()));
    }
    plot.save(path)
}

/// One layer of a scatter panel: (label, points, colour).
pub type Layer = (String, Vec<[f32; 2]>, String);
/// A scatter panel: (caption, layers).
pub type Panel = (String, Vec<Layer>);

/// An arrow from `from` by `delta`, in data coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrow {
    pub from: [f32; 2],
    pub delta: [f32; 2],
}

/// One panel of a [`scatter_grid_svg`]: point layers sharing the panel's axes, and arrows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScatterPanel {
    pub caption: String,
    pub layers: Vec<Layer>,
    pub arrows: Vec<Arrow>,
}

/// A row of panels with its label (written vertically on the left; empty for none).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScatterRow {
    pub label: String,
    pub panels: Vec<ScatterPanel>,
}

/// The half-width L of a square scatter panel [-L, L]^2 showing `points`: the 99th percentile
/// of max(|x|, |y|) plus 10 %, at least `min_limit`.
pub fn axis_limit<'a>(points: impl Iterator<Item = &'a [f32; 2]>, min_limit: f64) -> f64 {
    let mut mags: Vec<f64> =
        points.map(|p| p[0].abs().max(p[1].abs()) as f64).filter(|v| v.is_finite()).collect();
    mags.sort_by(f64::total_cmp);
    let p99 = mags.get((mags.len() as f64 * 0.99) as usize).or(mags.last()).copied().unwrap_or(1.0);
    (p99 * 1.1).max(min_limit)
}

/// The colour of [`Arrow`]s.
pub const ARROW_COLOR: &str = "#1f4e99";

/// Rows of 2-D scatter panels as one SVG (e.g. the swiss roll's forward and reverse processes
/// at several t). Panels of a column share their axes, [-L, L]^2 with L the 99th percentile of
/// the column's |coordinates| (at least `min_limit`) plus 10 %, so the rows compare point for
/// point. Each panel is a `<g class="panel" data-row=".." data-col="..">`.
pub fn scatter_grid_svg(title: &str, rows: &[ScatterRow], min_limit: f64) -> String {
    let size = 200.0;
    let gap = 12.0;
    let caption_h = 20.0;
    let top = 36.0;
    let left = if rows.iter().any(|r| !r.label.is_empty()) { 30.0 } else { 0.0 };
    let cols = rows.iter().map(|r| r.panels.len()).max().unwrap_or(0);
    let has_arrows = rows.iter().flat_map(|r| &r.panels).any(|p| !p.arrows.is_empty());
    let w = left + gap + cols as f64 * (size + gap);
    let h = top + rows.len() as f64 * (caption_h + size + gap) + 28.0;
    let limits: Vec<f64> = (0..cols)
        .map(|c| {
            let pts = rows
                .iter()
                .filter_map(|r| r.panels.get(c))
                .flat_map(|p| p.layers.iter().flat_map(|l| l.1.iter()));
            axis_limit(pts, min_limit)
        })
        .collect();
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
        w / 2.0,
        esc(title)
    );
    for (r, row) in rows.iter().enumerate() {
        let y0 = top + r as f64 * (caption_h + size + gap) + caption_h;
        if !row.label.is_empty() {
            let cy = y0 + size / 2.0;
            let _ = write!(
                s,
                "<text x=\"18\" y=\"{cy}\" text-anchor=\"middle\" font-size=\"13\" \
                 transform=\"rotate(-90 18 {cy})\">{}</text>",
                esc(&row.label)
            );
        }
        for (c, panel) in row.panels.iter().enumerate() {
            let limit = limits[c];
            let x0 = left + gap + c as f64 * (size + gap);
            let to_px = |p: [f64; 2]| {
                (
                    x0 + (p[0] + limit) / (2.0 * limit) * size,
                    y0 + (1.0 - (p[1] + limit) / (2.0 * limit)) * size,
                )
            };
            let _ = write!(
                s,
                "<g class=\"panel\" data-row=\"{r}\" data-col=\"{c}\">\
                 <rect x=\"{x0}\" y=\"{y0}\" width=\"{size}\" height=\"{size}\" fill=\"none\" stroke=\"#888\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x0 + size / 2.0,
                y0 - 6.0,
                esc(&panel.caption)
            );
            for (_, pts, color) in &panel.layers {
                for p in pts {
                    let (px, py) = (p[0] as f64, p[1] as f64);
                    if !(px.abs() <= limit && py.abs() <= limit) {
                        continue;
                    }
                    let (cx, cy) = to_px([px, py]);
                    let _ = write!(
                        s,
                        "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"1\" fill=\"{color}\" fill-opacity=\"0.5\"/>"
                    );
                }
            }
            for a in &panel.arrows {
                let (ax, ay) = (a.from[0] as f64, a.from[1] as f64);
                let (bx, by) = (ax + a.delta[0] as f64, ay + a.delta[1] as f64);
                let (p, q) = (to_px([ax, ay]), to_px([bx, by]));
                let (dx, dy) = (q.0 - p.0, q.1 - p.1);
                let len = (dx * dx + dy * dy).sqrt();
                if !(len.is_finite() && len > 0.5 && ax.abs() <= limit && ay.abs() <= limit) {
                    continue;
                }
                // A head of 3 px at the tip, its base 60 % of the way along short arrows.
                let head = 3.0f64.min(0.6 * len);
                let (ux, uy) = (dx / len, dy / len);
                let (hx, hy) = (q.0 - ux * head, q.1 - uy * head);
                let _ = write!(
                    s,
                    "<g class=\"arrow\"><line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{hx:.1}\" y2=\"{hy:.1}\" \
                     stroke=\"{ARROW_COLOR}\" stroke-width=\"0.9\"/>\
                     <polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"{ARROW_COLOR}\"/></g>",
                    p.0,
                    p.1,
                    q.0,
                    q.1,
                    hx - uy * head * 0.6,
                    hy + ux * head * 0.6,
                    hx + uy * head * 0.6,
                    hy - ux * head * 0.6,
                );
            }
            s.push_str("</g>");
        }
    }
    let mut legend: Vec<(String, String)> = Vec::new();
    for (label, _, color) in rows.iter().flat_map(|r| &r.panels).flat_map(|p| &p.layers) {
        if !legend.iter().any(|(l, _)| l == label) {
            legend.push((label.clone(), color.clone()));
        }
    }
    let mut lx = left + gap;
    for (label, color) in &legend {
        let _ = write!(
            s,
            "<circle cx=\"{}\" cy=\"{}\" r=\"4\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            lx + 4.0,
            h - 16.0,
            lx + 12.0,
            h - 12.0,
            esc(label)
        );
        lx += 24.0 + 7.0 * label.chars().count() as f64;
    }
    if has_arrows {
        let _ = write!(
            s,
            "<line x1=\"{lx}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{ARROW_COLOR}\" stroke-width=\"1.5\"/>\
             <text x=\"{}\" y=\"{}\">reverse drift \u{3bc}\u{3b8}(x_t, t) \u{2212} x_t, scaled per panel</text>",
            h - 16.0,
            lx + 14.0,
            h - 16.0,
            lx + 20.0,
            h - 12.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Panels of 2-D point sets side by side as an SVG file (one row of [`scatter_grid_svg`]).
pub fn scatter_panels_svg(
    path: &Path,
    title: &str,
    panels: &[Panel],
    min_limit: f64,
) -> std::io::Result<()> {
    let row = ScatterRow {
        label: String::new(),
        panels: panels
            .iter()
            .map(|(caption, layers)| ScatterPanel {
                caption: caption.clone(),
                layers: layers.clone(),
                arrows: Vec::new(),
            })
            .collect(),
    };
    write_atomic(path, scatter_grid_svg(title, &[row], min_limit).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_maps_the_range_ends() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(0.0), 128);
        assert_eq!(to_u8(7.0), 255);
    }

    #[test]
    fn grid_cells_are_parted_by_a_grey_gutter_like_make_grid() {
        // Three 1x2x2 images (all -1, all +1, a ramp) in rows of 2, scale 3, pad 2:
        // width 2 * 6 + 3 * 2 = 18, height 2 * 6 + 3 * 2 = 18; the empty fourth cell is gutter.
        let mut imgs = vec![-1.0f32; 4];
        imgs.extend([1.0f32; 4]);
        imgs.extend([-1.0f32, -0.5, 0.0, 0.5]);
        let g = image_grid(&imgs, [3, 1, 2, 2], 2, 3, 2);
        assert_eq!((g.width, g.height, g.channels), (18, 18, 1));
        let at = |x: usize, y: usize| g.pixels[y * g.width + x];
        for y in 0..18 {
            for x in 0..18 {
                let in_cell = |o: usize| (o % 8) >= 2 && o < 16;
                let (cx, cy) = (in_cell(x), in_cell(y));
                let cell = if cx && cy { Some((y / 8) * 2 + x / 8) } else { None };
                let want = match cell {
                    Some(0) => 0,
                    Some(1) => 255,
                    Some(2) => {
                        let (px, py) = ((x - 2) / 3, (y - 10) / 3);
                        to_u8([-1.0, -0.5, 0.0, 0.5][py * 2 + px])
                    }
                    _ => GUTTER,
                };
                assert_eq!(at(x, y), want, "pixel ({x}, {y}) of cell {cell:?}");
            }
        }
        // The PNG decodes to the same pixels.
        let png = g.to_png().unwrap();
        let d = image::load_from_memory(&png).unwrap().to_luma8();
        assert_eq!(d.dimensions(), (18, 18));
        assert_eq!(d.into_raw(), g.pixels);
        // RGB grids pad every channel.
        let rgb = image_grid(&[0.0f32; 3], [1, 3, 1, 1], 1, 1, 2);
        assert_eq!((rgb.width, rgb.height), (5, 5));
        assert_eq!(&rgb.pixels[..3], &[GUTTER; 3]);
        assert_eq!(&rgb.pixels[(2 * 5 + 2) * 3..(2 * 5 + 3) * 3], &[128u8; 3]);
    }

    /// Regression: 8x8 digits at scale 8 (64-pixel cells) were parted by 2 grey pixels.
    #[test]
    fn the_gutter_grows_with_the_cell_so_each_image_stands_alone() {
        assert_eq!((gutter(2, 6), gutter(2, 64), gutter(2, 28 * 2), gutter(0, 64)), (2, 11, 10, 0));
        let g = image_grid(&[1.0f32; 2 * 64], [2, 1, 8, 8], 2, 8, 2);
        // Two 64-pixel cells, 11-pixel margins and gutter: 2 * 64 + 3 * 11 wide.
        assert_eq!((g.width, g.height), (161, 86));
        let row = &g.pixels[40 * g.width..41 * g.width];
        let white: Vec<usize> = (0..g.width).filter(|&x| row[x] == 255).collect();
        assert_eq!((white[0], white[63], white[64], white[127]), (11, 74, 86, 149));
        assert!(row[75..86].iter().all(|&v| v == GUTTER));
    }

    #[test]
    fn save_image_has_no_gutter() {
        let dir = std::env::temp_dir().join(format!("ddpm-viz-img-{}", std::process::id()));
        let path = dir.join("one.png");
        save_image(&path, &[-1.0, 1.0], 1, 1, 2).unwrap();
        let g = image::open(&path).unwrap().to_luma8();
        assert_eq!(g.into_raw(), vec![0, 255]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The text of every `<text>` element.
    /// Ten series get ten colours, none the reference lines' grey (the sweep's nine samplers
    /// drew ddpm and euler-ancestral in the same blue with eight).
    #[test]
    fn ten_series_get_ten_colours_apart_from_the_reference_grey() {
        let mut set: Vec<&str> = COLORS.to_vec();
        set.sort();
        set.dedup();
        assert_eq!(set.len(), 10);
        assert!(!COLORS.contains(&"#7f7f7f"));
    }

    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .map(|t| t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].to_string())
            .collect()
    }

    #[test]
    fn loss_plot_axes_read_round_numbers() {
        // The old loss plot read 5.000, 528, 1050 and 0.962, 0.202, 8.89e-3 on its axes.
        let steps: Vec<f64> = (1..=400).map(|i| 5.0 * i as f64).collect();
        let loss: Vec<(f64, f64)> = steps
            .iter()
            .map(|&s| (s, 0.962 * (8.89e-3f64 / 0.962).powf((s - 5.0) / 1995.0)))
            .collect();
        let svg = LinePlot::new("training loss", "step", "loss")
            .log_y(true)
            .with(Series::new("loss", loss.clone()))
            .with(Series::new("t in [0, T/4)", loss.iter().map(|&(x, y)| (x, 2.0 * y)).collect()))
            .to_svg();
        let t = texts(&svg);
        for label in ["0", "500", "1000", "1500", "2000", "0.005", "0.01", "0.1", "1", "2"] {
            assert!(t.iter().any(|x| x == label), "no tick {label}: {t:?}");
        }
        assert!(!t.iter().any(|x| x.contains("528") || x.contains("0.962")), "{t:?}");
        assert!(t.iter().any(|x| x == "t in [0, T/4)"), "legend: {t:?}");
        assert_eq!(svg.matches("<polyline").count(), 2);
        // 400 points over ~490 px columns are kept as they are.
        let first = svg.split("points=\"").nth(1).unwrap();
        assert_eq!(first[..first.find('"').unwrap()].split(' ').count(), 400);
    }

    /// On a log x axis equal ratios are equal distances: 5, 50 and 500 NFE sit evenly, with
    /// decade ticks; a point at x <= 0 cannot be drawn and is left out.
    #[test]
    fn a_log_x_axis_spaces_equal_ratios_evenly() {
        let svg = LinePlot::new("sweep", "NFE", "FD")
            .log_x(true)
            .with(Series::new("s", vec![(0.0, 3.0), (5.0, 3.0), (50.0, 2.0), (500.0, 1.0)]))
            .to_svg();
        let t = texts(&svg);
        for label in ["5", "10", "100", "500"] {
            assert!(t.iter().any(|x| x == label), "no tick {label}: {t:?}");
        }
        let points = svg.split("points=\"").nth(1).unwrap();
        let xs: Vec<f64> = points[..points.find('"').unwrap()]
            .split(' ')
            .map(|p| p.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(xs.len(), 3, "x = 0 left out");
        assert!(((xs[1] - xs[0]) - (xs[2] - xs[1])).abs() < 0.15, "{xs:?}");
    }

    #[test]
    fn long_series_are_decimated_to_pixel_columns_keeping_extremes() {
        let pts: Vec<(f64, f64)> =
            (0..100_000).map(|i| (i as f64, if i == 51_234 { 10.0 } else { 1.0 })).collect();
        let svg = LinePlot::new("t", "x", "y").with(Series::new("s", pts)).to_svg();
        let d = svg.split("points=\"").nth(1).unwrap();
        let n = d[..d.find('"').unwrap()].split(' ').count();
        assert!((600..=2 * 636).contains(&n), "{n} points drawn");
        // The spike survives: its y is the top tick (10) of the axis.
        let ys: Vec<f64> = d[..d.find('"').unwrap()]
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(ys.iter().any(|&y| (y - 36.0).abs() < 0.2), "the spike was dropped");
    }

    #[test]
    fn empty_and_sparse_plots_still_draw() {
        let svg = LinePlot::new("eval", "step", "FD").to_svg();
        assert!(svg.contains("no data yet"));
        let svg = LinePlot::new("eval", "step", "FD")
            .with(Series::new("FD", vec![(500.0, 4.2)]).markers())
            .with(Series::new("data vs data", vec![(500.0, 3.1), (500.0, 3.1)]).dashed())
            .to_svg();
        // The lone point gets its marker; the two-point baseline is a dashed line.
        assert_eq!(svg.matches("r=\"3\"").count(), 1);
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("stroke-dasharray"));
    }

    #[test]
    fn scatter_grid_shares_column_axes_and_draws_arrows() {
        let layer = |pts: Vec<[f32; 2]>, c: &str| ("pts".to_string(), pts, c.to_string());
        let rows = vec![
            ScatterRow {
                label: "forward".into(),
                panels: vec![
                    ScatterPanel {
                        caption: "t = 0".into(),
                        layers: vec![layer(vec![[0.5, 0.5]], "#777")],
                        arrows: vec![],
                    },
                    ScatterPanel {
                        caption: "t = 9".into(),
                        layers: vec![layer(vec![[2.0, -2.0]], "#777")],
                        arrows: vec![],
                    },
                ],
            },
            ScatterRow {
                label: "reverse".into(),
                panels: vec![
                    ScatterPanel {
                        caption: "t = 0".into(),
                        layers: vec![layer(vec![[0.25, 0.0]], "#d00")],
                        arrows: vec![Arrow { from: [0.0, 0.0], delta: [0.5, 0.0] }],
                    },
                    ScatterPanel::default(),
                ],
            },
        ];
        let svg = scatter_grid_svg("roll", &rows, 1.0);
        assert_eq!(svg.matches("<g class=\"panel\"").count(), 4);
        assert_eq!(svg.matches("<g class=\"arrow\"").count(), 1);
        assert!(svg.contains(">forward<") && svg.contains(">reverse<"));
        // Column 0's limit is max(0.5 * 1.1, 1.0) = 1: the point (0.5, 0.5) sits at 3/4 across.
        // left 30 + gap 12 = 42; panel 200 px: x = 42 + 150 = 192; first row y0 = 36 + 20 = 56.
        assert!(svg.contains("cx=\"192.0\" cy=\"106.0\""), "{svg}");
        // The arrow goes from the panel centre (142, 388) a quarter panel to the right.
        assert!(svg.contains("x1=\"142.0\" y1=\"388.0\""), "{svg}");
    }
}
