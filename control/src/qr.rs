//! QR code images: the module matrix from the `qrcode` crate, drawn as SVG or PNG in the size,
//! colours, quiet zone, error correction and module rounding a caller asks for.
//!
//! What a code encodes and where it is kept is the API's business (`api::qr`); this module only
//! turns text and a [`Style`] into image bytes, or says why it cannot. Both formats use the same
//! integer layout ([`Layout`]): every module is a whole number of pixels, so a PNG is crisp and an
//! SVG rendered at its own size matches it pixel for pixel.

use std::fmt::Write as _;

use qrcode::{EcLevel, QrCode};
use serde::{Deserialize, Serialize};

pub const MIN_SIZE: u32 = 64;
pub const MAX_SIZE: u32 = 2048;
pub const DEFAULT_SIZE: u32 = 256;
/// Quiet zone in modules; the standard asks for 4.
pub const DEFAULT_MARGIN: u32 = 4;
pub const MAX_MARGIN: u32 = 16;
/// Module rounding in percent of a module: 0 squares, 50 round dots.
pub const MAX_CORNER_RADIUS: u32 = 50;
/// WCAG contrast ratio below which scanners struggle; such colours are refused.
pub const MIN_CONTRAST: f64 = 3.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Svg,
    Png,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Svg => "image/svg+xml",
            Format::Png => "image/png",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Svg => "svg",
            Format::Png => "png",
        }
    }
}

/// Error correction: the share of the code that may be damaged and still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Correction {
    /// ~7%
    L,
    /// ~15%
    #[default]
    M,
    /// ~25%
    Q,
    /// ~30%
    H,
}

impl Correction {
    fn level(self) -> EcLevel {
        match self {
            Correction::L => EcLevel::L,
            Correction::M => EcLevel::M,
            Correction::Q => EcLevel::Q,
            Correction::H => EcLevel::H,
        }
    }

    /// Bytes of arbitrary data the largest code (version 40) holds at this level.
    pub fn capacity(self) -> usize {
        match self {
            Correction::L => 2953,
            Correction::M => 2331,
            Correction::Q => 1663,
            Correction::H => 1273,
        }
    }
}

/// An sRGB colour, written `#rrggbb` (or `#rgb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub [u8; 3]);

impl Rgb {
    pub const BLACK: Rgb = Rgb([0, 0, 0]);
    pub const WHITE: Rgb = Rgb([255, 255, 255]);

    pub fn parse(s: &str) -> Result<Rgb, String> {
        let bad = || format!("{s:?} is not a colour: use #rrggbb or #rgb");
        let hex = s.strip_prefix('#').ok_or_else(bad)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let digit = |i: usize| u8::from_str_radix(&hex[i..i + 1], 16).map_err(|_| bad());
        match hex.len() {
            3 => Ok(Rgb([digit(0)? * 17, digit(1)? * 17, digit(2)? * 17])),
            6 => {
                let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
                Ok(Rgb([byte(0)?, byte(2)?, byte(4)?]))
            }
            _ => Err(bad()),
        }
    }

    /// `#rrggbb`, lower case.
    pub fn hex(self) -> String {
        let [r, g, b] = self.0;
        format!("#{r:02x}{g:02x}{b:02x}")
    }

    /// WCAG 2 relative luminance.
    fn luminance(self) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        let [r, g, b] = self.0;
        0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    }

    /// WCAG 2 contrast ratio, 1 (same) to 21 (black on white).
    pub fn contrast(self, other: Rgb) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }
}

impl Serialize for Rgb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Rgb {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rgb::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How a code is drawn. Checked by [`Style::check`] before anything is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Style {
    /// Width and height of the image in pixels.
    pub size: u32,
    /// Quiet zone around the code, in modules.
    pub margin: u32,
    pub foreground_color: Rgb,
    pub background_color: Rgb,
    /// Rounding of each dark module, in percent of a module (0 to 50).
    pub corner_radius: u32,
    pub error_correction: Correction,
}

impl Default for Style {
    fn default() -> Self {
        Self {
            size: DEFAULT_SIZE,
            margin: DEFAULT_MARGIN,
            foreground_color: Rgb::BLACK,
            background_color: Rgb::WHITE,
            corner_radius: 0,
            error_correction: Correction::M,
        }
    }
}

/// Why a code cannot be drawn; each names the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QrError {
    #[error("size must be {MIN_SIZE} to {MAX_SIZE} pixels")]
    Size,
    #[error("margin must be 0 to {MAX_MARGIN} modules")]
    Margin,
    #[error("cornerRadius must be 0 to {MAX_CORNER_RADIUS} (percent of a module)")]
    CornerRadius,
    #[error(
        "foregroundColor and backgroundColor have a contrast ratio of {0:.2}, below {MIN_CONTRAST}: scanners cannot tell them apart reliably"
    )]
    Contrast(f64),
    #[error(
        "foregroundColor must be darker than backgroundColor: many scanners cannot read a light code on a dark ground"
    )]
    Inverted,
    #[error("the content is empty")]
    Empty,
    #[error(
        "the content is {len} bytes; a QR code holds at most {max} at errorCorrection {level:?}{}",
        if matches!(level, Correction::L) { "" } else { " (a lower level holds more)" }
    )]
    TooLong {
        len: usize,
        max: usize,
        level: Correction,
    },
    #[error(
        "a {size}-pixel image is too small for this code: it is {modules} modules wide with its margin, so size must be at least {modules}"
    )]
    TooSmall { size: u32, modules: u32 },
}

impl QrError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            QrError::Size | QrError::TooSmall { .. } => "size",
            QrError::Margin => "margin",
            QrError::CornerRadius => "cornerRadius",
            QrError::Contrast(_) | QrError::Inverted => "foregroundColor",
            QrError::Empty | QrError::TooLong { .. } => "content",
        }
    }
}

impl Style {
    /// The style's own limits (not those that depend on the content).
    pub fn check(&self) -> Result<(), QrError> {
        if !(MIN_SIZE..=MAX_SIZE).contains(&self.size) {
            return Err(QrError::Size);
        }
        if self.margin > MAX_MARGIN {
            return Err(QrError::Margin);
        }
        if self.corner_radius > MAX_CORNER_RADIUS {
            return Err(QrError::CornerRadius);
        }
        let contrast = self.foreground_color.contrast(self.background_color);
        if contrast < MIN_CONTRAST {
            return Err(QrError::Contrast(contrast));
        }
        if self.foreground_color.luminance() > self.background_color.luminance() {
            return Err(QrError::Inverted);
        }
        Ok(())
    }
}

/// The dark modules of a code, row by row.
struct Matrix {
    width: usize,
    dark: Vec<bool>,
}

impl Matrix {
    fn encode(content: &str, level: Correction) -> Result<Matrix, QrError> {
        if content.is_empty() {
            return Err(QrError::Empty);
        }
        let too_long = || QrError::TooLong {
            len: content.len(),
            max: level.capacity(),
            level,
        };
        if content.len() > level.capacity() {
            return Err(too_long());
        }
        let code = if content.is_ascii() {
            QrCode::with_error_correction_level(content, level.level()).map_err(|_| too_long())?
        } else {
            utf8_code(content, level.level()).ok_or_else(too_long)?
        };
        let width = code.width();
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == qrcode::Color::Dark)
            .collect();
        Ok(Matrix { width, dark })
    }

    fn is_dark(&self, x: usize, y: usize) -> bool {
        self.dark.get(y * self.width + x).copied().unwrap_or(false)
    }

    /// Whether a module belongs to one of the three 7 × 7 finder patterns in the corners. They
    /// stay square whatever the rounding: scanners find a code by their 1:1:3:1:1 runs, and
    /// round dots there make zbar miss a code that is otherwise fine.
    fn in_finder(&self, x: usize, y: usize) -> bool {
        let far = self.width.saturating_sub(7);
        (x < 7 || x >= far) && (y < 7 || (y >= far && x < 7))
    }
}

/// A code whose data is announced as UTF-8 (ECI 26), in the smallest version that holds it.
/// Without the designator, decoders guess the byte mode's charset, and zbar reads "é" as
/// Shift JIS.
fn utf8_code(content: &str, level: EcLevel) -> Option<QrCode> {
    const UTF8_ECI: u32 = 26;
    (1..=40).find_map(|v| {
        let mut bits = qrcode::bits::Bits::new(qrcode::Version::Normal(v));
        bits.push_eci_designator(UTF8_ECI).ok()?;
        bits.push_optimal_data(content.as_bytes()).ok()?;
        bits.push_terminator(level).ok()?;
        QrCode::with_bits(bits, level).ok()
    })
}

/// Where modules land in the image: `module` pixels each, the code starting `offset` pixels in
/// from the top and the left (the margin plus half of what does not divide evenly).
struct Layout {
    module: u32,
    offset: u32,
}

impl Layout {
    fn new(matrix: &Matrix, style: &Style) -> Result<Layout, QrError> {
        // At most 177 modules plus twice the margin: no overflow.
        let modules = matrix.width as u32 + 2 * style.margin;
        let module = style.size / modules;
        if module == 0 {
            return Err(QrError::TooSmall {
                size: style.size,
                modules,
            });
        }
        let offset = style.margin * module + (style.size - module * modules) / 2;
        Ok(Layout { module, offset })
    }
}

fn prepare(content: &str, style: &Style) -> Result<(Matrix, Layout), QrError> {
    style.check()?;
    let matrix = Matrix::encode(content, style.error_correction)?;
    let layout = Layout::new(&matrix, style)?;
    Ok((matrix, layout))
}

/// Checks that `content` can be drawn in `style` without drawing it.
pub fn check(content: &str, style: &Style) -> Result<(), QrError> {
    prepare(content, style).map(|_| ())
}

/// The code as a standalone SVG document `style.size` pixels square.
pub fn svg(content: &str, style: &Style) -> Result<String, QrError> {
    let (matrix, layout) = prepare(content, style)?;
    let size = style.size;
    let m = layout.module;
    let fg = style.foreground_color.hex();
    let bg = style.background_color.hex();
    let mut out = String::with_capacity(64 * 1024);
    let rendering = if style.corner_radius == 0 {
        "crispEdges"
    } else {
        "geometricPrecision"
    };
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" \
         viewBox=\"0 0 {size} {size}\" shape-rendering=\"{rendering}\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"{bg}\"/>"
    );
    if style.corner_radius == 0 {
        // One path; each horizontal run of dark modules is one rectangle.
        let _ = write!(out, "<path fill=\"{fg}\" d=\"");
        for y in 0..matrix.width {
            let mut x = 0;
            while x < matrix.width {
                if !matrix.is_dark(x, y) {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < matrix.width && matrix.is_dark(x, y) {
                    x += 1;
                }
                let (px, py) = (
                    layout.offset + start as u32 * m,
                    layout.offset + y as u32 * m,
                );
                let w = (x - start) as u32 * m;
                let _ = write!(out, "M{px} {py}h{w}v{m}h-{w}z");
            }
        }
        out.push_str("\"/>");
    } else {
        let r = f64::from(m) * f64::from(style.corner_radius) / 100.0;
        let _ = write!(out, "<g fill=\"{fg}\">");
        for y in 0..matrix.width {
            for x in 0..matrix.width {
                if matrix.is_dark(x, y) {
                    let (px, py) = (layout.offset + x as u32 * m, layout.offset + y as u32 * m);
                    let rx = if matrix.in_finder(x, y) { 0.0 } else { r };
                    let _ = write!(
                        out,
                        "<rect x=\"{px}\" y=\"{py}\" width=\"{m}\" height=\"{m}\" rx=\"{rx:.2}\"/>"
                    );
                }
            }
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    Ok(out)
}

/// The code as a two-colour (1 bit per pixel, palette) PNG `style.size` pixels square.
pub fn png(content: &str, style: &Style) -> Result<Vec<u8>, QrError> {
    let (matrix, layout) = prepare(content, style)?;
    let size = style.size as usize;
    let m = layout.module as usize;
    let offset = layout.offset as usize;
    let stride = size.div_ceil(8);

    // Which pixels of one dark module are dark: all of them, or a rounded square.
    let r = m as f64 * f64::from(style.corner_radius) / 100.0;
    let inside = |i: usize, j: usize| -> bool {
        if r <= 0.0 {
            return true;
        }
        let (cx, cy) = (i as f64 + 0.5, j as f64 + 0.5);
        let m = m as f64;
        // Distance into the corner region, measured from the nearest corner circle's centre.
        let dx = (r - cx).max(cx - (m - r)).max(0.0);
        let dy = (r - cy).max(cy - (m - r)).max(0.0);
        dx * dx + dy * dy <= r * r
    };
    let mask: Vec<bool> = (0..m * m).map(|k| inside(k % m, k / m)).collect();

    let mut pixels = vec![0u8; stride * size];
    for y in 0..matrix.width {
        for x in 0..matrix.width {
            if !matrix.is_dark(x, y) {
                continue;
            }
            let square = matrix.in_finder(x, y);
            for j in 0..m {
                let row = &mut pixels[(offset + y * m + j) * stride..][..stride];
                for i in 0..m {
                    if square || mask[j * m + i] {
                        let px = offset + x * m + i;
                        row[px / 8] |= 0x80 >> (px % 8);
                    }
                }
            }
        }
    }

    let mut out = Vec::with_capacity(8 * 1024);
    let encoded = (|| -> Result<(), png::EncodingError> {
        let mut encoder = png::Encoder::new(&mut out, style.size, style.size);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(png::BitDepth::One);
        let [br, bgreen, bb] = style.background_color.0;
        let [fr, fgreen, fb] = style.foreground_color.0;
        encoder.set_palette(vec![br, bgreen, bb, fr, fgreen, fb]);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
        writer.finish()
    })();
    // Writing to a Vec fails only on a bug in the sizes above.
    if let Err(error) = encoded {
        tracing::error!(%error, "PNG encoding failed");
        return Err(QrError::Size);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn colours_parse_in_both_forms_and_refuse_the_rest() {
        assert_eq!(Rgb::parse("#0A1b2C").unwrap(), Rgb([0x0a, 0x1b, 0x2c]));
        assert_eq!(Rgb::parse("#fff").unwrap(), Rgb::WHITE);
        assert_eq!(Rgb::parse("#0a1b2c").unwrap().hex(), "#0a1b2c");
        for bad in [
            "000000",
            "#00000",
            "#gggggg",
            "#+1+2+3",
            "red",
            "",
            "#ff00ff00",
            "#é12",
        ] {
            assert!(Rgb::parse(bad).is_err(), "{bad}");
        }
        assert!((Rgb::BLACK.contrast(Rgb::WHITE) - 21.0).abs() < 1e-9);
        assert!((Rgb::WHITE.contrast(Rgb::WHITE) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_style_limits_are_checked_before_drawing() {
        let ok = Style::default();
        assert_eq!(ok.check(), Ok(()));
        for (style, field) in [
            (Style { size: 63, ..ok }, "size"),
            (Style { size: 2049, ..ok }, "size"),
            (Style { margin: 17, ..ok }, "margin"),
            (
                Style {
                    corner_radius: 51,
                    ..ok
                },
                "cornerRadius",
            ),
            (
                Style {
                    foreground_color: Rgb([200, 200, 200]),
                    ..ok
                },
                "foregroundColor",
            ),
            (
                Style {
                    foreground_color: Rgb::WHITE,
                    background_color: Rgb::BLACK,
                    ..ok
                },
                "foregroundColor",
            ),
        ] {
            let err = svg("https://example.com/", &style).unwrap_err();
            assert_eq!(err.field(), field, "{style:?}: {err}");
        }
        assert_eq!(png("", &ok).unwrap_err(), QrError::Empty);
        let long = "x".repeat(Correction::H.capacity() + 1);
        let err = png(
            &long,
            &Style {
                error_correction: Correction::H,
                ..ok
            },
        )
        .unwrap_err();
        assert!(matches!(err, QrError::TooLong { max: 1273, .. }), "{err}");
        // 2,953 bytes fit at L, in version 40 (177 modules + 8 of margin): 64 px is too small.
        let longest = "x".repeat(Correction::L.capacity());
        let l = Style {
            error_correction: Correction::L,
            ..ok
        };
        let err = png(&longest, &Style { size: 64, ..l }).unwrap_err();
        assert_eq!(
            err,
            QrError::TooSmall {
                size: 64,
                modules: 185
            }
        );
        assert!(png(&longest, &Style { size: 370, ..l }).is_ok());
    }

    #[test]
    fn a_png_is_the_asked_size_in_the_asked_colours() {
        let style = Style {
            size: 300,
            foreground_color: Rgb([0x12, 0x34, 0x56]),
            background_color: Rgb([0xff, 0xee, 0xdd]),
            ..Style::default()
        };
        let bytes = png("https://example.com/", &style).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (300, 300));
        assert_eq!(
            info.palette.as_deref(),
            Some(&[0xff, 0xee, 0xdd, 0x12, 0x34, 0x56][..])
        );
    }

    #[test]
    fn an_svg_draws_the_same_modules_square_or_round() {
        let square = svg("hello", &Style::default()).unwrap();
        assert!(square.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"256\""));
        assert!(square.contains("fill=\"#000000\"") && square.contains("fill=\"#ffffff\""));
        let round = svg(
            "hello",
            &Style {
                corner_radius: 50,
                ..Style::default()
            },
        )
        .unwrap();
        // Version 1 (21 × 21) at M; each dark module is one rect, rounded outside the finders.
        let matrix = Matrix::encode("hello", Correction::M).unwrap();
        assert_eq!(matrix.width, 21);
        let dark = matrix.dark.iter().filter(|d| **d).count();
        assert_eq!(round.matches("<rect x=").count(), dark);
        assert!(
            round.contains("rx=\"4.00\""),
            "8-pixel modules, half rounded"
        );
        let finder_dark = (0..21)
            .flat_map(|y| (0..21).map(move |x| (x, y)))
            .filter(|&(x, y)| matrix.in_finder(x, y) && matrix.is_dark(x, y))
            .count();
        // Each finder is 7 × 7 with 33 dark modules (ring of 24, core of 9).
        assert_eq!(finder_dark, 3 * 33);
        assert_eq!(round.matches("rx=\"0.00\"").count(), finder_dark);
    }
}
