//! The QR code a phone scans: the session host reports WhatsApp's string, this renders it as a PNG.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module: large enough for a phone camera at arm's length.
const SCALE: usize = 8;
/// The blank border a scanner needs around the code, in modules.
const QUIET_ZONE: usize = 4;

/// The code could not be rendered (longer than a QR code holds).
#[derive(Debug)]
pub struct RenderError;

/// Renders `code` as a grayscale PNG.
pub fn render_png(code: &str) -> Result<Vec<u8>, RenderError> {
    let qr = QrCode::with_error_correction_level(code.as_bytes(), EcLevel::L).map_err(|_| RenderError)?;
    let modules = qr.width();
    let side = (modules + 2 * QUIET_ZONE) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (index, color) in qr.to_colors().into_iter().enumerate() {
        if color == Color::Light {
            continue;
        }
        let (mx, my) = (index % modules, index / modules);
        for dy in 0..SCALE {
            let row = (my + QUIET_ZONE) * SCALE + dy;
            let start = row * side + (mx + QUIET_ZONE) * SCALE;
            pixels[start..start + SCALE].fill(0);
        }
    }
    let mut png_bytes = Vec::new();
    let side_u32 = u32::try_from(side).map_err(|_| RenderError)?;
    let mut encoder = png::Encoder::new(&mut png_bytes, side_u32, side_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(|_| RenderError)?;
    writer.write_image_data(&pixels).map_err(|_| RenderError)?;
    writer.finish().map_err(|_| RenderError)?;
    Ok(png_bytes)
}

/// `data:image/png;base64,...` of the rendered code, as `qrCodeBase64` carries it.
pub fn png_data_url(code: &str) -> Result<String, RenderError> {
    Ok(format!("data:image/png;base64,{}", STANDARD.encode(render_png(code)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> String {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buffer).unwrap();
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        let (width, height) = (info.width as usize, info.height as usize);
        let mut image =
            rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| buffer[y * width + x]);
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "exactly one QR code in the image");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_png_decodes_back_to_the_same_string() {
        // The shape of a WhatsApp QR string: ref, noise key, identity key, adv secret.
        let code = "2@Y2ZmNTk0NmQtNDhhYS00ZjZhLWE5ZTItOTA1ZjU1ODdiYzVl,\
                    XG6C2oQ0YsWt3aHn7N5Wz0oKpgsH7nBq1l6bG7xY2kE=,\
                    f3oE4wq3Ce9mCxQdv5kGf9YB0mC0b6j6wV4x8cQ3aQ0=,\
                    o1pH2VJ1G6k8g5N0Z8hQ2x7YJ1m3kC6y9q4uW3oBz2M=";
        assert_eq!(decode(&render_png(code).unwrap()), code);
    }

    #[test]
    fn the_data_url_carries_a_png() {
        let url = png_data_url("hello").unwrap();
        let body = url.strip_prefix("data:image/png;base64,").unwrap();
        let bytes = STANDARD.decode(body).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(decode(&bytes), "hello");
    }
}
