//! Extraction in a child process with hard limits, for the server.
//!
//! Parsers of untrusted formats can be made to inflate gigabytes (a PDF stream under two
//! `FlateDecode` filters), recurse or loop; a thread that does so cannot be killed, and its
//! memory is the server's. [`SandboxedExtractor`] runs each document through a child process
//! instead (the server's own binary, told to be a child: see [`run_child`]), which
//!
//! - limits itself before it reads anything: address space (`RLIMIT_AS`), CPU time
//!   (`RLIMIT_CPU`, then SIGKILL), no file writes (`RLIMIT_FSIZE`);
//! - is killed when it overruns its wall-clock time, when it writes more than the text limit, or
//!   when the request that waits for it goes away;
//! - runs only while a slot is free: at most `max_total` children at once, and at most
//!   `max_per_tenant` of one tenant, so one tenant's uploads cannot take every core.
//!
//! A child that dies of a limit answers [`ExtractError::LimitExceeded`] naming it. The protocol is
//! plain: the document's bytes on the child's stdin; on its stdout either `ok\n` and the text, or
//! `error <kind>\n` and a message.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use domain::TenantId;
use domain::ports::{ExtractError, TextExtractor};
use domain::values::ContentType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::{Extractor, ExtractorConfig};

/// How the children run, and how many at once.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The program that runs a child (the `agentic` binary) and the arguments that make it one;
    /// [`SandboxLimits::to_args`] is appended.
    pub program: PathBuf,
    pub args: Vec<String>,
    pub limits: SandboxLimits,
    /// Wall-clock time a child may take, waiting for its slot excluded. Default 60 s.
    pub wall: Duration,
    /// Children alive at once, in all. Default: the machine's cores.
    pub max_total: usize,
    /// Children of one tenant alive at once; a tenant over it is answered `Busy`. Default 1.
    pub max_per_tenant: usize,
    /// How long a document waits for a free slot before `Busy`. Default 10 s.
    pub queue_wait: Duration,
}

impl SandboxConfig {
    /// The defaults, for `program args…`.
    #[must_use]
    pub fn new(program: PathBuf, args: Vec<String>) -> Self {
        Self {
            program,
            args,
            limits: SandboxLimits::default(),
            wall: Duration::from_secs(60),
            max_total: std::thread::available_parallelism().map_or(2, usize::from),
            max_per_tenant: 1,
            queue_wait: Duration::from_secs(10),
        }
    }
}

/// What one child may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Address space, in bytes (`RLIMIT_AS`). Default 1 GiB.
    pub memory_bytes: u64,
    /// CPU seconds (`RLIMIT_CPU`). Default 60.
    pub cpu_secs: u64,
    /// The largest extracted text, in UTF-8 bytes. Default 10 MiB.
    pub max_text_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 1024 * 1024 * 1024,
            cpu_secs: 60,
            max_text_bytes: 10 * 1024 * 1024,
        }
    }
}

impl SandboxLimits {
    /// The arguments [`run_child`]'s caller parses back (`--memory-bytes N --cpu-secs N
    /// --max-text-bytes N`).
    #[must_use]
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--memory-bytes".into(),
            self.memory_bytes.to_string(),
            "--cpu-secs".into(),
            self.cpu_secs.to_string(),
            "--max-text-bytes".into(),
            self.max_text_bytes.to_string(),
        ]
    }
}

/// [`TextExtractor`] through child processes: see the module documentation.
#[derive(Debug)]
pub struct SandboxedExtractor {
    config: SandboxConfig,
    total: Arc<Semaphore>,
    running: Mutex<HashMap<TenantId, usize>>,
}

impl SandboxedExtractor {
    #[must_use]
    pub fn new(config: SandboxConfig) -> Self {
        let total = Arc::new(Semaphore::new(config.max_total.max(1)));
        Self {
            config,
            total,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one of the tenant's slots, or `None` when it has them all.
    fn enter(&self, tenant: TenantId) -> Option<TenantSlot<'_>> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = running.entry(tenant).or_insert(0);
        if *n >= self.config.max_per_tenant.max(1) {
            return None;
        }
        *n += 1;
        Some(TenantSlot {
            running: &self.running,
            tenant,
        })
    }

    async fn run(&self, content_type: ContentType, bytes: Vec<u8>) -> Result<String, ExtractError> {
        let mut child = tokio::process::Command::new(&self.config.program)
            .args(&self.config.args)
            .arg("--content-type")
            .arg(content_type.mime())
            .args(self.config.limits.to_args())
            // The child parses hostile input: it gets none of the server's secrets (JWT key,
            // database URLs, API keys), only what keeps it from restarting itself.
            .env_clear()
            .env("RAYON_NUM_THREADS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ExtractError::Internal(format!("cannot start the extraction process: {e}"))
            })?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| ExtractError::Internal("the child has no stdin".into()))?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| ExtractError::Internal("the child has no stdout".into()))?;
        // Room for the text and the status line; a child that writes more is killed.
        let cap = self.config.limits.max_text_bytes + 4096;
        let exchange = async {
            let feed = async {
                // A child that dies early closes its stdin: its exit status tells why.
                let _ = stdin.write_all(&bytes).await;
                drop(stdin);
            };
            let collect = async {
                let mut out = Vec::new();
                let mut limited = (&mut stdout).take(u64::try_from(cap).unwrap_or(u64::MAX) + 1);
                limited.read_to_end(&mut out).await.map(|_| out)
            };
            let ((), out) = tokio::join!(feed, collect);
            out
        };
        let out = match tokio::time::timeout(self.config.wall, exchange).await {
            Ok(Ok(out)) if out.len() <= cap => out,
            Ok(Ok(_)) => {
                let _ = child.kill().await;
                return Err(ExtractError::LimitExceeded(format!(
                    "the text is longer than {} bytes",
                    self.config.limits.max_text_bytes
                )));
            }
            Ok(Err(e)) => {
                let _ = child.kill().await;
                return Err(ExtractError::Internal(format!(
                    "reading the child failed: {e}"
                )));
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(ExtractError::LimitExceeded(format!(
                    "reading it took longer than {} s",
                    self.config.wall.as_secs()
                )));
            }
        };
        let status = child
            .wait()
            .await
            .map_err(|e| ExtractError::Internal(format!("waiting for the child failed: {e}")))?;
        if let Some(signal) = status.signal() {
            return Err(ExtractError::LimitExceeded(match signal {
                libc::SIGXCPU => format!(
                    "it needed more than {} s of CPU time",
                    self.config.limits.cpu_secs
                ),
                // The CPU limit's hard stop, or the kernel's out-of-memory killer.
                libc::SIGKILL => format!(
                    "it needed more than {} s of CPU time or more memory than the machine had",
                    self.config.limits.cpu_secs
                ),
                _ => format!(
                    "it needed more than {} MiB of memory",
                    self.config.limits.memory_bytes / (1024 * 1024)
                ),
            }));
        }
        parse_answer(&out)
    }
}

/// Gives a tenant's slot back when the extraction ends, however it ends.
struct TenantSlot<'a> {
    running: &'a Mutex<HashMap<TenantId, usize>>,
    tenant: TenantId,
}

impl Drop for TenantSlot<'_> {
    fn drop(&mut self) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = running.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.tenant);
            }
        }
    }
}

#[async_trait]
impl TextExtractor for SandboxedExtractor {
    /// As [`Extractor`], in a child process; [`ExtractError::LimitExceeded`] when the child was
    /// killed by a limit, [`ExtractError::Busy`] when the tenant (or the server) has no free slot.
    async fn extract(
        &self,
        tenant: TenantId,
        content_type: ContentType,
        bytes: Vec<u8>,
    ) -> Result<String, ExtractError> {
        let _tenant_slot = self.enter(tenant).ok_or(ExtractError::Busy)?;
        let _slot = tokio::time::timeout(self.config.queue_wait, self.total.acquire())
            .await
            .map_err(|_| ExtractError::Busy)?
            .map_err(|_| ExtractError::Internal("the extraction slots are closed".into()))?;
        self.run(content_type, bytes).await
    }
}

fn parse_answer(out: &[u8]) -> Result<String, ExtractError> {
    let newline = out
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| ExtractError::Internal("the child answered nothing".into()))?;
    let (head, body) = (&out[..newline], &out[newline + 1..]);
    let body = String::from_utf8_lossy(body).into_owned();
    match std::str::from_utf8(head).unwrap_or("") {
        "ok" => Ok(body),
        "error empty" => Err(ExtractError::Empty),
        "error invalid_utf8" => Err(ExtractError::InvalidUtf8(body.parse().unwrap_or(0))),
        "error corrupt" => Err(ExtractError::Corrupt(body)),
        "error timed_out" => Err(ExtractError::TimedOut(body.parse().unwrap_or(0))),
        "error limit" => Err(ExtractError::LimitExceeded(body)),
        "error busy" => Err(ExtractError::Busy),
        _ => Err(ExtractError::Internal(body)),
    }
}

fn answer(result: Result<String, ExtractError>) -> Vec<u8> {
    let (head, body) = match result {
        Ok(text) => ("ok", text),
        Err(ExtractError::Empty) => ("error empty", String::new()),
        Err(ExtractError::InvalidUtf8(at)) => ("error invalid_utf8", at.to_string()),
        Err(ExtractError::Corrupt(m)) => ("error corrupt", m),
        Err(ExtractError::TimedOut(secs)) => ("error timed_out", secs.to_string()),
        Err(ExtractError::LimitExceeded(m)) => ("error limit", m),
        Err(ExtractError::Busy) => ("error busy", String::new()),
        Err(ExtractError::Internal(m)) => ("error internal", m),
    };
    let mut out = Vec::with_capacity(head.len() + 1 + body.len());
    out.extend_from_slice(head.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body.as_bytes());
    out
}

/// The child's side: limits itself, reads the document from stdin, writes the answer to stdout.
/// Its caller (the `agentic extract` subcommand) parses the arguments [`SandboxLimits::to_args`]
/// wrote.
#[must_use]
pub fn run_child(content_type: ContentType, limits: SandboxLimits) -> ExitCode {
    // Before anything of the document is read: from here on, only the kernel decides.
    let set = rlimit::setrlimit(
        rlimit::Resource::AS,
        limits.memory_bytes,
        limits.memory_bytes,
    )
    .and_then(|()| {
        // SIGXCPU at the soft limit, SIGKILL a second later.
        rlimit::setrlimit(rlimit::Resource::CPU, limits.cpu_secs, limits.cpu_secs + 1)
    })
    .and_then(|()| rlimit::setrlimit(rlimit::Resource::FSIZE, 0, 0));
    if let Err(e) = set {
        let _ = std::io::stdout().write_all(&answer(Err(ExtractError::Internal(format!(
            "cannot set the limits: {e}"
        )))));
        return ExitCode::FAILURE;
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        let _ = std::io::stdout().write_all(&answer(Err(ExtractError::Internal(format!(
            "cannot read the document: {e}"
        )))));
        return ExitCode::FAILURE;
    }
    // The parent keeps the time: the in-process limits only need to stay out of its way.
    let extractor = Extractor::new(ExtractorConfig {
        pdf_timeout: Duration::from_secs(limits.cpu_secs * 4),
        markup_timeout: Duration::from_secs(limits.cpu_secs * 4),
        max_text_bytes: limits.max_text_bytes,
        max_parse_threads: 1,
    });
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime.block_on(extractor.extract(TenantId::new(), content_type, bytes)),
        Err(e) => Err(ExtractError::Internal(format!("no runtime: {e}"))),
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(&answer(result))
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip() {
        for result in [
            Ok("some text\nwith lines".to_owned()),
            Err(ExtractError::Empty),
            Err(ExtractError::InvalidUtf8(7)),
            Err(ExtractError::Corrupt("bad xref".into())),
            Err(ExtractError::TimedOut(30)),
            Err(ExtractError::LimitExceeded("too big".into())),
            Err(ExtractError::Busy),
            Err(ExtractError::Internal("no".into())),
        ] {
            assert_eq!(parse_answer(&answer(result.clone())), result);
        }
    }
}
