//! Pictures: image grids as PNG, and plots (loss curves, 2-D point sets) as SVG.
//! Every file is written atomically (temporary file + rename), so a viewer never sees half a file.

use std::fmt::Write as _;
use std::path::Path;

/// One channel value in [-1, 1] to 8 bits: round((x + 1) 127.5), clamped.
pub fn to_u8(x: f32) -> u8 {
    ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

use ddpm_io::write_atomic;

fn encode_png(width: u32, height: u32, channels: usize, pixels: &[u8]) -> std::io::Result<Vec<u8>> {
    use image::ImageEncoder;
    let color =
        if channels == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(pixels, width, height, color)
        .map_err(std::io::Error::other)?;
    Ok(out)
}

/// Saves `n` images (N x C x H x W floats in [-1, 1], C = 1 or 3) as one grid PNG with `nrow`
/// images per row, each pixel repeated `scale` times, separated by `pad` black pixels.
pub fn save_image_grid(
    path: &Path,
    images: &[f32],
    shape: [usize; 4],
    nrow: usize,
    scale: usize,
    pad: usize,
) -> std::io::Result<()> {
    let [n, c, h, w] = shape;
    assert!(c == 1 || c == 3, "grids take 1 or 3 channels, got {c}");
    assert_eq!(images.len(), n * c * h * w, "image buffer does not match its shape");
    let nrow = nrow.max(1).min(n.max(1));
    let rows = n.div_ceil(nrow);
    let (ch, cw) = (h * scale, w * scale);
    let gw = nrow * cw + (nrow + 1) * pad;
    let gh = rows * ch + (rows + 1) * pad;
    let mut px = vec![0u8; gw * gh * c];
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
    write_atomic(path, &encode_png(gw as u32, gh as u32, c, &px)?)
}

/// Saves one image (C x H x W floats in [-1, 1]) as a PNG at its own resolution.
pub fn save_image(path: &Path, image: &[f32], c: usize, h: usize, w: usize) -> std::io::Result<()> {
    save_image_grid(path, image, [1, c, h, w], 1, 1, 0)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Axis-aligned bounds with a margin, never empty.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let m = 0.05 * (hi - lo);
    (lo - m, hi + m)
}

/// A line plot (several named series over a shared x axis) as SVG, optionally with a log y axis.
pub fn line_plot_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    log_y: bool,
) -> std::io::Result<()> {
    const COLORS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
    let (w, h, ml, mr, mt, mb) = (720.0, 420.0, 70.0, 20.0, 40.0, 50.0);
    let fy = |y: f64| if log_y { y.max(1e-30).log10() } else { y };
    let (x0, x1) = bounds(series.iter().flat_map(|(_, s)| s.iter().map(|p| p.0)));
    let (y0, y1) = bounds(series.iter().flat_map(|(_, s)| s.iter().map(|p| fy(p.1))));
    let sx = |x: f64| ml + (x - x0) / (x1 - x0) * (w - ml - mr);
    let sy = |y: f64| mt + (1.0 - (fy(y) - y0) / (y1 - y0)) * (h - mt - mb);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
        w / 2.0,
        esc(title)
    );
    let _ = write!(
        s,
        "<line x1=\"{ml}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\
         <line x1=\"{ml}\" y1=\"{mt}\" x2=\"{ml}\" y2=\"{}\" stroke=\"black\"/>",
        h - mb,
        w - mr,
        h - mb,
        h - mb
    );
    for i in 0..=4 {
        let fx = x0 + (x1 - x0) * i as f64 / 4.0;
        let fyv = y0 + (y1 - y0) * i as f64 / 4.0;
        let yv = if log_y { 10f64.powf(fyv) } else { fyv };
        let px = ml + (w - ml - mr) * i as f64 / 4.0;
        let py = h - mb - (h - mt - mb) * i as f64 / 4.0;
        let _ = write!(
            s,
            "<text x=\"{px}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <line x1=\"{ml}\" y1=\"{py}\" x2=\"{}\" y2=\"{py}\" stroke=\"#ddd\"/>",
            h - mb + 18.0,
            fmt_num(fx),
            ml - 6.0,
            py + 4.0,
            fmt_num(yv),
            w - mr
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>",
        (ml + w - mr) / 2.0,
        h - 12.0,
        esc(x_label),
        (mt + h - mb) / 2.0,
        (mt + h - mb) / 2.0,
        esc(y_label)
    );
    for (k, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let d: Vec<String> = pts
            .iter()
            .filter(|p| p.0.is_finite() && fy(p.1).is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if !d.is_empty() {
            let _ = write!(
                s,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
                d.join(" ")
            );
        }
        let ly = mt + 14.0 + 16.0 * k as f64;
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            w - mr - 150.0,
            ly - 4.0,
            w - mr - 132.0,
            ly,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    write_atomic(path, s.as_bytes())
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e5 || v.abs() < 1e-2 {
        format!("{v:.2e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// One layer of a scatter panel: (label, points, colour).
pub type Layer = (String, Vec<[f32; 2]>, String);
/// A scatter panel: (caption, layers).
pub type Panel = (String, Vec<Layer>);

/// Panels of 2-D point sets side by side as SVG (e.g. the swiss roll at several t), each panel
/// a list of (label, points as x,y pairs, color) layers sharing the panel's axes. Each panel
/// shows [-L, L]^2 with L the 99th percentile of its |coordinates| (at least `min_limit`) plus 10 %.
pub fn scatter_panels_svg(
    path: &Path,
    title: &str,
    panels: &[Panel],
    min_limit: f64,
) -> std::io::Result<()> {
    let size = 220.0;
    let gap = 12.0;
    let top = 50.0;
    let w = gap + panels.len() as f64 * (size + gap);
    let h = top + size + 40.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
        w / 2.0,
        esc(title)
    );
    for (i, (caption, layers)) in panels.iter().enumerate() {
        let mut mags: Vec<f64> = layers
            .iter()
            .flat_map(|l| l.1.iter().map(|p| p[0].abs().max(p[1].abs()) as f64))
            .filter(|v| v.is_finite())
            .collect();
        mags.sort_by(f64::total_cmp);
        let p99 =
            mags.get((mags.len() as f64 * 0.99) as usize).or(mags.last()).copied().unwrap_or(1.0);
        let limit = (p99 * 1.1).max(min_limit);
        let x0 = gap + i as f64 * (size + gap);
        let _ = write!(
            s,
            "<rect x=\"{x0}\" y=\"{top}\" width=\"{size}\" height=\"{size}\" fill=\"none\" stroke=\"#888\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x0 + size / 2.0,
            top - 6.0,
            esc(caption)
        );
        for (_, pts, color) in layers {
            for p in pts {
                let (px, py) = (p[0] as f64, p[1] as f64);
                if px.abs() > limit || py.abs() > limit {
                    continue;
                }
                let cx = x0 + (px + limit) / (2.0 * limit) * size;
                let cy = top + (1.0 - (py + limit) / (2.0 * limit)) * size;
                let _ = write!(
                    s,
                    "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"1\" fill=\"{color}\" fill-opacity=\"0.5\"/>"
                );
            }
        }
    }
    let legend: Vec<(String, String)> = panels
        .first()
        .map(|(_, layers)| layers.iter().map(|(l, _, c)| (l.clone(), c.clone())).collect())
        .unwrap_or_default();
    for (k, (label, color)) in legend.iter().enumerate() {
        let lx = gap + 150.0 * k as f64;
        let _ = write!(
            s,
            "<circle cx=\"{}\" cy=\"{}\" r=\"4\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            lx + 4.0,
            h - 16.0,
            lx + 12.0,
            h - 12.0,
            esc(label)
        );
    }
    s.push_str("</svg>\n");
    write_atomic(path, s.as_bytes())
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
    fn grid_has_the_expected_size_and_pixels() {
        let dir = std::env::temp_dir().join(format!("ddpm-viz-{}", std::process::id()));
        let path = dir.join("g.png");
        // Two 1x2x2 images: all -1 and all +1; 2 per row, scale 3, pad 1.
        let mut imgs = vec![-1.0f32; 4];
        imgs.extend([1.0f32; 4]);
        save_image_grid(&path, &imgs, [2, 1, 2, 2], 2, 3, 1).unwrap();
        let g = image::open(&path).unwrap().to_luma8();
        assert_eq!(g.dimensions(), (2 * 6 + 3, 6 + 2));
        assert_eq!(g.get_pixel(1, 1).0[0], 0);
        assert_eq!(g.get_pixel(8, 1).0[0], 255);
        assert_eq!(g.get_pixel(7, 1).0[0], 0, "padding is black");
        let svg = dir.join("p.svg");
        line_plot_svg(
            &svg,
            "loss",
            "step",
            "loss",
            &[("loss", vec![(0.0, 1.0), (10.0, 0.1)])],
            true,
        )
        .unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg") && text.contains("polyline"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
