//! The describe crate's integration tests, in one binary (one link instead of one per file).

mod chat_llm;
mod faults;
mod kill_resume;
mod labels;
mod real_llm;
mod settings;
mod support;
