//! The chat models this server offers agents: `local` models from the models directory (loaded
//! on first use, then shared by every run of the process) and `openai`, any model of the
//! OpenAI-compatible server configured by `OPENAI_BASE_URL`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chat_candle::{LocalChatModel, LocalChatOptions};
use domain::ports::{ChatModel, ChatModelUnavailable, ChatModels};
use domain::values::ModelRef;
use llm_openai::{OpenAiChat, OpenAiChatConfig, SecretString};

/// The local chat models: the name an agent gives, and the GGUF file under the models directory.
pub const LOCAL_CHAT_MODELS: &[(&str, &str)] = &[
    ("smollm2", "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    (
        "SmolLM2-135M-Instruct",
        "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
];

/// How to reach the OpenAI-compatible server.
#[derive(Clone, Debug)]
pub struct OpenAiChatSettings {
    pub base_url: String,
    pub api_key: String,
    pub supports_tools: bool,
    pub context_window: u32,
    pub timeout: std::time::Duration,
}

pub struct ServerChatModels {
    models_dir: PathBuf,
    openai: Option<OpenAiChatSettings>,
    local_options: LocalChatOptions,
    /// Loaded models by file, and OpenAI-compatible ones by name.
    loaded: Mutex<HashMap<String, Arc<dyn ChatModel>>>,
}

impl ServerChatModels {
    pub fn new(
        models_dir: PathBuf,
        openai: Option<OpenAiChatSettings>,
        local_options: LocalChatOptions,
    ) -> Self {
        Self {
            models_dir,
            openai,
            local_options,
            loaded: Mutex::default(),
        }
    }

    fn local_file(&self, name: &str) -> Result<PathBuf, ChatModelUnavailable> {
        let (_, file) = LOCAL_CHAT_MODELS
            .iter()
            .find(|(known, _)| *known == name)
            .ok_or_else(|| ChatModelUnavailable::NotInstalled(name.to_owned()))?;
        let path = self.models_dir.join(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ChatModelUnavailable::NotInstalled(format!(
                "{name} (run `just models`)"
            )))
        }
    }

    fn cached(
        &self,
        key: String,
        build: impl FnOnce() -> Result<Arc<dyn ChatModel>, ChatModelUnavailable>,
    ) -> Result<Arc<dyn ChatModel>, ChatModelUnavailable> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(model) = loaded.get(&key) {
            return Ok(model.clone());
        }
        let model = build()?;
        loaded.insert(key, model.clone());
        Ok(model)
    }
}

impl ChatModels for ServerChatModels {
    fn check(&self, model: &ModelRef) -> Result<(), ChatModelUnavailable> {
        match model.provider() {
            "local" => self.local_file(model.name()).map(|_| ()),
            // Any name: the server is asked only when a run starts (`model_unavailable` then).
            "openai" => Ok(()),
            other => Err(ChatModelUnavailable::UnknownProvider(other.to_owned())),
        }
    }

    fn model(&self, model: &ModelRef) -> Result<Arc<dyn ChatModel>, ChatModelUnavailable> {
        match model.provider() {
            "local" => {
                let path = self.local_file(model.name())?;
                let key = format!("local:{}", path.display());
                self.cached(key, || {
                    let started = std::time::Instant::now();
                    let loaded =
                        LocalChatModel::load(&path, self.local_options.clone()).map_err(|e| {
                            tracing::error!(error = %e, "the local chat model cannot be loaded");
                            ChatModelUnavailable::NotInstalled(model.name().to_owned())
                        })?;
                    tracing::info!(
                        model = model.name(),
                        ms = started.elapsed().as_millis(),
                        "local chat model loaded"
                    );
                    Ok(Arc::new(loaded) as Arc<dyn ChatModel>)
                })
            }
            "openai" => {
                let settings = self
                    .openai
                    .as_ref()
                    .ok_or_else(|| ChatModelUnavailable::NotConfigured("openai".into()))?;
                self.cached(format!("openai:{}", model.name()), || {
                    let mut config = OpenAiChatConfig::new(
                        settings.base_url.clone(),
                        SecretString::from(settings.api_key.clone()),
                        model.name(),
                    );
                    config.supports_tools = settings.supports_tools;
                    config.context_window = settings.context_window;
                    config.client.timeout = settings.timeout;
                    OpenAiChat::new(config)
                        .map(|m| Arc::new(m) as Arc<dyn ChatModel>)
                        .map_err(|e| {
                            tracing::error!(error = %e, "the OpenAI-compatible chat model cannot be set up");
                            ChatModelUnavailable::NotConfigured("openai".into())
                        })
                })
            }
            other => Err(ChatModelUnavailable::UnknownProvider(other.to_owned())),
        }
    }
}
