//! `nanochat chat-web`: the chat server (nanochat's `chat_web.py`): model workers (one per GPU
//! on CUDA, N on the CPU), a streaming API, the OpenAI wire format and a chat page. The
//! sampling defaults (-t, -k, -m) obey a request's limits, checked when the flags are parsed.

mod routes;

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use nanochat_core::engine::{Engine, GenerateParams};

#[derive(Parser, Debug)]
pub struct Args {
    #[command(flatten)]
    model: super::ModelArgs,
    /// Model workers: one per GPU with --device cuda, this many CPU workers otherwise.
    #[arg(short = 'n', long, default_value_t = 1, value_parser = super::chat_eval::at_least_one())]
    num_gpus: usize,
    /// Port (0 picks a free one; the address is printed on stderr).
    #[arg(short = 'p', long, default_value_t = 8000)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Default temperature of a request.
    #[arg(short = 't', long, default_value_t = 0.8, value_parser = super::sampling::temperature)]
    temperature: f32,
    /// Default top-k of a request.
    #[arg(short = 'k', long, default_value_t = 50, value_parser = super::sampling::top_k)]
    top_k: usize,
    /// Default most tokens of a reply.
    #[arg(short = 'm', long, default_value_t = 512, value_parser = super::sampling::max_tokens)]
    max_tokens: usize,
    /// cpu, cuda or cuda:N (the first of the -n GPUs; each worker has its own device and its
    /// own matmul state).
    #[arg(short = 'd', long, default_value = "cpu")]
    device: nanochat_kernels::Backend,
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let engines = start_engines(&args)?;
    let defaults = GenerateParams {
        num_samples: 1,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: Some(args.top_k),
        seed: None,
    };
    let state = Arc::new(routes::AppState::new(engines, defaults));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(state, &args))?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Opens each worker's device and loads the model on it (announcing the first), with the
/// device's name.
fn start_engines(args: &Args) -> anyhow::Result<Vec<(Engine, String)>> {
    let first = args.device;
    let mut engines = Vec::new();
    for (i, backend) in first.workers(args.num_gpus).into_iter().enumerate() {
        let name = backend.to_string();
        let device = super::open_device(backend).with_context(|| {
            format!(
                "worker {i}: -n {} puts one worker on each GPU from {first}",
                args.num_gpus
            )
        })?;
        let super::Loaded {
            phase,
            model,
            tokenizer,
            meta,
            ..
        } = args
            .model
            .load(&device)
            .with_context(|| format!("starting worker {i}"))?;
        if i == 0 {
            eprintln!(
                "model: {} step {} ({} parameters)",
                phase.name(),
                meta.step,
                model.num_params()
            );
        }
        engines.push((Engine::new(model, tokenizer)?, name));
    }
    Ok(engines)
}

/// Listens on `--host:--port` and serves until Ctrl-C, which stops open replies.
async fn serve(state: Arc<routes::AppState>, args: &Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "nanochat chat-web listening on http://{addr} ({} workers)",
        args.num_gpus
    );
    axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("shutting down: stopping open replies");
            nanochat_core::engine::pool::SHUTDOWN.store(true, std::sync::atomic::Ordering::Relaxed);
        })
        .await
        .context("serving")
}
