//! Helpers shared by the tests, benchmarks and fuzz targets (not used by the server).

pub mod fuzz;
pub mod journal_model;
