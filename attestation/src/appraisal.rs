//! Appraisal of verified claims against reference values.
