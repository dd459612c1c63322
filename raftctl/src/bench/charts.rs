//! The pictures of a run, written as SVG beside `report.json` by
//! `--out DIR` (drawn with `plotters`' SVG backend; text is left to the
//! viewer's sans-serif font):
//!
//! - `ack-latency.svg`, `seen-latency.svg`: the set→ack and
//!   set→seen-by-another-client latency distributions as percentile
//!   curves (x: percentile on a "nines" scale, 25% to 99.99%; y: ms, log
//!   scale), one curve per phase of a `throughput` sweep;
//! - `acked-per-second.svg`: acknowledged sets per second over the
//!   measured phase (one line per sweep phase; the timeline's 250 ms
//!   rates averaged over [`SMOOTH_S`], as the workers' 250 ms reports
//!   alias), with the events of the
//!   run on the timeline: each kill (`failover`, `restart`), each restart
//!   and the moment the restarted node served again (`restart`), and
//!   each leader change the election watch saw, spurious ones apart.
//!
//! A chart whose series are all empty is still written, with a note
//! saying there were no samples, so a run that measured nothing (a dead
//! shard, zero clients) says so in the picture instead of failing.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::elections::ChangeKind;
use super::latency::{CurvePoint, LatencySummary};
use super::report::Report;
use super::timeline::RatePoint;

/// Chart size in pixels.
const SIZE: (u32, u32) = (900, 480);
/// The font family of every text.
const FONT: &str = "sans-serif";
/// The rates drawn are averages over this many seconds.
pub const SMOOTH_S: f64 = 1.0;
/// The minor grid lines.
const LIGHT: RGBColor = RGBColor(238, 238, 238);

/// One line: a label and its points.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// `(x, y)` points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// What a timeline marker stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// A kill -9.
    Kill,
    /// A killed node started again.
    Restart,
    /// The restarted node served again (ready, read answered, caught up).
    Serving,
    /// A leader change a kill explains.
    LeaderChange,
    /// A leader change no kill explains.
    SpuriousLeaderChange,
}

impl MarkerKind {
    fn legend(self) -> &'static str {
        match self {
            MarkerKind::Kill => "kill -9",
            MarkerKind::Restart => "restart",
            MarkerKind::Serving => "serving again",
            MarkerKind::LeaderChange => "leader change (after a kill)",
            MarkerKind::SpuriousLeaderChange => "spurious leader change",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            MarkerKind::Kill => RGBColor(200, 30, 30),
            MarkerKind::Restart => RGBColor(30, 140, 60),
            MarkerKind::Serving => RGBColor(20, 90, 200),
            MarkerKind::LeaderChange => RGBColor(230, 140, 0),
            MarkerKind::SpuriousLeaderChange => RGBColor(150, 0, 150),
        }
    }

    /// Vertical lines across the chart, or small triangles on the x axis.
    fn is_line(self) -> bool {
        matches!(
            self,
            MarkerKind::Kill | MarkerKind::Restart | MarkerKind::Serving
        )
    }
}

/// An event on a timeline.
#[derive(Debug, Clone)]
pub struct Marker {
    /// Seconds into the phase.
    pub at_s: f64,
    /// What happened.
    pub kind: MarkerKind,
    /// Short text beside a line marker (e.g. the node).
    pub label: String,
}

/// The curves are drawn from this percentile on: below it (the minimum
/// above all) single odd samples would stretch the log axis by decades.
const FROM_PERCENTILE: f64 = 25.0;

/// A percentile curve as chart points: x in nines (`-log10(1 - q)`),
/// from [`FROM_PERCENTILE`].
fn nines(curve: &[CurvePoint]) -> Vec<(f64, f64)> {
    curve
        .iter()
        .filter(|p| (FROM_PERCENTILE..100.0).contains(&p.percentile))
        .map(|p| (-(1.0 - p.percentile / 100.0).log10(), p.ms.max(0.001)))
        .collect()
}

/// The percentile a "nines" x stands for, as a label (1 → `90%`).
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let digits = (x - 2.0).ceil().clamp(0.0, 4.0) as usize;
    format!("{p:.digits$}%")
}

/// A number for an axis label, without needless digits.
fn short(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{:.1}", v).trim_end_matches(".0").into()
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .into()
    }
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

/// Draws the "nothing to draw" note in the middle of `area`.
fn empty_note(area: &DrawingArea<SVGBackend, Shift>, title: &str, what: &str) -> Result<()> {
    area.fill(&WHITE)?;
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        title.to_string(),
        (20, 20),
        (FONT, 20).into_font(),
    ))?;
    area.draw(&Text::new(
        format!("no samples: {what}"),
        (w as i32 / 2 - 150, h as i32 / 2),
        (FONT, 18).into_font(),
    ))?;
    Ok(())
}

/// The series with points, and a note naming those without.
fn split_empty(series: &[Series]) -> (Vec<&Series>, Option<String>) {
    let (full, empty): (Vec<&Series>, Vec<&Series>) =
        series.iter().partition(|s| !s.points.is_empty());
    let note = (!empty.is_empty()).then(|| {
        format!(
            "no samples: {}",
            empty
                .iter()
                .map(|s| s.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    (full, note)
}

/// A percentile-curve chart of latency `series` (points from
/// [`LatencySummary::curve`] through [`nines`]).
pub fn latency_svg(title: &str, series: &[Series]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let (full, note) = split_empty(series);
        if full.is_empty() {
            empty_note(&root, title, "no latency was recorded")?;
            root.present()?;
            drop(root);
            return Ok(svg);
        }
        root.fill(&WHITE)?;
        let points = full.iter().flat_map(|s| s.points.iter());
        let x_max = points.clone().map(|p| p.0).fold(2.0, f64::max).ceil();
        let y_min = points.clone().map(|p| p.1).fold(f64::MAX, f64::min);
        let y_max = points.map(|p| p.1).fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 24))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..x_max, (y_min * 0.8..y_max * 1.25).log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(LIGHT)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_desc("percentile")
            .y_desc("latency, ms (log scale)")
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| short(*y))
            .draw()?;
        for (i, s) in full.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 16))
            .draw()?;
        if let Some(note) = note {
            root.draw(&Text::new(note, (80, SIZE.1 as i32 - 14), (FONT, 12)))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// A rate-over-time chart of `series` (x: seconds, y: sets/s) with the
/// `markers` on the timeline.
pub fn rate_svg(title: &str, series: &[Series], markers: &[Marker]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let (full, note) = split_empty(series);
        if full.is_empty() {
            empty_note(&root, title, "no acknowledged sets were sampled")?;
            root.present()?;
            drop(root);
            return Ok(svg);
        }
        root.fill(&WHITE)?;
        let points = full.iter().flat_map(|s| s.points.iter());
        let x_max = points
            .clone()
            .map(|p| p.0)
            .chain(markers.iter().map(|m| m.at_s))
            .fold(1.0, f64::max);
        // Headroom for the legend above the lines.
        let y_max = points.map(|p| p.1).fold(1.0, f64::max) * 1.45;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 24))
            .margin(12)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..x_max * 1.02, 0f64..y_max)?;
        chart
            .configure_mesh()
            .light_line_style(LIGHT)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_desc("seconds into the measured phase")
            .y_desc("acknowledged sets/s")
            .y_label_formatter(&|y| short(*y))
            .draw()?;
        for (i, s) in full.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        for kind in [
            MarkerKind::Kill,
            MarkerKind::Restart,
            MarkerKind::Serving,
            MarkerKind::LeaderChange,
            MarkerKind::SpuriousLeaderChange,
        ] {
            let of_kind: Vec<&Marker> = markers.iter().filter(|m| m.kind == kind).collect();
            if of_kind.is_empty() {
                continue;
            }
            let c = kind.color();
            let drawn = if kind.is_line() {
                chart.draw_series(of_kind.iter().map(|m| {
                    PathElement::new(vec![(m.at_s, 0.0), (m.at_s, y_max)], c.stroke_width(1))
                }))?
            } else {
                chart.draw_series(of_kind.iter().map(|m| {
                    PathElement::new(
                        vec![(m.at_s, 0.0), (m.at_s, y_max * 0.04)],
                        c.stroke_width(3),
                    )
                }))?
            };
            drawn.label(kind.legend()).legend(move |(x, y)| {
                PathElement::new(vec![(x + 10, y - 6), (x + 10, y + 6)], c.stroke_width(3))
            });
            if kind.is_line() {
                let top = match kind {
                    MarkerKind::Kill => 0.98,
                    MarkerKind::Restart => 0.93,
                    _ => 0.88,
                };
                chart.draw_series(of_kind.iter().filter(|m| !m.label.is_empty()).map(|m| {
                    Text::new(
                        m.label.clone(),
                        (m.at_s, y_max * top),
                        (FONT, 14).into_font().color(&c),
                    )
                }))?;
            }
        }
        // The legend goes to the side with fewer marker labels.
        let right = markers.iter().filter(|m| m.at_s > x_max * 0.6).count();
        let legend_at = match right * 2 > markers.len() {
            true => SeriesLabelPosition::UpperLeft,
            false => SeriesLabelPosition::UpperRight,
        };
        chart
            .configure_series_labels()
            .position(legend_at)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 16))
            .draw()?;
        if let Some(note) = note {
            root.draw(&Text::new(note, (80, SIZE.1 as i32 - 14), (FONT, 12)))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// `points` (rates over consecutive intervals ending at `t_s`) as
/// averages over the `window` seconds ending at each point, weighted by
/// interval length (the first interval starts at 0).
pub fn smooth(points: &[RatePoint], window: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    for (i, p) in points.iter().enumerate() {
        let (mut sets, mut secs) = (0.0, 0.0);
        for j in (0..=i).rev() {
            let end = points[j].t_s;
            let start = if j == 0 { 0.0 } else { points[j - 1].t_s };
            if p.t_s - end >= window {
                break;
            }
            sets += points[j].acked_per_s * (end - start);
            secs += end - start;
        }
        out.push((p.t_s, if secs > 0.0 { sets / secs } else { 0.0 }));
    }
    out
}

/// The phases of a report: `(label, start_ns, rates, set→ack, set→seen)`.
type Phase<'a> = (
    String,
    u64,
    &'a [RatePoint],
    &'a LatencySummary,
    &'a LatencySummary,
);

fn phases(r: &Report) -> Vec<Phase<'_>> {
    match &r.sweep {
        Some(rows) => rows
            .iter()
            .map(|p| {
                (
                    format!("{} in flight per client", p.inflight),
                    p.start_ns,
                    p.timeline.as_slice(),
                    &p.ack_latency,
                    &p.seen_latency,
                )
            })
            .collect(),
        None => vec![(
            r.settings.scenario.name().to_string(),
            r.start_ns,
            r.timeline.as_slice(),
            &r.sets.ack_latency,
            &r.sets.seen_latency,
        )],
    }
}

/// The timeline markers of a report, in seconds from `start_ns`, within
/// `[0, end_s]`.
pub fn markers(r: &Report, start_ns: u64, end_s: f64) -> Vec<Marker> {
    let at = |ns: u64| (ns as f64 - start_ns as f64) / 1e9;
    let mut out = Vec::new();
    if let Some(f) = &r.failover {
        let delay = r.settings.restart_delay_s;
        for k in &f.kills {
            out.push(Marker {
                at_s: at(k.at_ns),
                kind: MarkerKind::Kill,
                label: format!("n{}", k.node),
            });
            if delay > 0.0 {
                out.push(Marker {
                    at_s: at(k.at_ns) + delay,
                    kind: MarkerKind::Restart,
                    label: String::new(),
                });
            }
        }
    }
    if let Some(rs) = &r.restart {
        for k in &rs.restarts {
            out.push(Marker {
                at_s: at(k.killed_ns),
                kind: MarkerKind::Kill,
                label: format!("n{}", k.node),
            });
            out.push(Marker {
                at_s: at(k.restarted_ns),
                kind: MarkerKind::Restart,
                label: String::new(),
            });
            if let Some(s) = k.serving_s {
                out.push(Marker {
                    at_s: at(k.restarted_ns) + s,
                    kind: MarkerKind::Serving,
                    label: format!("{s:.1} s"),
                });
            }
        }
    }
    if let Some(e) = &r.elections {
        for c in e
            .changes
            .iter()
            .filter(|c| c.kind == ChangeKind::LeaderChange)
        {
            out.push(Marker {
                at_s: at(c.at_ns),
                kind: if c.spurious {
                    MarkerKind::SpuriousLeaderChange
                } else {
                    MarkerKind::LeaderChange
                },
                label: String::new(),
            });
        }
    }
    out.retain(|m| (0.0..=end_s).contains(&m.at_s));
    out
}

/// Writes the charts of `report` into `dir`; returns the file names.
pub fn write(report: &Report, dir: &Path) -> Result<Vec<&'static str>> {
    let name = report.settings.scenario.name();
    let phases = phases(report);
    let curves = |pick: for<'p> fn(&'p Phase<'p>) -> &'p LatencySummary| -> Vec<Series> {
        phases
            .iter()
            .map(|p| Series {
                label: p.0.clone(),
                points: nines(&pick(p).curve),
            })
            .collect()
    };
    let rates: Vec<Series> = phases
        .iter()
        .map(|p| Series {
            label: p.0.clone(),
            points: smooth(p.2, SMOOTH_S),
        })
        .collect();
    // Markers are placed on the first phase's clock: they belong to one
    // phase unless the run is a sweep (where only leader changes occur).
    let mut marks = Vec::new();
    for p in &phases {
        let end = p.2.last().map_or(report.window_s, |r| r.t_s);
        marks.extend(markers(report, p.1, end));
    }
    let files = [
        (
            "ack-latency.svg",
            latency_svg(&format!("bench {name}: set→ack latency"), &curves(|p| p.3))?,
        ),
        (
            "seen-latency.svg",
            latency_svg(
                &format!("bench {name}: set→seen by another client (click to visible)"),
                &curves(|p| p.4),
            )?,
        ),
        (
            "acked-per-second.svg",
            rate_svg(
                &format!("bench {name}: acknowledged sets per second"),
                &rates,
                &marks,
            )?,
        ),
    ];
    let mut written = Vec::new();
    for (file, svg) in files {
        std::fs::write(dir.join(file), svg).with_context(|| format!("writing {file}"))?;
        written.push(file);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `svg` has a text element saying exactly `text`.
    fn has_text(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n</text>"))
    }

    /// Polylines stroked in series color `i`.
    fn lines_of(svg: &str, i: usize) -> usize {
        let RGBColor(r, g, b) = color(i);
        svg.matches(&format!("stroke=\"#{r:02X}{g:02X}{b:02X}\""))
            .count()
    }

    fn curve(scale: f64) -> Vec<(f64, f64)> {
        let points: Vec<CurvePoint> = (0..=32)
            .map(|i| {
                let q = 1.0 - 10f64.powf(-f64::from(i) / 8.0);
                CurvePoint {
                    percentile: q * 100.0,
                    ms: scale * (1.0 + f64::from(i)),
                }
            })
            .collect();
        nines(&points)
    }

    #[test]
    fn latency_chart_has_a_curve_per_phase() {
        let svg = latency_svg(
            "set→ack",
            &[
                Series {
                    label: "1 in flight per client".into(),
                    points: curve(1.0),
                },
                Series {
                    label: "256 in flight per client".into(),
                    points: curve(40.0),
                },
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(has_text(&svg, "1 in flight per client"), "{svg}");
        assert!(has_text(&svg, "256 in flight per client"));
        assert!(has_text(&svg, "99.9%"), "nines on the x axis");
        assert!(has_text(&svg, "latency, ms (log scale)"));
        assert_eq!(lines_of(&svg, 0), 2, "curve and legend line");
        assert_eq!(lines_of(&svg, 1), 2, "curve and legend line");
    }

    #[test]
    fn rate_chart_marks_kills_and_elections() {
        let points: Vec<(f64, f64)> = (1..=40).map(|i| (f64::from(i) * 0.5, 1000.0)).collect();
        let markers = vec![
            Marker {
                at_s: 3.0,
                kind: MarkerKind::Kill,
                label: "n2".into(),
            },
            Marker {
                at_s: 8.0,
                kind: MarkerKind::Restart,
                label: String::new(),
            },
            Marker {
                at_s: 3.4,
                kind: MarkerKind::LeaderChange,
                label: String::new(),
            },
        ];
        let svg = rate_svg(
            "failover",
            &[Series {
                label: "failover".into(),
                points,
            }],
            &markers,
        )
        .unwrap();
        assert!(has_text(&svg, "kill -9"), "kill legend: {svg}");
        assert!(has_text(&svg, "n2"), "the kill's node beside its line");
        assert!(has_text(&svg, "restart"));
        assert!(has_text(&svg, "leader change (after a kill)"));
        assert!(
            !svg.contains("spurious"),
            "no spurious change, no legend for it"
        );
        assert!(has_text(&svg, "acknowledged sets/s"));
        assert_eq!(lines_of(&svg, 0), 2, "the rate line and its legend");
        let RGBColor(r, g, b) = MarkerKind::Kill.color();
        let kill = format!("stroke=\"#{r:02X}{g:02X}{b:02X}\"");
        assert_eq!(
            svg.matches(&kill).count(),
            2,
            "the kill's line and its legend"
        );
    }

    #[test]
    fn empty_series_give_a_note_not_a_panic() {
        let empty = [Series {
            label: "1 in flight per client".into(),
            points: vec![],
        }];
        let svg = latency_svg("set→seen", &empty).unwrap();
        assert!(svg.contains("no samples: no latency was recorded"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        let svg = rate_svg("rates", &empty, &[]).unwrap();
        assert!(svg.contains("no samples"));
        let svg = rate_svg("rates", &[], &[]).unwrap();
        assert!(svg.contains("no samples"));
        // One empty series among full ones is named in a note.
        let mixed = [
            empty[0].clone(),
            Series {
                label: "16 in flight per client".into(),
                points: curve(2.0),
            },
        ];
        let svg = latency_svg("set→seen", &mixed).unwrap();
        assert!(svg.contains("no samples: 1 in flight per client"), "{svg}");
        assert!(svg.contains("16 in flight per client"));
    }

    #[test]
    fn smoothing_averages_a_second() {
        let p = |t_s, acked_per_s| RatePoint { t_s, acked_per_s };
        let points = [
            p(0.25, 400.0),
            p(0.5, 0.0),
            p(0.75, 0.0),
            p(1.0, 0.0),
            p(1.25, 800.0),
        ];
        let got = smooth(&points, 1.0);
        assert_eq!(got[0], (0.25, 400.0));
        assert_eq!(got[3], (1.0, 100.0));
        // The second ending at 1.25: 0, 0, 0, then 800 for 0.25 s.
        assert_eq!(got[4], (1.25, 200.0));
        assert!(smooth(&[], 1.0).is_empty());
    }

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(4.0), "99.99%");
        assert_eq!(short(1500.0), "1500");
        assert_eq!(short(2.0), "2");
        assert_eq!(short(0.25), "0.25");
    }
}
