//! Hand-written SVG charts: grouped bars and simple line plots, enough to see a latency
//! comparison at a glance without pulling a plotting crate into the workspace.

use std::fmt::Write;

const W: f64 = 760.0;
const H: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;
const COLORS: [&str; 6] = [
    "#d9480f", "#1971c2", "#f08c00", "#2f9e44", "#7048e8", "#495057",
];

/// A named series of values.
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// Bars grouped by `groups` (x axis), one bar per series in each group, value printed on top.
pub fn grouped_bars(title: &str, y_label: &str, groups: &[String], series: &[Series]) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let mut svg = header(title);
    axes(&mut svg, y_label, top);
    let plot_w = W - LEFT - RIGHT;
    let group_w = plot_w / groups.len().max(1) as f64;
    let bar_w = (group_w * 0.8) / series.len().max(1) as f64;
    for (g, group) in groups.iter().enumerate() {
        let gx = LEFT + g as f64 * group_w;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            gx + group_w / 2.0,
            H - BOTTOM + 18.0,
            esc(group)
        );
        for (i, s) in series.iter().enumerate() {
            let v = s.values.get(g).copied().unwrap_or(f64::NAN);
            if !v.is_finite() {
                continue;
            }
            let h = (v / top) * (H - TOP - BOTTOM);
            let x = gx + group_w * 0.1 + i as f64 * bar_w;
            let y = H - BOTTOM - h;
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                bar_w * 0.92,
                COLORS[i % COLORS.len()],
                esc(&s.name),
                fmt_value(v)
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                x + bar_w * 0.46,
                y - 3.0,
                fmt_value(v)
            );
        }
    }
    legend(&mut svg, series.iter().map(|s| s.name.as_str()));
    svg.push_str("</svg>\n");
    svg
}

/// Lines through `(x, y)` points, linear axes starting at 0.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let pts = || series.iter().flat_map(|(_, p)| p.iter().copied());
    let x_max = nice_ceiling(pts().map(|p| p.0).fold(0.0, f64::max));
    let y_max = nice_ceiling(pts().map(|p| p.1).fold(0.0, f64::max));
    let mut svg = header(title);
    axes(&mut svg, y_label, y_max);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    for i in 0..=5 {
        let v = x_max * f64::from(i) / 5.0;
        let x = LEFT + plot_w * f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            H - BOTTOM + 18.0,
            fmt_value(v)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        H - BOTTOM + 40.0,
        esc(x_label)
    );
    for (i, (_, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    LEFT + x / x_max * plot_w,
                    H - BOTTOM - y / y_max * plot_h
                )
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            COLORS[i % COLORS.len()],
            path.join(" ")
        );
    }
    legend(&mut svg, series.iter().map(|(n, _)| n.as_str()));
    svg.push_str("</svg>\n");
    svg
}

fn header(title: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{:.1}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
"#,
        W / 2.0,
        esc(title)
    )
}

fn axes(svg: &mut String, y_label: &str, top: f64) {
    let plot_h = H - TOP - BOTTOM;
    for i in 0..=5 {
        let v = top * f64::from(i) / 5.0;
        let y = H - BOTTOM - plot_h * f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e9ecef"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_value(v)
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#343a40"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#343a40"/>"##,
        H - BOTTOM,
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        esc(y_label)
    );
}

fn legend<'a>(svg: &mut String, names: impl Iterator<Item = &'a str>) {
    let mut x = LEFT;
    let y = H - 14.0;
    for (i, name) in names.enumerate() {
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            y - 10.0,
            COLORS[i % COLORS.len()],
            x + 16.0,
            esc(name)
        );
        x += 24.0 + 7.0 * name.len() as f64;
    }
}

/// A round number at or above `v` (1, 2 or 5 times a power of ten).
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed() {
        let svg = grouped_bars(
            "latency <p99>",
            "µs",
            &["p50".into(), "p99".into()],
            &[
                Series {
                    name: "sling".into(),
                    values: vec![80.0, 250.0],
                },
                Series {
                    name: "nginx".into(),
                    values: vec![90.0, f64::NAN],
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("&lt;p99&gt;"));
        assert_eq!(svg.matches("<rect x=").count(), 3 + 2); // 3 bars + 2 legend keys
        let l = lines(
            "t",
            "x",
            "y",
            &[("a".into(), vec![(0.0, 1.0), (50.0, 3.0)])],
        );
        assert!(l.contains("<polyline"));
        assert_eq!(nice_ceiling(730.0), 1000.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }
}
