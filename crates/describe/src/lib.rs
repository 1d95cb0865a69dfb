//! describe: the first stage of SSPA's "split" half, Knowledge-Aware Prompting (KAP).
//!
//! For every label, an LLM is asked through the domain's KAP template (`sspa-prompt`) for a
//! description of how the label looks and what it co-occurs with; the answer's first sentence(s)
//! plus `" A photo of a {label}."` (paper Eq. 4) become the label's text downstream.
//!
//! - [`describe`]: the stage entry point (async; the runner drives it with `Handle::block_on`).
//! - [`read_label_file`] / [`LabelList::from_names`]: checked label lists for new label sets.
//! - [`DescriptionCache`]: answers keyed by [`request_key`], made durable one by one as they
//!   arrive, compacted into `descriptions.parquet`; a re-run asks only for missing keys.
//! - [`postprocess`]: raw answer → description; [`cut_off_is_harmless`]: whether an answer cut
//!   off by `llm.max_tokens` gives the description the whole answer would (then it is used).

mod cache;
mod labels;
mod postprocess;
mod run;

pub use cache::{CacheError, CacheRow, DESCRIPTIONS_FILE, DescriptionCache, read_parquet, write_parquet};
pub use labels::{DuplicateLabel, LabelError, LabelList, LabelProblem, MAX_LABEL_BYTES, read_label_file};
pub use postprocess::{cut_off_is_harmless, postprocess};
pub use run::{
    CACHE_FORMAT_VERSION, DescribeError, DescribeProgress, DescribeRequest, DescribeSummary, LabelFailure, describe,
    request_key,
};
