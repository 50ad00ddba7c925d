//! The run report, built from fake run directories (a digits-like image run and a 2-D run):
//! its content and self-containedness, and what a real browser makes of it — headless
//! Chromium's DOM after load (every plot laid out, every `<img>` decoded at its natural size)
//! and a screenshot (the expected size, not blank, the plot and grid colours on it).

use base64::Engine as _;
use ddpm_train::metrics::MetricsLine;
use ddpm_train::{EvalLine, RunConfig, write_report};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The run's sample grids: 16 digits-sized images, 4 per row, scale 8, pad 2: 266 x 266.
/// Four 64-pixel cells and five 11-pixel gutters (a sixth of a cell, see `viz::gutter`).
const GRID_PX: u32 = 4 * 64 + 5 * 11;
const GRID_STEPS: [u64; 4] = [500, 1000, 1500, 2000];

fn digits_config(name: &str) -> RunConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/digits.toml");
    let mut c = RunConfig::load(&path).expect("configs/digits.toml");
    c.name = name.into();
    // The fake runs end at step 2000, whatever the default job's length.
    c.train.total_steps = 2000;
    c
}

fn metrics_line(step: u64) -> MetricsLine {
    let loss = 0.03 + 0.5 * (-(step as f64) / 300.0).exp();
    MetricsLine {
        step,
        loss,
        // An empty quartile at step 300 (written as null) must not lose the line.
        loss_by_t_quartile: [
            4.0 * loss,
            if step == 300 { f64::NAN } else { 1.2 * loss },
            0.6 * loss,
            0.2 * loss,
        ],
        grad_norm: 0.2 + 3.0 * (-(step as f64) / 150.0).exp(),
        lr: 1e-3 * (step as f64 / 200.0).min(1.0),
        images_per_s: 480.0 + (step % 300) as f64 / 10.0,
        elapsed_s: step as f64 * 0.26,
    }
}

fn write_lines<T: serde::Serialize>(path: &Path, lines: &[T]) {
    let text: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
    std::fs::write(path, text).unwrap();
}

/// A digits-like run directory at step 2000 of 2000.
fn fake_image_run(root: &Path) -> PathBuf {
    let dir = root.join("fakedigits");
    std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
    std::fs::write(dir.join("config.toml"), digits_config("fakedigits").to_toml()).unwrap();
    let lines: Vec<MetricsLine> = (1..=20).map(|i| metrics_line(100 * i)).collect();
    write_lines(&dir.join("metrics.jsonl"), &lines);
    let evals: Vec<EvalLine> = GRID_STEPS
        .iter()
        .zip([9.1, 6.0, 4.8, 4.1])
        .map(|(&s, v)| {
            let mut e = EvalLine::new(s, "digits_fd", v);
            e.baseline = Some(3.18);
            e.samples = Some(898);
            e.sampler = Some("ddim".into());
            e.sampler_steps = Some(50);
            e.seconds = Some(12.5);
            e
        })
        .collect();
    write_lines(&dir.join("eval.jsonl"), &evals);
    for (k, step) in GRID_STEPS.iter().enumerate() {
        // Strokes sharpen over training: noise blended with a bar pattern.
        let imgs: Vec<f32> = (0..16 * 64)
            .map(|i| {
                let bar = if (i % 8) / 2 == 1 || (i / 8) % 8 == 5 { 1.0 } else { -1.0 };
                let noise = ((i * 7919 + k * 104729) % 200) as f32 / 100.0 - 1.0;
                let a = (k + 1) as f32 / 4.0;
                a * bar + (1.0 - a) * noise
            })
            .collect();
        let p = dir.join(format!("samples/step-{step:09}.png"));
        ddpm_viz::save_image_grid(&p, &imgs, [16, 1, 8, 8], 4, 8, 2).unwrap();
    }
    for s in [1500u64, 2000] {
        std::fs::write(dir.join(format!("checkpoints/ckpt-{s:09}.safetensors")), b"x").unwrap();
    }
    std::fs::write(dir.join("checkpoints/best.safetensors"), b"x").unwrap();
    dir
}

/// A 2-D run halfway through, with SVG previews and no evaluation yet.
fn fake_points_run(root: &Path) -> PathBuf {
    let dir = root.join("fakeroll");
    std::fs::create_dir_all(&dir).unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/swissroll.toml");
    let mut c = RunConfig::load(&path).unwrap();
    c.name = "fakeroll".into();
    std::fs::write(dir.join("config.toml"), c.to_toml()).unwrap();
    let lines: Vec<MetricsLine> = (1..=10).map(|i| metrics_line(200 * i)).collect();
    write_lines(&dir.join("metrics.jsonl"), &lines);
    let pts: Vec<[f32; 2]> = (0..300)
        .map(|i| i as f32 * 0.05)
        .map(|t| [t.cos() * t / 15.0, t.sin() * t / 15.0])
        .collect();
    ddpm_viz::scatter_panels_svg(
        &dir.join("samples/step-000002000.svg"),
        "fakeroll at step 2000",
        &[("EMA samples".into(), vec![("samples".into(), pts, "#d62728".into())])],
        1.0,
    )
    .unwrap();
    dir
}

/// The `data:` URIs of the page's `<img>` elements: (mime, bytes).
fn data_uris(html: &str) -> Vec<(String, Vec<u8>)> {
    html.split("<img src=\"data:")
        .skip(1)
        .map(|rest| {
            let uri = &rest[..rest.find('"').unwrap()];
            let (mime, b64) = uri.split_once(";base64,").unwrap();
            (mime.to_string(), base64::engine::general_purpose::STANDARD.decode(b64).unwrap())
        })
        .collect()
}

#[test]
fn the_report_is_one_self_contained_page_with_every_part() {
    let root = ddpm_testkit::temp_dir("report-content");
    let dir = fake_image_run(&root);
    let path = write_report(&ddpm_run::RunDir::new(&dir)).unwrap();
    assert_eq!(path, dir.join("report.html"));
    let html = std::fs::read_to_string(&path).unwrap();
    // Self-contained: no script, nothing fetched.
    for bad in ["<script", "http://", "https://", "<link", "url(", "@import"] {
        assert!(!html.contains(bad), "the report contains {bad:?}");
    }
    // Every plot, with its series: loss has the mean and four t-quartile curves.
    for id in ["plot-loss", "plot-eval-digits_fd", "plot-grad-norm", "plot-lr", "plot-throughput"] {
        assert!(html.contains(&format!("<figure id=\"{id}\"><svg")), "missing {id}");
    }
    let loss = &html[html.find("id=\"plot-loss\"").unwrap()..];
    let loss = &loss[..loss.find("</figure>").unwrap()];
    assert_eq!(loss.matches("<polyline").count(), 5);
    for label in ["mean over t", "t in [0, T/4)", "t in [3T/4, T)", "0.01", "2000"] {
        assert!(loss.contains(&format!(">{label}<")), "loss plot lacks {label:?}");
    }
    // Every curve has its 20 points, but the second quartile's misses the empty one at step 300.
    let counts: Vec<usize> = loss
        .split("<polyline")
        .skip(1)
        .map(|p| {
            let p = &p[p.find("points=\"").unwrap() + 8..];
            p[..p.find('"').unwrap()].split(' ').count()
        })
        .collect();
    assert_eq!(counts, [20, 20, 19, 20, 20]);
    let eval = &html[html.find("id=\"plot-eval-digits_fd\"").unwrap()..];
    assert!(eval[..eval.find("</figure>").unwrap()].contains(">data vs data<"));
    // The sample grids, newest first, each a PNG of the grid's size that decodes.
    let uris = data_uris(&html);
    assert_eq!(uris.len(), GRID_STEPS.len());
    for (mime, bytes) in &uris {
        assert_eq!(mime, "image/png");
        let img = image::load_from_memory(bytes).unwrap();
        assert_eq!((img.width(), img.height()), (GRID_PX, GRID_PX));
    }
    let first = std::fs::read(dir.join("samples/step-000002000.png")).unwrap();
    assert_eq!(uris[0].1, first, "the latest grid comes first");
    assert!(html.contains("<figcaption>step 2000 (latest)</figcaption>"));
    // The numbers: step, last loss, latest distance with its ratio to the data's, checkpoints.
    assert!(html.contains(">2000</div><div class=\"n\">finished<"));
    assert!(
        html.contains(">4.100</div><div class=\"n\">at step 2000; data vs data 3.180 (1.29x)<")
    );
    assert!(html.contains(">step 2000</div><div class=\"n\">2 kept, and best.safetensors<"));
    // The config, escaped, and the evaluation table.
    assert!(
        html.contains("name = &quot;fakedigits&quot;") || html.contains("name = \"fakedigits\"")
    );
    assert!(html.contains("<td>ddim, 50 steps</td>"));
    // Rewriting gives the same bytes (no clock in the page) and leaves no temporary file.
    write_report(&ddpm_run::RunDir::new(&dir)).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), html);
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // A 2-D run embeds its SVG previews, and an empty evaluation plot says so.
    let roll = fake_points_run(&root);
    let html =
        std::fs::read_to_string(write_report(&ddpm_run::RunDir::new(&roll)).unwrap()).unwrap();
    let uris = data_uris(&html);
    assert_eq!(uris.len(), 1);
    assert_eq!(uris[0].0, "image/svg+xml");
    assert!(String::from_utf8_lossy(&uris[0].1).starts_with("<svg"));
    assert!(html.contains("no data yet"));
    assert!(html.contains("of 4000 (50 %)"));
    std::fs::remove_dir_all(&root).unwrap();
}

/// Chromium, found as `cargo xtask setup` finds it; a missing browser fails the test with the
/// command that installs it.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("DDPM_CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "DDPM_CHROMIUM={} is not a file", p.display());
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"] {
        if let Some(p) = std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()) {
            return p;
        }
    }
    panic!(
        "Chromium is missing: run `cargo xtask setup` (as root it runs `apt-get install -y \
         chromium`), or `sudo apt-get install -y chromium`, or set DDPM_CHROMIUM to a Chromium \
         or Chrome binary"
    );
}

/// Runs headless Chromium on `page` with `args`, with the flags that keep it off the network.
fn headless(page: &Path, args: &[String]) -> String {
    let profile = ddpm_testkit::temp_dir("chromium-profile");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Measures the page after load, in the browser, into `<pre id="ddpm-check">`: every image's
/// load state and natural size, every plot's laid-out size and line count.
const CHECK: &str = r#"<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({
    alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
    shown: i.getBoundingClientRect().width }));
  const plots = [...document.querySelectorAll('#plots figure')].map(f => {
    const s = f.querySelector('svg'); const r = s.getBoundingClientRect();
    return { id: f.id, w: r.width, h: r.height, lines: s.querySelectorAll('polyline').length };
  });
  const pre = document.createElement('pre');
  pre.id = 'ddpm-check';
  pre.textContent = JSON.stringify({ imgs, plots });
  document.body.appendChild(pre);
});
</script>"#;

fn browser_check(report: &Path) -> serde_json::Value {
    let html = std::fs::read_to_string(report).unwrap();
    let page = report.with_file_name("report-check.html");
    std::fs::write(&page, html.replace("</body>", &format!("{CHECK}</body>"))).unwrap();
    let dom = headless(
        &page,
        &[
            "--virtual-time-budget=10000".into(),
            "--window-size=1280,2400".into(),
            "--dump-dom".into(),
        ],
    );
    let start = dom.find("<pre id=\"ddpm-check\">").expect("the check ran after load") + 21;
    let text = &dom[start..start + dom[start..].find("</pre>").unwrap()];
    let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
#[ignore = "needs Chromium: run `cargo xtask setup`, then `cargo xtask test`"]
fn chromium_renders_every_plot_and_image_of_the_report() {
    let root = ddpm_testkit::temp_dir("report-browser");
    let dir = fake_image_run(&root);
    let report = write_report(&ddpm_run::RunDir::new(&dir)).unwrap();
    let check = browser_check(&report);
    let imgs = check["imgs"].as_array().unwrap();
    assert_eq!(imgs.len(), GRID_STEPS.len(), "{check}");
    for (k, img) in imgs.iter().enumerate() {
        assert_eq!(img["complete"], true, "{img}");
        assert_eq!(img["w"].as_u64(), Some(GRID_PX as u64), "broken or resized image: {img}");
        assert_eq!(img["h"].as_u64(), Some(GRID_PX as u64), "{img}");
        // Shown at integer scales: the latest at 2x, the earlier ones at 1x.
        let shown = if k == 0 { 2 * GRID_PX } else { GRID_PX };
        assert_eq!(img["shown"].as_f64(), Some(shown as f64), "{img}");
    }
    let plots = check["plots"].as_array().unwrap();
    let ids: Vec<&str> = plots.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["plot-loss", "plot-eval-digits_fd", "plot-grad-norm", "plot-lr", "plot-throughput"]
    );
    for (p, lines) in plots.iter().zip([5, 2, 1, 1, 1]) {
        assert!(p["w"].as_f64().unwrap() > 500.0 && p["h"].as_f64().unwrap() > 250.0, "{p}");
        assert_eq!(p["lines"].as_u64(), Some(lines), "{p}");
    }

    // The page itself, without the check script: a screenshot of the window's size that shows
    // the plots' colours and the grids' grey gutter on the page's background.
    let shot = root.join("report.png");
    headless(
        &report,
        &[
            "--virtual-time-budget=10000".into(),
            "--window-size=1280,2400".into(),
            format!("--screenshot={}", shot.display()),
        ],
    );
    let img = image::open(&shot).expect("a PNG screenshot").to_rgb8();
    assert_eq!(img.dimensions(), (1280, 2400));
    let n = (1280 * 2400) as f64;
    let count = |f: &dyn Fn([u8; 3]) -> bool| img.pixels().filter(|p| f(p.0)).count();
    let background = count(&|[r, g, b]| r == 0xf6 && g == 0xf6 && b == 0xf4) as f64 / n;
    let white = count(&|p| p == [255; 3]) as f64 / n;
    assert!(background + white < 0.97, "blank screenshot: {background} background, {white} white");
    // Lines are anti-aliased: count pixels of the curves' hue rather than their exact colour.
    let red = count(&|[r, g, b]| r > 150 && g < 100 && b < 100);
    let green = count(&|[r, g, b]| g > 120 && r < 100 && b < 100);
    assert!(red > 300, "no loss curve (#d62728) on the screenshot: {red} red pixels");
    assert!(green > 100, "no evaluation curve (#2ca02c) on the screenshot: {green} green pixels");
    let gutter = count(&|p| p == [128; 3]);
    assert!(gutter > 1000, "no grid gutter on the screenshot: {gutter} grey pixels");
    let mut colors: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    colors.sort_unstable();
    colors.dedup();
    assert!(colors.len() > 100, "only {} colours", colors.len());

    // A 2-D run's SVG previews decode as images too.
    let roll = fake_points_run(&root);
    let check = browser_check(&write_report(&ddpm_run::RunDir::new(&roll)).unwrap());
    let imgs = check["imgs"].as_array().unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0]["complete"], true);
    assert!(imgs[0]["w"].as_u64().unwrap() > 200, "{check}");
    std::fs::remove_dir_all(&root).unwrap();
}
