//! Extracts the few Swagger UI files `/docs` loads from the vendored release archive and stores
//! them gzip-compressed in `OUT_DIR`, for `docs.rs` to embed.
//!
//! Why not the whole release: it is 11 MB (source maps, ES bundles) of which the page loads 2 MB,
//! and every byte is in each Lambda function's bootstrap. Compressed, the page costs about 0.5 MB.

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

use flate2::Compression;
use flate2::write::GzEncoder;

/// What the page in `docs.rs` loads; keep the two in step.
const FILES: [&str; 3] = ["swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let release = Cursor::new(utoipa_swagger_ui_vendored::SWAGGER_UI_VENDORED);
    let mut archive = zip::ZipArchive::new(release).expect("the vendored Swagger UI is a zip archive");
    let names: Vec<String> = archive.file_names().map(str::to_owned).collect();
    for file in FILES {
        let suffix = format!("/dist/{file}");
        let entry = names
            .iter()
            .find(|name| name.ends_with(&suffix))
            .unwrap_or_else(|| panic!("the Swagger UI release has no dist/{file}"));
        let mut content = Vec::new();
        archive
            .by_name(entry)
            .and_then(|mut entry| entry.read_to_end(&mut content).map_err(Into::into))
            .unwrap_or_else(|error| panic!("reading {entry}: {error}"));
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(&content).expect("compressing into memory");
        let compressed = encoder.finish().expect("compressing into memory");
        std::fs::write(out_dir.join(format!("{file}.gz")), compressed).expect("writing OUT_DIR");
    }
}
