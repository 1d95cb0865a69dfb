use super::*;

fn context() -> PromptContext {
    PromptContext { domain: "demo".into(), domain_description: "Clothing items.".into() }
}

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/kap")
}

const SMALL: &str = r#"{%- set examples = [{"label": "Bag", "description": "A bag has handles."}] -%}
{%- macro system() %}Describe {{ domain }} items. {{ domain_description }}{% endmacro -%}
{%- macro user(label) %}Describe: {{ label }}{% endmacro -%}
{{ domain_description }}
{% for e in examples %}{{ e.label }}: {{ e.description }}
{% endfor %}{{ label }}:
"#;

#[test]
fn completion_ends_with_label_colon() {
    let template = KapTemplate::from_source("small.j2", SMALL.into()).expect("parses");
    let prompt = template.render(&context(), "Coat", LlmApi::Completions).expect("renders");
    assert_eq!(prompt, RenderedPrompt::Completion("Clothing items.\nBag: A bag has handles.\nCoat:".into()));
}

#[test]
fn chat_has_system_examples_and_query() {
    let template = KapTemplate::from_source("small.j2", SMALL.into()).expect("parses");
    let RenderedPrompt::Chat(messages) = template.render(&context(), "Coat", LlmApi::Chat).expect("renders") else {
        panic!("chat style must give messages");
    };
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::Assistant, Role::User]);
    assert_eq!(messages[0].content, "Describe demo items. Clothing items.");
    assert_eq!(messages[1].content, "Describe: Bag");
    assert_eq!(messages[2].content, "A bag has handles.");
    assert_eq!(messages[3].content, "Describe: Coat");
}

#[test]
fn labels_render_literally() {
    let template = KapTemplate::from_source("small.j2", SMALL.into()).expect("parses");
    for label in ["{{ domain }}", "{% if x %}", "it's \"quoted\" <b>&amp;", "two\nlines", "{# comment #}"] {
        let RenderedPrompt::Completion(text) =
            template.render(&context(), label, LlmApi::Completions).expect("renders")
        else {
            panic!("completion style");
        };
        assert!(text.ends_with(&format!("\n{label}:")), "{text:?}");
        let RenderedPrompt::Chat(messages) = template.render(&context(), label, LlmApi::Chat).expect("renders") else {
            panic!("chat style");
        };
        assert_eq!(messages.last().map(|m| m.content.as_str()), Some(format!("Describe: {label}").as_str()));
    }
}

#[test]
fn strict_undefined_is_an_error() {
    let template = KapTemplate::from_source("typo.j2", "{{ domain_descripton }}\n{{ label }}:".into()).expect("parses");
    let error = template.render(&context(), "Coat", LlmApi::Completions).expect_err("undefined variable");
    let message = error.to_string();
    assert!(message.contains("typo.j2") && message.contains("`Coat`"), "{message}");
    assert!(message.contains("undefined"), "{message}");
}

#[test]
fn syntax_error_names_the_template() {
    let error = KapTemplate::from_source("broken.j2", "{% for x in %}".into()).expect_err("bad syntax");
    assert!(matches!(error, PromptError::Syntax { .. }));
    assert!(error.to_string().contains("`broken.j2`"));
}

#[test]
fn completion_must_end_with_the_query() {
    let template = KapTemplate::from_source("no_query.j2", "Describe {{ label }} please".into()).expect("parses");
    let error = template.render(&context(), "Coat", LlmApi::Completions).expect_err("no trailing label");
    assert!(matches!(error, PromptError::CompletionEnding { .. }), "{error}");
}

#[test]
fn chat_needs_macros() {
    let template = KapTemplate::from_source("plain.j2", "{{ label }}:".into()).expect("parses");
    let error = template.render(&context(), "Coat", LlmApi::Chat).expect_err("no macros");
    assert!(error.to_string().contains("macro system"), "{error}");
}

#[test]
fn hash_follows_the_source() {
    let a = KapTemplate::from_source("a.j2", SMALL.into()).expect("parses");
    let b = KapTemplate::from_source("b.j2", SMALL.into()).expect("parses");
    let c = KapTemplate::from_source("c.j2", format!("{SMALL} ")).expect("parses");
    assert_eq!(a.sha256(), b.sha256());
    assert_ne!(a.sha256(), c.sha256());
    assert_eq!(a.sha256().len(), 64);
    assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn prompt_hash_differs_by_label_and_style() {
    let template = KapTemplate::from_source("small.j2", SMALL.into()).expect("parses");
    let coat = template.render(&context(), "Coat", LlmApi::Completions).expect("renders");
    let dress = template.render(&context(), "Dress", LlmApi::Completions).expect("renders");
    let coat_chat = template.render(&context(), "Coat", LlmApi::Chat).expect("renders");
    assert_ne!(coat.sha256(), dress.sha256());
    assert_ne!(coat.sha256(), coat_chat.sha256());
    assert!(coat_chat.canonical_text().starts_with(r#"[{"role":"system","content":"#));
}

#[test]
fn project_templates_render_both_styles() {
    for name in ["natural", "pedestrian", "remote_sensing", "demo"] {
        let template = KapTemplate::load(&templates_dir().join(format!("{name}.j2"))).expect("loads");
        let RenderedPrompt::Completion(text) =
            template.render(&context(), "T-shirt/top", LlmApi::Completions).expect("renders")
        else {
            panic!("completion style");
        };
        assert!(text.starts_with("Clothing items."), "{name}");
        let RenderedPrompt::Chat(messages) = template.render(&context(), "T-shirt/top", LlmApi::Chat).expect("renders")
        else {
            panic!("chat style");
        };
        let examples = (messages.len() - 2) / 2;
        assert!((3..=6).contains(&examples), "{name}: {examples} examples");
        let shots: Vec<&str> = text.split("\n\n").nth(1).expect("a blank line before the examples").lines().collect();
        assert_eq!(shots.len(), examples + 1, "{name}:\n{text}");
        for (index, line) in shots[..examples].iter().enumerate() {
            let (label, description) = line.split_once(": ").expect("label: description");
            assert_eq!(messages[1 + 2 * index].content, format!("Describe: {label}"));
            assert_eq!(messages[2 + 2 * index].content, description);
            assert!(description.len() > 60 && description.ends_with('.'), "{name}: {line}");
        }
    }
}

#[test]
fn missing_file_names_the_path() {
    let error = KapTemplate::load(Path::new("/nonexistent/kap.j2")).expect_err("missing");
    assert!(error.to_string().contains("`/nonexistent/kap.j2`"));
}
