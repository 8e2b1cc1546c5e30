//! Hand-written SVG line charts for the report card's loss curves: a white 640 x 400 canvas, a
//! title, x and y axes with "nice" ticks (1, 2 or 5 times a power of ten) and their labels, light
//! grid lines, one `<polyline>` per line series (a `<circle>` per point for point series, and for
//! a line series of a single point) and a legend. All text is XML-escaped.
//!
//! Points whose coordinates are NaN, infinite or beyond +-1e300 are skipped; an empty chart gets
//! the axes of [0, 1] and a "no data" note; a constant series gets a range padded around its
//! value. Line series longer than [`MAX_POINTS`] are thinned to every k-th point (plus the last).

use std::fmt::Write as _;

/// One series of a chart.
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// Its name in the legend.
    pub label: &'a str,
    /// (x, y) points, in drawing order.
    pub points: &'a [(f64, f64)],
    /// An SVG colour (`#1f77b4`, `red`).
    pub color: &'a str,
    /// `true`: a polyline through the points; `false`: one circle per point.
    pub line: bool,
}

/// The most points a line series draws; longer ones are thinned.
pub const MAX_POINTS: usize = 2000;

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// Escapes `&`, `<`, `>`, `"` and `'` for SVG text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn usable(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite() && p.0.abs() <= 1e300 && p.1.abs() <= 1e300
}

/// The axis range and its ticks for values from `lo` to `hi` (`None`: no values).
fn axis(bounds: Option<(f64, f64)>) -> (f64, f64, Vec<f64>) {
    let (mut lo, mut hi) = bounds.unwrap_or((0.0, 1.0));
    if hi <= lo {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let step = mag
        * if f < 1.5 {
            1.0
        } else if f < 3.0 {
            2.0
        } else if f < 7.0 {
            5.0
        } else {
            10.0
        };
    if !(step.is_finite() && step > 0.0) {
        return (lo, hi, vec![lo, hi]);
    }
    let (a, b) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let mut ticks = Vec::new();
    let mut i = 0.0;
    while ticks.len() < 50 {
        let t = a + i * step;
        if t > b + step * 1e-6 {
            break;
        }
        ticks.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        i += 1.0;
    }
    if ticks.len() < 2 || b.partial_cmp(&a) != Some(std::cmp::Ordering::Greater) {
        return (lo, hi, vec![lo, hi]);
    }
    (a, b, ticks)
}

/// A tick label: as many decimals as the step needs, or scientific notation for very large or
/// very small steps.
fn tick_label(v: f64, step: f64) -> String {
    let big = v.abs().max(step.abs());
    if step.abs() >= 1e-4 && big < 1e7 {
        let decimals = (-step.abs().log10().floor()).clamp(0.0, 10.0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.2e}")
    }
}

fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let stride = points.len().div_ceil(MAX_POINTS);
    let last = *points.last().unwrap();
    let mut out: Vec<_> = points.into_iter().step_by(stride).collect();
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Draws `series` on one pair of axes; returns the SVG document.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let clean: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            let pts: Vec<_> = s.points.iter().copied().filter(usable).collect();
            if s.line {
                thin(pts)
            } else {
                pts
            }
        })
        .collect();
    let all = || clean.iter().flatten();
    let (x0, x1, xt) = axis(bounds(all().map(|p| p.0)));
    let (y0, y1, yt) = axis(bounds(all().map(|p| p.1)));
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let py = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="{W}" height="{H}" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"##,
        W / 2.0,
        escape(title)
    );
    // Grid lines and tick labels.
    s.push_str("<g stroke=\"#e0e0e0\" stroke-width=\"1\">\n");
    for &t in &xt {
        let x = px(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"/>"##,
            TOP + ph
        );
    }
    for &t in &yt {
        let y = py(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/>"##,
            LEFT + pw
        );
    }
    s.push_str("</g>\n<g fill=\"#333\">\n");
    let xstep = if xt.len() > 1 { xt[1] - xt[0] } else { 1.0 };
    let ystep = if yt.len() > 1 { yt[1] - yt[0] } else { 1.0 };
    for &t in &xt {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            px(t),
            TOP + ph + 16.0,
            escape(&tick_label(t, xstep))
        );
    }
    for &t in &yt {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            py(t) + 4.0,
            escape(&tick_label(t, ystep))
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
        LEFT + pw / 2.0,
        H - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r##"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"##,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(y_label)
    );
    s.push_str("</g>\n");
    // Axes.
    let _ = writeln!(
        s,
        r##"<path d="M{LEFT} {TOP} V{:.1} H{:.1}" fill="none" stroke="#333" stroke-width="1"/>"##,
        TOP + ph,
        LEFT + pw
    );
    // Data.
    for (ser, pts) in series.iter().zip(&clean) {
        let color = escape(ser.color);
        if ser.line && !pts.is_empty() {
            let coords: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                s,
                r##"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"##,
                coords.join(" ")
            );
        }
        if !ser.line || pts.len() == 1 {
            for &(x, y) in pts {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"##,
                    px(x),
                    py(y)
                );
            }
        }
    }
    if clean.iter().all(Vec::is_empty) {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888">no data</text>"##,
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }
    // Legend, top right.
    for (i, ser) in series.iter().enumerate() {
        let y = TOP + 14.0 + 16.0 * i as f64;
        let x = LEFT + pw - 120.0;
        let _ = writeln!(
            s,
            r##"<rect x="{x:.1}" y="{:.1}" width="12" height="4" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            y - 6.0,
            escape(ser.color),
            x + 18.0,
            y,
            escape(ser.label)
        );
    }
    s.push_str("</svg>\n");
    s
}
