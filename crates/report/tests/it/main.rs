//! The integration tests of sspa-report, in one test binary (one link).

mod render;
mod report_render;
