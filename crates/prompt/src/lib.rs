//! prompt: the KAP (Knowledge-Aware Prompting) templates that ask an LLM for a label description.
//!
//! A template (`templates/kap/*.j2`, minijinja, strict undefined, no auto-escaping) provides:
//! - its body, the **completion** rendering for base models: the domain description, few-shot
//!   `label: description` lines, and the query ending in `"{label}:"`;
//! - `{% set examples = [{"label": …, "description": …}, …] %}`, the in-context examples;
//! - `{% macro system() %}` and `{% macro user(label) %}`, from which the **chat** rendering is
//!   built: `system`, then `user(example.label)` / `assistant(example.description)` per example,
//!   then `user(label)`.
//!
//! Context variables: `domain` (the short name), `domain_description`, `label`, `style`
//! (`"completion"` or `"chat"`). Labels are data: they are passed as values, never spliced into
//! template source, so `{{`, quotes or newlines in a label render literally.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sspa_config::LlmApi;
use std::path::{Path, PathBuf};

pub use sspa_config::LlmApi as PromptStyle;

/// Errors from loading or rendering a KAP template.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot read the prompt template `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("prompt template `{name}` does not parse: {source:#}")]
    Syntax {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("prompt template `{name}` failed to render for label `{label}`: {source:#}")]
    Render {
        name: String,
        label: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("prompt template `{name}` must end its completion rendering with `{expected}`, it ends with `{found}`")]
    CompletionEnding { name: String, expected: String, found: String },
    #[error("prompt template `{name}` has no chat rendering: {reason}")]
    Chat { name: String, reason: String },
}

/// Who says a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of a chat rendering, in the OpenAI wire shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// A prompt ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderedPrompt {
    /// Text for `/v1/completions`, ending in `"{label}:"`.
    Completion(String),
    /// Messages for `/v1/chat/completions`.
    Chat(Vec<ChatMessage>),
}

impl RenderedPrompt {
    /// The exact text that identifies this prompt: the completion text, or the messages as
    /// compact JSON. Cache keys and `prompt_sha256` are computed from it.
    pub fn canonical_text(&self) -> String {
        match self {
            Self::Completion(text) => text.clone(),
            // Serialising plain strings and enums cannot fail.
            Self::Chat(messages) => serde_json::to_string(messages).unwrap_or_default(),
        }
    }

    /// Hex SHA-256 of [`Self::canonical_text`].
    pub fn sha256(&self) -> String {
        sha256_hex(self.canonical_text().as_bytes())
    }

    pub fn api(&self) -> LlmApi {
        match self {
            Self::Completion(_) => LlmApi::Completions,
            Self::Chat(_) => LlmApi::Chat,
        }
    }
}

/// What a template knows about the domain besides the label.
#[derive(Debug, Clone, Serialize)]
pub struct PromptContext {
    /// `domain.name`.
    pub domain: String,
    /// `domain.description`.
    pub domain_description: String,
}

/// A loaded KAP template.
#[derive(Debug)]
pub struct KapTemplate {
    env: minijinja::Environment<'static>,
    name: String,
    sha256: String,
}

impl KapTemplate {
    /// Reads and parses a template file.
    pub fn load(path: &Path) -> Result<Self, PromptError> {
        let source =
            std::fs::read_to_string(path).map_err(|source| PromptError::Read { path: path.to_path_buf(), source })?;
        Self::from_source(&path.display().to_string(), source)
    }

    /// Parses template source; `name` is used in messages.
    pub fn from_source(name: &str, source: String) -> Result<Self, PromptError> {
        let sha256 = sha256_hex(source.as_bytes());
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_keep_trailing_newline(false);
        env.add_template_owned(name.to_owned(), source)
            .map_err(|source| PromptError::Syntax { name: name.to_owned(), source })?;
        Ok(Self { env, name: name.to_owned(), sha256 })
    }

    /// Where the template came from (its path as given).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hex SHA-256 of the template source: part of the stage's cache key.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Renders the prompt for one label in the style the API needs.
    pub fn render(&self, context: &PromptContext, label: &str, style: LlmApi) -> Result<RenderedPrompt, PromptError> {
        match style {
            LlmApi::Completions => self.render_completion(context, label).map(RenderedPrompt::Completion),
            LlmApi::Chat => self.render_chat(context, label).map(RenderedPrompt::Chat),
        }
    }

    fn values(context: &PromptContext, label: &str, style: &str) -> minijinja::Value {
        minijinja::context! {
            domain => context.domain,
            domain_description => context.domain_description,
            label => label,
            style => style,
        }
    }

    fn render_error(&self, label: &str, source: minijinja::Error) -> PromptError {
        PromptError::Render { name: self.name.clone(), label: label.to_owned(), source }
    }

    fn template(&self, label: &str) -> Result<minijinja::Template<'_, '_>, PromptError> {
        self.env.get_template(&self.name).map_err(|source| self.render_error(label, source))
    }

    fn render_completion(&self, context: &PromptContext, label: &str) -> Result<String, PromptError> {
        let text = self
            .template(label)?
            .render(Self::values(context, label, "completion"))
            .map_err(|source| self.render_error(label, source))?;
        let text = text.trim_end().to_owned();
        let expected = format!("{label}:");
        if !text.ends_with(&expected) {
            let tail: String = text.chars().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(PromptError::CompletionEnding { name: self.name.clone(), expected, found: tail });
        }
        Ok(text)
    }

    fn render_chat(&self, context: &PromptContext, label: &str) -> Result<Vec<ChatMessage>, PromptError> {
        let template = self.template(label)?;
        let captured = template
            .render_captured(Self::values(context, label, "chat"))
            .map_err(|source| self.render_error(label, source))?;
        let state = captured.state();
        let chat_error = |reason: String| PromptError::Chat { name: self.name.clone(), reason };
        let call = |name: &str, args: &[minijinja::Value]| -> Result<String, PromptError> {
            if state.lookup(name).is_none() {
                return Err(chat_error(format!("no `{{% macro {name}(...) %}}`")));
            }
            state
                .call_macro(name, args)
                .map(|text| text.trim().to_owned())
                .map_err(|source| self.render_error(label, source))
        };
        let mut messages = vec![ChatMessage { role: Role::System, content: call("system", &[])? }];
        let examples = state.lookup("examples").ok_or_else(|| chat_error("no `{% set examples = [...] %}`".into()))?;
        let iter = examples.try_iter().map_err(|_| chat_error("`examples` is not a list".into()))?;
        for (index, example) in iter.enumerate() {
            let field = |key: &str| -> Result<String, PromptError> {
                example
                    .get_attr(key)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .ok_or_else(|| chat_error(format!("`examples[{index}].{key}` is not a string")))
            };
            let example_label = field("label")?;
            let description = field("description")?;
            messages.push(ChatMessage { role: Role::User, content: call("user", &[example_label.into()])? });
            messages.push(ChatMessage { role: Role::Assistant, content: description });
        }
        messages.push(ChatMessage { role: Role::User, content: call("user", &[label.into()])? });
        Ok(messages)
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests;
