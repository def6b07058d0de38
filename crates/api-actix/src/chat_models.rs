//! The chat models this server offers agents: `local` models from the models directory (loaded
//! on first use, then shared by every run of the process) and `openai`, any model of the
//! OpenAI-compatible server configured by `OPENAI_BASE_URL`; and tenants' own providers, each
//! model of which gets a client of its own (its own connections, timeouts and retries). Each HTTP
//! worker has its own [`ServerChatModels::for_worker`]: the local models are shared, the clients
//! of remote ones (and so their connections) are the worker's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chat_candle::{LocalChatModel, LocalChatOptions};
use domain::ports::{
    ChatModel, ChatModelUnavailable, ChatModels, ProviderEndpoint, ProviderModels,
};
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
    /// Extra attempts before the answer starts (the client's default when `None`).
    pub max_retries: Option<u32>,
}

pub struct ServerChatModels {
    models_dir: PathBuf,
    openai: Option<OpenAiChatSettings>,
    local_options: LocalChatOptions,
    /// Loaded local models by file, shared by every worker (one copy in memory).
    local: Arc<Mutex<HashMap<String, Arc<dyn ChatModel>>>>,
    /// Clients of the OpenAI-compatible server by model name.
    loaded: Mutex<HashMap<String, Arc<dyn ChatModel>>>,
    /// Clients of tenants' providers, by provider, version and model name.
    providers: Mutex<HashMap<String, Arc<dyn ChatModel>>>,
    /// The timeouts and context window of tenants' providers' models.
    provider_defaults: OpenAiChatSettings,
}

/// The most tenants' provider clients kept at once; beyond, the cache starts over (a client is
/// cheap to build again, and a changed provider leaves its old clients behind).
const MAX_PROVIDER_CLIENTS: usize = 512;

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
            local: Arc::default(),
            loaded: Mutex::default(),
            providers: Mutex::default(),
            provider_defaults: OpenAiChatSettings {
                base_url: String::new(),
                api_key: String::new(),
                supports_tools: true,
                context_window: 128_000,
                timeout: std::time::Duration::from_secs(60),
                max_retries: None,
            },
        }
    }

    /// Tenants' providers' models get this context window and timeout.
    #[must_use]
    pub fn with_provider_defaults(
        mut self,
        context_window: u32,
        timeout: std::time::Duration,
    ) -> Self {
        self.provider_defaults.context_window = context_window;
        self.provider_defaults.timeout = timeout;
        self
    }

    /// The same models for another HTTP worker: the local ones shared, remote clients of its
    /// own. A client's connections are served by the runtime that opened them; a worker using
    /// another's would be woken through that thread on every chunk of an answer.
    #[must_use]
    pub fn for_worker(&self) -> Self {
        Self {
            models_dir: self.models_dir.clone(),
            openai: self.openai.clone(),
            local_options: self.local_options.clone(),
            local: self.local.clone(),
            loaded: Mutex::default(),
            providers: Mutex::default(),
            provider_defaults: self.provider_defaults.clone(),
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
        cache: &Mutex<HashMap<String, Arc<dyn ChatModel>>>,
        key: String,
        build: impl FnOnce() -> Result<Arc<dyn ChatModel>, ChatModelUnavailable>,
    ) -> Result<Arc<dyn ChatModel>, ChatModelUnavailable> {
        let mut loaded = cache
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
                Self::cached(&self.local, key, || {
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
                Self::cached(&self.loaded, format!("openai:{}", model.name()), || {
                    remote_model(
                        settings,
                        &settings.base_url,
                        &settings.api_key,
                        model.name(),
                        settings.supports_tools,
                        "openai",
                    )
                })
            }
            other => Err(ChatModelUnavailable::UnknownProvider(other.to_owned())),
        }
    }
}

/// A client of an OpenAI-compatible server for one model.
fn remote_model(
    settings: &OpenAiChatSettings,
    base_url: &str,
    api_key: &str,
    name: &str,
    supports_tools: bool,
    provider: &str,
) -> Result<Arc<dyn ChatModel>, ChatModelUnavailable> {
    let mut config = OpenAiChatConfig::new(
        base_url.to_owned(),
        SecretString::from(api_key.to_owned()),
        name,
    );
    config.supports_tools = supports_tools;
    config.context_window = settings.context_window;
    config.client.timeout = settings.timeout;
    if let Some(retries) = settings.max_retries {
        config.client.max_retries = retries;
    }
    OpenAiChat::new(config)
        .map(|m| Arc::new(m) as Arc<dyn ChatModel>)
        .map_err(|e| {
            tracing::error!(provider, error = %e, "an OpenAI-compatible chat model cannot be set up");
            ChatModelUnavailable::NotConfigured(provider.to_owned())
        })
}

impl ProviderModels for ServerChatModels {
    fn model(
        &self,
        endpoint: &ProviderEndpoint,
        name: &str,
    ) -> Result<Arc<dyn ChatModel>, ChatModelUnavailable> {
        let key = format!(
            "{}:{}:{name}",
            endpoint.provider,
            endpoint.updated_at.timestamp_micros()
        );
        let mut clients = self
            .providers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(model) = clients.get(&key) {
            return Ok(model.clone());
        }
        if clients.len() >= MAX_PROVIDER_CLIENTS {
            clients.clear();
        }
        // The provider's own timeout and retries where it set them.
        let mut settings = self.provider_defaults.clone();
        if let Some(secs) = endpoint.timeout_secs {
            settings.timeout = std::time::Duration::from_secs(u64::from(secs));
        }
        settings.max_retries = endpoint.max_retries;
        let model = remote_model(
            &settings,
            &endpoint.base_url,
            &endpoint.api_key,
            name,
            endpoint.supports_tools,
            "provider",
        )?;
        clients.insert(key, model.clone());
        Ok(model)
    }
}
