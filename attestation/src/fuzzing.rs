//! Entry points for cargo-fuzz targets.
